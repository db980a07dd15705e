"""Workspace auth connections of five kinds; secret parts write-only and encrypted; synced to the platform's
``/v1/workspace/auth-connections`` through the outbox (kind "auth_connection", see secrets_app.sync)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from project import access
from project.actors import Actor
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit.services import SECRET_CHANGED, diff, record
from project.fields import field_state
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from secrets_app.models import AuthConnection
from secrets_app.services._common import (
    keep_or_replace,
    remember,
    require_secret_again,
    snapshot,
    url_host,
    url_origin,
    user_or_none,
)
from secrets_app.validators import parse_header
from workspaces.models import Workspace

PERMISSION = "secrets.manage"
AUTH_CONNECTION_KIND = SyncKind.AUTH_CONNECTION
PLAIN = ("name", "kind", "provider", *AuthConnection.PLAIN_FIELDS)
EMPTY: dict[str, Any] = {"client_id": "", "token_url": "", "scopes": [], "algorithm": "", "claims": {},
                         "username": "", "header_names": []}
REQUIRED_CLAIMS = ("iss", "aud", "sub")


def _check_kind(conn: AuthConnection) -> None:
    """The rules across fields of one kind; secret fields are checked for presence only, never read."""
    errors: dict[str, str] = {}
    kind = conn.kind
    if kind == AuthConnection.Kind.OAUTH2_CLIENT_CREDENTIALS:
        if not conn.client_id:
            errors["client_id"] = "An OAuth2 client-credentials connection needs a client id."
        if not conn.token_url:
            errors["token_url"] = "Enter the token URL."
    elif kind == AuthConnection.Kind.OAUTH2_JWT:
        if not conn.token_url:
            errors["token_url"] = "Enter the token URL the signed JWT is exchanged at."
        if not conn.algorithm:
            errors["algorithm"] = "Choose the JWT signing algorithm."
        claims = conn.claims if isinstance(conn.claims, dict) else None
        if claims is None or not all(isinstance(k, str) and isinstance(v, str) for k, v in claims.items()):
            errors["claims"] = "Claims must be a JSON object of text values."
        elif missing := [c for c in REQUIRED_CLAIMS if not claims.get(c)]:
            errors["claims"] = f"Add the {', '.join(missing)} claim{'s' if len(missing) > 1 else ''}."
    elif kind == AuthConnection.Kind.BASIC and not conn.username:
        errors["username"] = "Enter the user name."
    if not isinstance(conn.scopes, list) or not all(isinstance(s, str) and s and " " not in s for s in conn.scopes):
        errors["scopes"] = "Scopes must be a list of words without spaces."
    for field in AuthConnection.KIND_SECRETS.get(kind, ()):
        if field_state(conn, field) == "empty":
            label = "header values" if field == "header_values" else conn._meta.get_field(field).verbose_name
            errors[field] = f"Enter the {label}."
    if errors:
        raise ValidationError(errors)


def _custom_headers(headers: dict[str, str]) -> tuple[list[str], str]:
    if not headers:
        raise ValidationError({"header_values": "Add at least one header."})
    problems = []
    for name, value in headers.items():
        try:
            parse_header(name, "x")  # the name's syntax; the value is secret and may look like anything
        except ValidationError as exc:
            problems += exc.messages
        if not value or "\n" in value or "\r" in value:
            problems.append(f"Header {name}: enter a one-line value.")
    if problems:
        raise ValidationError({"header_values": problems})
    remember(*headers.values())
    return list(headers), json.dumps(headers, sort_keys=True)


@transaction.atomic
def auth_connection_save(*, actor: Actor, workspace: Workspace, connection: AuthConnection | None = None,
                         secrets: dict[str, str | None] | None = None, headers: dict[str, str] | None = None,
                         **fields: Any) -> AuthConnection:
    """Create or change an auth connection.

    `fields` are the plain ones (name, kind, provider, client_id, token_url, scopes, algorithm, claims,
    username); `secrets` maps client_secret/signing_secret/password/token to a new value or None (keep);
    `headers` (custom-header kind) replaces all name/value pairs, None keeps them. Fields of other kinds
    are cleared. Audits plain changes and which secret parts changed (never their values); enqueues the
    platform create or update.
    """
    access.require(actor, PERMISSION, workspace.pk)
    if connection is None:
        conn, before, action = AuthConnection(workspace=workspace), {}, "auth_connection.create"
    else:
        conn = AuthConnection.objects.select_for_update().get(pk=connection.pk, workspace=workspace)
        before, action = snapshot(conn, PLAIN), "auth_connection.update"
    for key, value in fields.items():
        if key not in PLAIN:
            raise TypeError(f"auth_connection_save() got an unexpected field {key!r}")
        if key == "name" and conn.pk is not None and value != conn.name:
            conn.platform_name = ""  # renamed in Keyward: the platform gets Keyward's name for it
        setattr(conn, key, value)
    kept = set(AuthConnection.KIND_FIELDS.get(conn.kind, ()))
    for key, empty in EMPTY.items():
        if key not in kept:
            setattr(conn, key, empty.copy() if isinstance(empty, list | dict) else empty)
    changed_secrets = []
    wanted = set(AuthConnection.KIND_SECRETS.get(conn.kind, ()))
    given = dict(secrets or {})
    moved = (connection is not None and bool(before.get("token_url")) and "token_url" in kept
             and url_origin(before["token_url"]) != url_origin(conn.token_url))
    if moved and before["kind"] == conn.kind:
        # The platform posts this connection's secret part to the token URL: moving it to another address needs
        # the secret typed again, so a person who cannot read it cannot have it sent to a listener of theirs.
        for field in wanted:
            require_secret_again(conn, field, given.get(field) or None,
                                 label=conn._meta.get_field(field).verbose_name)
    if headers is not None:
        conn.header_names, given["header_values"] = _custom_headers(headers)
    for field in AuthConnection.SECRET_FIELDS:
        if field not in wanted:
            # A part of another kind is wiped, readable or not: it is not written back, it is replaced.
            if conn.pk is not None and field_state(conn, field) != "empty":
                changed_secrets.append(field)
            setattr(conn, field, "")
            continue
        if keep_or_replace(conn, field, given.get(field) or None):
            changed_secrets.append(field)
    conn.last_changed_by = user_or_none(actor)
    problems: dict[str, list[str]] = {}
    for check in (_check_kind, AuthConnection.full_clean):
        try:
            check(conn)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                problems.setdefault(field, []).extend(m for m in messages if m not in problems.get(field, []))
    if problems:
        raise ValidationError(problems)
    changes = diff(before, snapshot(conn, PLAIN))
    changes.update({f: SECRET_CHANGED for f in changed_secrets})
    if connection is not None and not changes:
        return conn
    if moved:
        changes["token_url_host"] = [url_host(before["token_url"]), url_host(conn.token_url)]
    # Every secret part of the kind is set now (the checks above require it): an adopted connection whose
    # credentials were held by the platform only is fully managed from here on.
    conn.secrets_known = True
    conn.save()
    record(actor=actor, action=action, target=conn, workspace_id=workspace.pk, changes=changes)
    job_enqueue(kind=AUTH_CONNECTION_KIND, object_id=conn.pk, workspace_id=workspace.pk, object_repr=conn.name)
    if moved:
        old_host, new_host = changes["token_url_host"]
        alert_raise(actor=actor, workspace=workspace, kind="auth_connection_token_url_moved", target=conn,
                    title=f"Auth connection “{conn}”: its token URL moved from {old_host} to {new_host}; its secret "
                          "is now sent there",
                    dedup_key=f"auth_connection_token_url_moved:{conn.pk}:{timezone.now().isoformat()}",
                    severity=Alert.Severity.HIGH,
                    details={"old_host": old_host, "new_host": new_host, "changed_by": str(actor)})
    return conn


@transaction.atomic
def auth_connection_delete(*, actor: Actor, connection: AuthConnection) -> None:
    """Delete an auth connection. Audited (its plain fields only); enqueues the platform delete."""
    access.require(actor, PERMISSION, connection.workspace_id)
    conn = (AuthConnection.objects.select_for_update().select_related("workspace")
            .defer(*AuthConnection.SECRET_FIELDS).get(pk=connection.pk))
    record(actor=actor, action="auth_connection.delete", target=conn, workspace_id=conn.workspace_id,
           changes=diff(snapshot(conn, PLAIN), {}))
    job_enqueue(kind=AUTH_CONNECTION_KIND, object_id=conn.pk, op=SyncJob.Op.DELETE, workspace_id=conn.workspace_id,
                object_repr=conn.name, payload={"remote_id": conn.remote_id, "remote_name": conn.remote_name,
                                                "auth_type": conn.kind})
    conn.delete()


def auth_connection_mark_synced(*, connection_id: int, remote_id: str) -> None:
    """Store the platform's auth connection id after a create (system bookkeeping)."""
    AuthConnection.objects.filter(pk=connection_id).exclude(remote_id=remote_id).update(remote_id=remote_id)
