"""Turns auth connection rows into the platform's ``/v1/workspace/auth-connections`` calls.

The platform's update requests carry neither the name nor the token URL, and custom-header connections have
no update request at all; when one of those must change (or the kind changes), the handler creates a new
remote connection, stores its id, then deletes the old one. A custom-header connection with more than one
header cannot be expressed (the platform's carries exactly one): its job fails with that reason and
nothing is sent. Secret parts are read from the row at push time; an unreadable one fails the job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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
from secrets_app.models import AuthConnection
from secrets_app.services import AUTH_CONNECTION_KIND, auth_connection_mark_synced
from secrets_app.sync import CannotDecrypt, earlier_remote_names

Kind = AuthConnection.Kind
# The Update*Request fields per kind; the name and token URL are not among them.
UPDATE_FIELDS: dict[str, tuple[str, ...]] = {
    Kind.OAUTH2_CLIENT_CREDENTIALS: ("client_id", "scopes", "client_secret"),
    Kind.OAUTH2_JWT: ("algorithm", "issuer", "audience", "subject", "extra_params", "scopes", "secret_key"),
    Kind.BASIC: ("username", "password"),
    Kind.BEARER: ("token",),
}
# What the platform shows back (no secret) and must equal the local row, or the connection is recreated.
FIXED_FIELDS = ("name", "auth_type", "token_url")


class CannotExpress(errors.PlatformError):
    """The local connection has no platform equivalent (retrying will not help)."""


def create_body(conn: AuthConnection) -> dict[str, Any]:
    """The Create*Request for this connection, secret parts included (never stored or logged)."""
    body: dict[str, Any] = {"name": conn.remote_name, "auth_type": conn.kind, "provider": conn.provider or "custom"}
    try:
        if conn.kind == Kind.OAUTH2_CLIENT_CREDENTIALS:
            body.update(client_id=conn.client_id, token_url=conn.token_url, scopes=list(conn.scopes),
                        client_secret=conn.client_secret)
        elif conn.kind == Kind.OAUTH2_JWT:
            claims = dict(conn.claims)
            body.update(token_url=conn.token_url, algorithm=conn.algorithm, issuer=claims.pop("iss"),
                        audience=claims.pop("aud"), subject=claims.pop("sub"), extra_params=claims,
                        scopes=list(conn.scopes), secret_key=conn.signing_secret)
        elif conn.kind == Kind.BASIC:
            body.update(username=conn.username, password=conn.password)
        elif conn.kind == Kind.BEARER:
            body.update(token=conn.token)
        else:
            headers = json.loads(conn.header_values or "{}")
            if len(headers) != 1:
                raise CannotExpress(f"the platform's custom-header connection carries exactly one header; "
                                    f"“{conn.name}” has {len(headers)}. It stays local until it has one.",
                                    code="one_header_only")
            (header_name, token), = headers.items()
            body.update(header_name=header_name, token=token)
    except DecryptionError as exc:
        raise CannotDecrypt(str(exc), code="cannot_decrypt") from None
    for field in ("client_secret", "secret_key", "password", "token"):
        register_secret_value(body.get(field))
    return body


def update_body(body: dict[str, Any]) -> dict[str, Any]:
    fields = UPDATE_FIELDS[body["auth_type"]]
    return {"auth_type": body["auth_type"], "provider": body["provider"],
            **{k: v for k, v in body.items() if k in fields}}


def _updatable(remote: dict[str, Any], body: dict[str, Any]) -> bool:
    return body["auth_type"] in UPDATE_FIELDS and all(remote.get(f) == body.get(f) for f in FIXED_FIELDS
                                                        if f in body or f in remote)


def _find(remotes: list[dict[str, Any]], name: str, auth_type: str, exclude: set[str]) -> dict[str, Any] | None:
    for remote in remotes:
        if remote.get("name") == name and remote.get("auth_type") == auth_type and remote.get("id") not in exclude:
            return remote
    return None


def _find_lost(remotes: list[dict[str, Any]], pk: Any, workspace_id: int | None, name: str, auth_type: str,
               exclude: set[str], *, earlier: bool) -> dict[str, Any] | None:
    """What a create whose answer was lost made: under the name and kind the connection has now, else, with
    ``earlier`` (no create of it was ever confirmed), under a name and kind it had before (its audit trail, which
    outlives it: the lost create may have sent them). Never one another local connection holds, nor a name another
    connection of the workspace has now."""
    found = _find(remotes, name, auth_type, exclude)
    if found is not None or not earlier:
        return found
    names = set(earlier_remote_names(AuthConnection, pk, workspace_id, "auth_connection.update"))
    if not names:
        return None
    kinds = {auth_type, *earlier_values(object_type=AuthConnection._meta.label_lower, object_id=pk,
                                        action="auth_connection.update", field="kind", current=auth_type)}
    return next((remote for remote in remotes if remote.get("name") in names and remote.get("auth_type") in kinds
                 and remote.get("id") not in exclude), None)


def _delete(client: Any, remote_id: str) -> None:
    try:
        client.delete_auth_connection(remote_id)
    except errors.NotFound:
        pass  # already gone


@register(AUTH_CONNECTION_KIND)
def push_auth_connection(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        remote_id = job.payload.get("remote_id") or remote_id_of_older_job(job)
        if not remote_id:
            found = _find_lost(client.list_auth_connections(), job.object_id, job.workspace_id,
                               job.payload.get("remote_name", ""), job.payload.get("auth_type", ""), _claimed(None),
                               earlier=True)
            remote_id = found["id"] if found else None
        if remote_id:
            _delete(client, remote_id)
        return remote_id
    conn = AuthConnection.objects.select_related("workspace").filter(pk=job.object_id).first()
    if conn is None:
        return None
    if not conn.secrets_known:
        return _push_adopted(client, conn)
    body = create_body(conn)
    remote = None
    if conn.remote_id or attempted_before(job):
        remotes = client.list_auth_connections()
        remote = next((r for r in remotes if r.get("id") == conn.remote_id), None) if conn.remote_id else None
        if remote is None:
            remote = _find_lost(remotes, conn.pk, conn.workspace_id, body["name"], body["auth_type"],
                                _claimed(conn.pk), earlier=not conn.remote_id)
    if remote is not None and _updatable(remote, body):
        client.update_auth_connection(remote["id"], body=update_body(body))
        auth_connection_mark_synced(connection_id=conn.pk, remote_id=remote["id"])
        return str(remote["id"])
    created = client.create_auth_connection(body=body, idempotency_key=str(job.idempotency_key))
    auth_connection_mark_synced(connection_id=conn.pk, remote_id=created["id"])
    if remote is not None:
        _delete(client, remote["id"])  # replaced: the platform cannot change its name, URL or kind in place
    return str(created["id"])


def _push_adopted(client: Any, conn: AuthConnection) -> str | None:
    """An adopted connection whose credentials only the platform holds: its plain fields are sent with an update
    that carries no credential (fields left out stay as they are); what only a new connection could change (its
    name, kind or token URL) waits for someone to enter the credentials."""
    remote = next((r for r in client.list_auth_connections() if r.get("id") == conn.remote_id), None) \
        if conn.remote_id else None
    plain = {"name": conn.remote_name, "auth_type": conn.kind, "provider": conn.provider or "custom"}
    if conn.kind in (Kind.OAUTH2_CLIENT_CREDENTIALS, Kind.OAUTH2_JWT):
        plain["token_url"] = conn.token_url
    if remote is None or any(remote.get(f) != plain.get(f) for f in FIXED_FIELDS if f in plain or f in remote):
        raise CannotExpress(f"the credentials of “{conn.name}” are held by the platform only: enter them in Keyward "
                            "to " + ("create it again" if remote is None else "change its name, kind or token URL"),
                            code="credentials_unknown")
    if conn.kind not in UPDATE_FIELDS:
        return str(remote["id"])  # custom headers: nothing plain to update
    body = {"auth_type": conn.kind, "provider": plain["provider"]}
    if conn.kind == Kind.OAUTH2_CLIENT_CREDENTIALS:
        body.update(client_id=conn.client_id, scopes=list(conn.scopes))
    elif conn.kind == Kind.OAUTH2_JWT:
        claims = dict(conn.claims)
        body.update(algorithm=conn.algorithm, issuer=claims.pop("iss", None), audience=claims.pop("aud", None),
                    subject=claims.pop("sub", None), extra_params=claims, scopes=list(conn.scopes))
    elif conn.kind == Kind.BASIC:
        body.update(username=conn.username)
    client.update_auth_connection(remote["id"], body={k: v for k, v in body.items() if v is not None})
    return str(remote["id"])


def _claimed(except_pk: Any) -> set[str]:
    return set(AuthConnection.objects.exclude(pk=except_pk).exclude(remote_id="").values_list("remote_id", flat=True))


@register_reconciler(AUTH_CONNECTION_KIND)
def reconcile_auth_connections(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    """Name, kind, provider and token URL (credentials are never returned, so they cannot be compared)."""
    remote = {str(c["id"]): c for c in client.list_auth_connections()}
    local = list(in_scope(AuthConnection.objects.select_related("workspace").defer(*AuthConnection.SECRET_FIELDS)
                          .order_by("pk"), workspace_ids))
    matched: set[str] = set()
    report_progress(0, len(local))
    for done, conn in enumerate(local, 1):
        item = dict(kind=AUTH_CONNECTION_KIND, object_id=conn.pk, workspace_id=conn.workspace_id, label=conn.name)
        found = remote.get(conn.remote_id) if conn.remote_id else None
        if found is None:
            yield DriftItem(remote_id=conn.remote_id or None, problem=MISSING_REMOTELY, **item)
        else:
            matched.add(conn.remote_id)
            mine = {"name": conn.remote_name, "auth_type": conn.kind, "provider": conn.provider or "custom"}
            if conn.token_url:
                mine["token_url"] = conn.token_url
            fields = {k: [v, found.get(k)] for k, v in mine.items() if found.get(k) != v}
            if fields:
                yield DriftItem(remote_id=conn.remote_id, problem=DIFFERS, fields=fields, **item)
        report_progress(done, len(local))
    for remote_id, found in remote.items():
        if remote_id not in matched:
            yield DriftItem(kind=AUTH_CONNECTION_KIND, object_id=None, remote_id=remote_id, problem=UNKNOWN_LOCALLY,
                            label=str(found.get("name") or ""))


@register_objects(AUTH_CONNECTION_KIND)
def auth_connection_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in (AuthConnection.objects.order_by("pk")
                                   .values_list("pk", "workspace_id", "name").iterator()):
        yield LocalObject(pk, workspace_id, name)
