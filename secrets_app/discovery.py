"""What discovery reads of an account's workspace secrets, webhook tools and auth connections, and how those made
on the platform are adopted: local rows linked to their remote ids, nothing changed on the platform.

The platform never returns a secret's value or an auth connection's credentials: an adopted secret has
``value_known=False`` (the admin shows "value held by the platform only"; a push sends nothing of it until someone
sets a new value, which makes it fully managed), an adopted connection ``secrets_known=False`` likewise. Both keep
the name the platform knows them by (``platform_name``), which need not follow Keyward's naming.

An adopted tool's secret headers become ``{{ secret__<local name> }}`` references to the adopted secrets (adopted
first: a tool ``needs`` them), and its reference rows are built as for any tool, so "who uses this secret" and
"cannot delete while used" hold for adopted objects too. A tool push is read-modify-write (secrets_app.sync).

Facts (the guardrails and the Discover list read them; never a value):

- secret: ``name``, ``tools`` and ``agents`` (the ids using it, as the platform lists them), ``webhook`` (a
  conversation-initiation webhook sends it);
- tool: ``name``, ``type``, ``description``, ``url``, ``method``, ``response_timeout_secs``, ``headers`` (per
  header ``{"text": value}``, ``{"secret_id": id}``, ``{"variable_name": name}``, ``{"env_var_label": label}``,
  or ``{"inline_credential": true}`` for a plain value that looks like a credential, never stored), ``secret_ids``;
- auth connection: ``name``, ``auth_type``, ``provider``, ``status`` and its plain fields (``client_id``,
  ``token_url``, ``scopes``, ``algorithm``, ``issuer``, ``audience``, ``subject``, ``extra_params``, ``username``,
  ``header_name``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.exceptions import ValidationError

from agents.discovery import unique_name
from agents.models import Agent
from project.actors import is_system
from project.logging import redact
from project.sync.kinds import SyncKind
from project.sync.registry import Adopted, Discoverable, Observed, register_discoverable
from secrets_app.models import AuthConnection, Secret, Tool, ToolSecretReference
from secrets_app.validators import VAULT_PREFIX, parse_headers
from workspaces.models import Workspace

PLAIN_CONNECTION_FIELDS = ("client_id", "token_url", "scopes", "algorithm", "issuer", "audience", "subject",
                           "extra_params", "username", "header_name")


def _user(actor: Any) -> Any:
    return None if is_system(actor) or not getattr(actor, "is_authenticated", False) else actor


def _local_label(remote_name: str, prefix: str) -> str:
    """The remote name without the workspace's prefix (``acme__crm_token`` → ``crm_token`` in workspace acme)."""
    return remote_name[len(prefix):] if prefix and remote_name.startswith(prefix) else remote_name


# --- secrets ------------------------------------------------------------------------------------------------
def observe_secrets(client: Any) -> Iterator[Observed]:
    for secret in client.iter_secrets():
        used = secret.get("used_by") or {}
        yield Observed(str(secret["secret_id"]), str(secret.get("name") or ""), {
            "name": str(secret.get("name") or ""),
            "tools": [str(t.get("id")) for t in used.get("tools") or []],
            "agents": [str(a.get("id")) for a in used.get("agents") or []],
            "webhook": bool(used.get("others")),
        })


def governed_secrets(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    found = {remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
             Secret.objects.filter(remote_id__in=remote_ids).values_list("remote_id", "pk", "workspace_id")}
    # An agent's credential-webhook secret is Keyward's too (the agents' sync keeps it): not offered for adoption.
    for remote_id, pk, workspace_id in (Agent.objects.filter(webhook_secret_remote_id__in=remote_ids)
                                        .values_list("webhook_secret_remote_id", "pk", "workspace_id")):
        found.setdefault(remote_id, (f"agent:{pk}", workspace_id))
    return found


def secret_local_name(remote_name: str, taken: set[str]) -> str:
    """A name Keyward accepts (``^[a-z][a-z0-9_]{0,62}$``, not in the vault's ``user_`` space, unique in the
    workspace) made from the platform's: ``Salesforce-Refresh`` → ``salesforce_refresh``."""
    base = re.sub(r"[^a-z0-9_]+", "_", remote_name.lower()).strip("_") or "secret"
    if not base[0].isalpha() or base.startswith(VAULT_PREFIX):
        base = f"s_{base}"
    base = base[:63]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = base[:63 - len(suffix)] + suffix
    taken.add(name)
    return name


def adopt_secrets(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    prefix = Workspace.objects.only("remote_prefix").get(pk=workspace_id).remote_prefix
    taken = set(Secret.objects.filter(workspace_id=workspace_id).values_list("name", flat=True))
    rows = [Secret(workspace_id=workspace_id, name=secret_local_name(_local_label(o.label, prefix), taken),
                   description="Adopted from the platform", value="", value_known=False,
                   platform_name=o.facts.get("name") or o.label, remote_id=o.remote_id, last_changed_by=_user(actor))
            for o in observations]
    Secret.objects.bulk_create(rows, batch_size=500)
    return Adopted(adopted={secret.remote_id: str(secret.pk) for secret in rows})


# --- tools --------------------------------------------------------------------------------------------------
def _header_fact(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"inline_credential": True} if redact(value) != value else {"text": value}
    if isinstance(value, Mapping):
        for locator in ("secret_id", "variable_name", "env_var_label"):
            if isinstance(value.get(locator), str):
                return {locator: value[locator]}
    return {"unknown": True}


def tool_facts(tool: Mapping[str, Any]) -> dict[str, Any]:
    config = tool.get("tool_config") or {}
    schema = config.get("api_schema") or {}
    headers = {str(name): _header_fact(value) for name, value in (schema.get("request_headers") or {}).items()}
    return {
        "name": str(config.get("name") or ""),
        "type": str(config.get("type") or ""),
        "description": str(config.get("description") or ""),
        "url": str(schema.get("url") or ""),
        "method": str(schema.get("method") or "GET").upper(),
        "response_timeout_secs": config.get("response_timeout_secs"),
        "headers": headers,
        "secret_ids": sorted({h["secret_id"] for h in headers.values() if "secret_id" in h}),
    }


def observe_tools(client: Any) -> Iterator[Observed]:
    for tool in client.iter_tools():
        facts = tool_facts(tool)
        yield Observed(str(tool["id"]), facts["name"], facts)


def governed_tools(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    return {remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
            Tool.objects.filter(remote_id__in=remote_ids).values_list("remote_id", "pk", "workspace_id")}


def tool_needs(observation: Any) -> list[tuple[str, str]]:
    return [(SyncKind.SECRET, secret_id) for secret_id in observation.facts.get("secret_ids") or []]


def _local_headers(facts: Mapping[str, Any], secrets: Mapping[str, Secret]) -> dict[str, str]:
    """The tool's headers as Keyward writes them; raises ValidationError with the reason it cannot."""
    headers: dict[str, str] = {}
    for name, value in (facts.get("headers") or {}).items():
        if "text" in value:
            headers[name] = value["text"]
        elif "secret_id" in value:
            secret = secrets.get(value["secret_id"])
            if secret is None:
                raise ValidationError(f"header {name} sends a secret that is not in this workspace (adopt the "
                                      "secret into it first)")
            headers[name] = secret.reference
        elif "variable_name" in value:
            headers[name] = "{{ " + value["variable_name"] + " }}"
        elif value.get("inline_credential"):
            raise ValidationError(f"header {name} holds a credential in plain text on the platform: move it into a "
                                  "workspace secret there, or recreate the tool in Keyward")
        else:
            raise ValidationError(f"header {name} uses a kind of value Keyward does not manage")
    parse_headers(headers)
    return headers


def adopt_tools(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    secret_ids = {sid for o in observations for sid in o.facts.get("secret_ids") or []}
    secrets = {s.remote_id: s for s in Secret.objects.filter(workspace_id=workspace_id, remote_id__in=secret_ids)
               .defer("value")} if secret_ids else {}
    taken = {name.casefold() for name in Tool.objects.filter(workspace_id=workspace_id).values_list("name", flat=True)}
    rows: list[Tool] = []
    refused: dict[str, str] = {}
    for observation in observations:
        facts = observation.facts
        name = facts.get("name") or observation.label
        if facts.get("type") != "webhook":
            refused[observation.remote_id] = (f"a {facts.get('type') or 'untyped'} tool: Keyward manages webhook "
                                              "tools only")
            continue
        if name.casefold() in taken:
            refused[observation.remote_id] = f"a tool named “{name}” exists in this workspace already"
            continue
        try:
            headers = _local_headers(facts, secrets)
        except ValidationError as exc:
            refused[observation.remote_id] = "; ".join(exc.messages)
            continue
        timeout = facts.get("response_timeout_secs")
        method = facts.get("method") if facts.get("method") in Tool.Method.values else Tool.Method.GET
        taken.add(name.casefold())
        rows.append(Tool(workspace_id=workspace_id, name=name, description=facts.get("description") or "",
                         url=(facts.get("url") or "")[:2048], method=method, headers=headers,
                         response_timeout_secs=timeout if isinstance(timeout, int) and 5 <= timeout <= 300 else 20,
                         remote_id=observation.remote_id, last_changed_by=_user(actor)))
    Tool.objects.bulk_create(rows, batch_size=500)
    by_name = {s.name: s for s in secrets.values()}
    references = []
    for tool in rows:
        for spec in parse_headers(tool.headers):
            if spec.kind == "secret":
                references.append(ToolSecretReference(tool=tool, secret=by_name[spec.text], header=spec.name))
    ToolSecretReference.objects.bulk_create(references, batch_size=500)
    return Adopted(adopted={tool.remote_id: str(tool.pk) for tool in rows}, refused=refused)


# --- auth connections ---------------------------------------------------------------------------------------
def observe_auth_connections(client: Any) -> Iterator[Observed]:
    for conn in client.list_auth_connections():
        facts = {"name": str(conn.get("name") or ""), "auth_type": str(conn.get("auth_type") or ""),
                 "provider": str(conn.get("provider") or ""), "status": str(conn.get("status") or "")}
        facts.update({f: conn[f] for f in PLAIN_CONNECTION_FIELDS if conn.get(f) is not None})
        yield Observed(str(conn["id"]), facts["name"], facts)


def governed_auth_connections(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    return {remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
            AuthConnection.objects.filter(remote_id__in=remote_ids).values_list("remote_id", "pk", "workspace_id")}


def _connection_fields(facts: Mapping[str, Any]) -> dict[str, Any]:
    kind = facts["auth_type"]
    fields: dict[str, Any] = {}
    if kind in (AuthConnection.Kind.OAUTH2_CLIENT_CREDENTIALS, AuthConnection.Kind.OAUTH2_JWT):
        fields.update(token_url=str(facts.get("token_url") or "")[:2048], scopes=list(facts.get("scopes") or []))
    if kind == AuthConnection.Kind.OAUTH2_CLIENT_CREDENTIALS:
        fields["client_id"] = str(facts.get("client_id") or "")[:300]
    elif kind == AuthConnection.Kind.OAUTH2_JWT:
        algorithm = facts.get("algorithm") or "HS256"
        fields["algorithm"] = algorithm if algorithm in AuthConnection.Algorithm.values else "HS256"
        claims = {"iss": facts.get("issuer") or "", "aud": facts.get("audience") or "",
                  "sub": facts.get("subject") or ""}
        fields["claims"] = {**{str(k): str(v) for k, v in (facts.get("extra_params") or {}).items()}, **claims}
    elif kind == AuthConnection.Kind.BASIC:
        fields["username"] = str(facts.get("username") or "")[:300]
    elif kind == AuthConnection.Kind.CUSTOM_HEADERS:
        fields["header_names"] = [str(facts["header_name"])] if facts.get("header_name") else []
    return fields


def adopt_auth_connections(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    prefix = Workspace.objects.only("remote_prefix").get(pk=workspace_id).remote_prefix
    taken = {n.casefold() for n in AuthConnection.objects.filter(workspace_id=workspace_id)
             .values_list("name", flat=True)}
    rows, refused = [], {}
    for observation in observations:
        facts = observation.facts
        if facts.get("auth_type") not in AuthConnection.Kind.values:
            refused[observation.remote_id] = (f"an auth connection of kind “{facts.get('auth_type')}”, unknown to "
                                              "Keyward")
            continue
        rows.append(AuthConnection(
            workspace_id=workspace_id, name=unique_name(_local_label(observation.label, prefix), taken, 100),
            kind=facts["auth_type"], provider=str(facts.get("provider") or "")[:60], secrets_known=False,
            platform_name=facts.get("name") or observation.label, remote_id=observation.remote_id,
            last_changed_by=_user(actor), **_connection_fields(facts)))
    AuthConnection.objects.bulk_create(rows, batch_size=500)
    return Adopted(adopted={conn.remote_id: str(conn.pk) for conn in rows}, refused=refused)


def register() -> None:
    register_discoverable(Discoverable(
        kind=SyncKind.SECRET, title="Workspace secrets", order=10, object_type="secrets_app.secret",
        observe=observe_secrets, governed=governed_secrets, adopt=adopt_secrets))
    register_discoverable(Discoverable(
        kind=SyncKind.AUTH_CONNECTION, title="Auth connections", order=15, object_type="secrets_app.authconnection",
        observe=observe_auth_connections, governed=governed_auth_connections, adopt=adopt_auth_connections))
    register_discoverable(Discoverable(
        kind=SyncKind.TOOL, title="Tools", order=20, object_type="secrets_app.tool", observe=observe_tools,
        governed=governed_tools, adopt=adopt_tools, needs=tool_needs))
