"""Turns secret and tool rows into platform calls for the outbox, and compares them with the platform's copies.

Secret values are read from the row at push time (decrypted then, never stored in a job). A row no
configured key can decrypt fails its job with "cannot decrypt" and sends nothing.

Ordering: a tool's headers point at secrets by their platform ids, so a tool whose referenced secrets have
no remote id yet waits (a transient "waiting for secrets" error, retried with backoff). Usually it never
waits: jobs run in commit order and a secret is created before the tool that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Model

from agents.models import Agent
from project.audit.selectors import earlier_values
from project.fields import DecryptionError
from project.logging import register_secret_value
from project.platform import errors
from project.sync.models import SyncJob
from project.sync.registry import (
    DIFFERS,
    MISSING_REMOTELY,
    UNKNOWN_LOCALLY,
    DriftItem,
    LocalObject,
    in_scope,
    register,
    register_objects,
    register_reconciler,
    report_progress,
)
from project.sync.selectors import attempted_before, remote_id_of_older_job
from secrets_app.models import Secret, Tool
from secrets_app.services import SECRET_KIND, TOOL_KIND, secret_mark_synced, tool_mark_synced
from secrets_app.validators import parse_headers, vault_variable
from workspaces.models import Workspace


class WaitingForSecrets(errors.Unavailable):
    """A tool's secrets have not reached the platform yet: retry later (transient)."""


class CannotDecrypt(errors.PlatformError):
    """Keyward refuses to push a value it cannot decrypt (nothing is sent; retrying will not help)."""


class ValueUnknown(errors.PlatformError):
    """An adopted secret's value was never known to Keyward and is needed (retrying will not help)."""


# --- secrets ---------------------------------------------------------------------------------------------
def earlier_remote_names(model: type[Model], pk: Any, workspace_id: int | None, action: str) -> list[str]:
    """The platform names a workspace object (a secret, an auth connection) had before its renames, newest first,
    from its audit trail (which outlives it): a create whose answer was lost may have sent one of them. Never a name
    another object of the workspace has now: that name is theirs."""
    earlier = earlier_values(object_type=model._meta.label_lower, object_id=pk, action=action, field="name",
                             current="")
    if not earlier:
        return []
    taken = set(model.objects.filter(workspace_id=workspace_id, name__in=earlier).values_list("name", flat=True))
    prefix = Workspace.objects.filter(pk=workspace_id).values_list("remote_prefix", flat=True).first() or ""
    return [f"{prefix}{old}" for old in earlier if old not in taken]


def _found_under_earlier_name(client: Any, secret_pk: Any, workspace_id: int | None) -> str:
    """What a lost create made under a name the secret had before a rename, or "" (not a platform secret another
    local secret holds)."""
    for name in earlier_remote_names(Secret, secret_pk, workspace_id, "secret.update"):
        found = client.secret_id_named(name)
        if found and not Secret.objects.filter(remote_id=found).exclude(pk=secret_pk).exists():
            return found
    return ""


@register(SECRET_KIND)
def push_secret(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        remote_id = (job.payload.get("remote_id") or remote_id_of_older_job(job)
                     or client.secret_id_named(job.payload.get("remote_name", ""))
                     or _found_under_earlier_name(client, job.object_id, job.workspace_id))
        if remote_id:
            try:
                client.delete_secret(remote_id)
            except errors.NotFound:
                pass  # already gone: the delete is done
            except errors.PlatformError as exc:
                if errors.is_in_use_refusal(exc):
                    # Locally nothing references it any more, so a tool update is still on its way: retry (whatever
                    # shape the platform's refusal takes: 409, 400 secret_in_use, or a message saying so).
                    raise WaitingForSecrets(exc.message, status=exc.status, code="secret_in_use",
                                            legacy_status=exc.legacy_status) from None
                raise
        return remote_id
    secret = Secret.objects.select_related("workspace").filter(pk=job.object_id).first()
    if secret is None:
        return None  # deleted since; its delete job carries the remote id
    if not secret.value_known:
        # Adopted: the platform holds the only value, and it changes a secret only with its value. Nothing to
        # send (a description is Keyward's own); one gone from the platform cannot be recreated without a value.
        if secret.remote_id:
            return secret.remote_id
        raise ValueUnknown(f"the value of “{secret.name}” is held by the platform only: set a new value in "
                           "Keyward to create it again", code="value_unknown")
    try:
        value = secret.value
    except DecryptionError as exc:
        raise CannotDecrypt(str(exc), code="cannot_decrypt") from None
    register_secret_value(value)
    name, remote_id = secret.remote_name, secret.remote_id
    if remote_id:
        try:
            client.update_secret(remote_id, name=name, value=value)
            return remote_id
        except errors.NotFound:
            remote_id = ""  # deleted on the platform behind Keyward's back: the database is the truth
    if attempted_before(job) or secret.remote_id:
        # Under its name, or, when no create of it was ever confirmed, under a name it had when a lost create was
        # sent (then the update renames it). One that had its id was created under a name it had then, and is gone.
        remote_id = client.secret_id_named(name) or (
            "" if secret.remote_id else _found_under_earlier_name(client, secret.pk, secret.workspace_id))
    if not remote_id:
        try:
            remote_id = str(client.create_secret(name=name, value=value,
                                                 idempotency_key=str(job.idempotency_key))["secret_id"])
        except errors.PlatformError as exc:
            if not errors.is_duplicate_name_refusal(exc):
                raise
            # The qualified name exists already (an earlier create whose answer was lost): adopt and update it.
            remote_id = client.secret_id_named(name) or ""
            if not remote_id:
                raise
            client.update_secret(remote_id, name=name, value=value)
    else:
        client.update_secret(remote_id, name=name, value=value)
    secret_mark_synced(secret_id=secret.pk, remote_id=remote_id)
    return remote_id


# --- tools -----------------------------------------------------------------------------------------------
def tool_config(tool: Tool) -> dict[str, Any]:
    """The platform's webhook tool_config; secret headers become {"secret_id": <remote id>} locators."""
    refs = tool.secret_references.select_related("secret").defer("secret__value")
    by_header = {ref.header: ref.secret for ref in refs}
    waiting = sorted({s.name for s in by_header.values() if not s.remote_id})
    if waiting:
        raise WaitingForSecrets(f"waiting for secret(s) {', '.join(waiting)} to reach the platform",
                                code="waiting_for_secrets")
    headers: dict[str, Any] = {}
    for spec in parse_headers(tool.headers):
        if spec.kind == "text":
            headers[spec.name] = spec.text
        elif spec.kind == "secret":
            headers[spec.name] = {"secret_id": by_header[spec.name].remote_id}
        elif spec.kind == "vault":
            headers[spec.name] = {"variable_name": vault_variable(spec.text)}
        else:
            headers[spec.name] = {"variable_name": spec.text}
    return {
        "type": "webhook",
        "name": tool.name,
        "description": tool.description,
        "response_timeout_secs": tool.response_timeout_secs,
        "api_schema": {"url": tool.url, "method": tool.method, "request_headers": headers},
    }


def merged_tool_config(remote: dict[str, Any] | None, mine: dict[str, Any]) -> dict[str, Any]:
    """The remote tool's config with only what Keyward governs replaced (name, description, timeout, and the URL,
    method and headers of its API schema): the platform replaces a tool's config as a whole on update, so
    everything else set on the platform (body, query and path schemas, dynamic variables, assignments...) is sent
    back as it was read."""
    remote = dict(remote or {}) if (remote or {}).get("type", "webhook") == "webhook" else {}
    merged = {**remote, **{k: v for k, v in mine.items() if k != "api_schema"}}
    merged["api_schema"] = {**(remote.get("api_schema") or {}), **mine["api_schema"]}
    return merged


def _update_tool(client: Any, remote_id: str, config: dict[str, Any]) -> None:
    """Read-modify-write: never clobber what Keyward does not govern (NotFound propagates)."""
    remote = client.get_tool(remote_id)
    client.update_tool(remote_id, tool_config=merged_tool_config(remote.get("tool_config"), config))


TOOL_TYPE = Tool._meta.label_lower  # the audit trail's object type of a tool


def _find_tool(client: Any, tool_id: Any, name: str, url: str, exclude: set[str], *, earlier: bool) -> str | None:
    """A lost create's tool: no other local tool claims it, and it has the name and URL the tool has now or, with
    ``earlier`` (no create of it was ever confirmed), had before (its audit trail, which outlives the tool: the lost
    create may have sent a name or URL changed since)."""
    names, urls = {name}, {url}
    if earlier:
        names.update(earlier_values(object_type=TOOL_TYPE, object_id=tool_id, action="tool.update", field="name",
                                    current=name))
        urls.update(earlier_values(object_type=TOOL_TYPE, object_id=tool_id, action="tool.update", field="url",
                                   current=url))
    for remote in client.list_tools():
        config = remote.get("tool_config") or {}
        if (remote.get("id") not in exclude and config.get("name") in names
                and (config.get("api_schema") or {}).get("url") in urls):
            return str(remote["id"])
    return None


def _claimed_tool_ids(except_pk: Any) -> set[str]:
    return set(Tool.objects.exclude(pk=except_pk).exclude(remote_id="").values_list("remote_id", flat=True))


@register(TOOL_KIND)
def push_tool(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        remote_id = job.payload.get("remote_id") or remote_id_of_older_job(job) or _find_tool(
            client, job.object_id, job.payload.get("name", ""), job.payload.get("url", ""), _claimed_tool_ids(None),
            earlier=True)
        if remote_id:
            try:
                client.delete_tool(remote_id)
            except errors.NotFound:
                pass
        return remote_id
    tool = Tool.objects.filter(pk=job.object_id).first()
    if tool is None:
        return None
    config = tool_config(tool)
    remote_id = tool.remote_id
    if remote_id:
        try:
            _update_tool(client, remote_id, config)
            return remote_id
        except errors.NotFound:
            remote_id = ""
    if attempted_before(job) or tool.remote_id:
        remote_id = _find_tool(client, tool.pk, tool.name, tool.url, _claimed_tool_ids(tool.pk),
                               earlier=not tool.remote_id) or ""
    if remote_id:
        _update_tool(client, remote_id, config)
    else:
        remote_id = str(client.create_tool(tool_config=config, idempotency_key=str(job.idempotency_key))["id"])
    tool_mark_synced(tool_id=tool.pk, remote_id=remote_id)
    return remote_id


# --- reconcile and bulk re-sync ------------------------------------------------------------------------------
@register_reconciler(SECRET_KIND)
def reconcile_secrets(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    """Names only: the platform never returns a value, so a changed value cannot be seen from here."""
    remote = {str(s["secret_id"]): s for s in client.list_secrets()}
    local = list(in_scope(Secret.objects.select_related("workspace").defer("value").order_by("pk"), workspace_ids))
    matched: set[str] = set()
    report_progress(0, len(local))
    for done, secret in enumerate(local, 1):
        item = dict(kind=SECRET_KIND, object_id=secret.pk, workspace_id=secret.workspace_id, label=secret.name)
        found = remote.get(secret.remote_id) if secret.remote_id else None
        if found is None:
            yield DriftItem(remote_id=secret.remote_id or None, problem=MISSING_REMOTELY, **item)
        else:
            matched.add(secret.remote_id)
            if found.get("name") != secret.remote_name:
                yield DriftItem(remote_id=secret.remote_id, problem=DIFFERS,
                                fields={"name": [secret.remote_name, found.get("name")]}, **item)
        report_progress(done, len(local))
    # Agents' credential-webhook secrets are Keyward's too (kept by the agents' sync; their drift is reported
    # on the agent): not unknown. One left behind by a deleted agent is.
    matched.update(Agent.objects.exclude(webhook_secret_remote_id="")
                   .values_list("webhook_secret_remote_id", flat=True))
    for secret_id, found in remote.items():
        if secret_id not in matched:
            yield DriftItem(kind=SECRET_KIND, object_id=None, remote_id=secret_id, problem=UNKNOWN_LOCALLY,
                            label=str(found.get("name") or ""))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    schema = config.get("api_schema") or {}
    return {"name": config.get("name"), "description": config.get("description"), "url": schema.get("url"),
            "method": schema.get("method") or "GET", "request_headers": schema.get("request_headers") or {}}


# The session broker's token-refresh tools (broker app, a floor above) are Keyward's too, reconciled by the broker
# under their own kind; they are recognised by their name's prefix (broker.services.refresh.TOOL_NAME_PREFIX).
REFRESH_TOOL_PREFIX = "kw_refresh_"


def _keyward_refresh_tool(found: dict[str, Any]) -> bool:
    return str((found.get("tool_config") or {}).get("name") or "").startswith(REFRESH_TOOL_PREFIX)


@register_reconciler(TOOL_KIND)
def reconcile_tools(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    remote = {str(t["id"]): t for t in client.list_tools()}
    local = list(in_scope(Tool.objects.order_by("pk"), workspace_ids))
    matched: set[str] = set()
    report_progress(0, len(local))
    for done, tool in enumerate(local, 1):
        item = dict(kind=TOOL_KIND, object_id=tool.pk, workspace_id=tool.workspace_id, label=tool.name)
        found = remote.get(tool.remote_id) if tool.remote_id else None
        if found is None:
            yield DriftItem(remote_id=tool.remote_id or None, problem=MISSING_REMOTELY, **item)
        else:
            matched.add(tool.remote_id)
            try:
                mine = _comparable(tool_config(tool))
            except WaitingForSecrets:
                mine = None
            theirs = _comparable(found.get("tool_config") or {})
            if mine is not None:
                fields = {k: [v, theirs[k]] for k, v in mine.items() if v != theirs[k]}
                if fields:
                    yield DriftItem(remote_id=tool.remote_id, problem=DIFFERS, fields=fields, **item)
        report_progress(done, len(local))
    for tool_id, found in remote.items():
        if tool_id not in matched and not _keyward_refresh_tool(found):
            yield DriftItem(kind=TOOL_KIND, object_id=None, remote_id=tool_id, problem=UNKNOWN_LOCALLY,
                            label=str((found.get("tool_config") or {}).get("name") or ""))


@register_objects(SECRET_KIND)
def secret_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in Secret.objects.order_by("pk").values_list("pk", "workspace_id", "name").iterator():
        yield LocalObject(pk, workspace_id, name)


@register_objects(TOOL_KIND)
def tool_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in Tool.objects.order_by("pk").values_list("pk", "workspace_id", "name").iterator():
        yield LocalObject(pk, workspace_id, name)
