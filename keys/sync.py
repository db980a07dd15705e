"""Turns API keys into platform calls for the outbox, and compares them with the platform.

Every handler sends the object's current state and is safe to run twice: creates carry an idempotency key and a
Keyward tag in the name (so a retry finds what a lost answer made), a revoked key is disabled then deleted and a
404 means done. A key's secret is never recreated: a key the platform lost is revoked here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from keys.models import ALL_SCOPES, ApiKey, platform_expiry
from keys.services import API_KEY_KIND, api_key_abandon, api_key_mark_gone
from project.platform import errors
from project.platform.scopes import same_permissions
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
from workspaces.models import ServiceAccount

TAG_PREFIX = "[keyward:"  # ApiKey.remote_tag is "[keyward:<uuid>]"


class IssueInProgress(errors.Unavailable):
    """The request issuing this key may still be waiting for the platform: try the job again later."""


# --- API keys ------------------------------------------------------------------------------------------------------
def _remote_state(key: ApiKey) -> dict[str, Any]:
    state = {"name": key.remote_name, "permissions": key.platform_permissions(),
             "character_limit": key.credit_quota if key.credit_quota is not None else "clear",
             "allowed_ips": list(key.allowed_ips) if key.allowed_ips else "clear"}
    expiry = platform_expiry(key.expires_at)
    if expiry is not None:
        state["expires_at_unix"] = expiry
    elif key.expires_at is None:
        state["expires_at_unix"] = "clear"
    # An expiry beyond the platform's 90 days is not sent yet (Keyward's sweep ends the key; a later push sends it).
    return state


def _disable(client: Any, account_id: str, key_id: str) -> None:
    """Suspend on the platform with ``POST …/disable`` (it survives a plan downgrade); a platform without that
    route (404 on the route itself, 405) gets PATCH is_enabled=false instead."""
    try:
        client.disable_api_key(account_id, key_id)
    except errors.PlatformError as exc:
        route_missing = exc.status == 405 or (isinstance(exc, errors.NotFound) and exc.code == "http_404")
        if not route_missing:
            raise
        client.update_api_key(account_id, key_id, is_enabled=False)


def _remove_remote(client: Any, key: ApiKey, account_id: str) -> None:
    """Make sure no platform key of this row stays usable: disable (instant) then delete; 404 means done."""
    ids = {key.remote_key_id} if key.remote_key_id else set()
    if key.activated_at is None:
        # Never confirmed: a lost answer may have left a key named with this row's uuid (or several, if the
        # platform ignored the idempotency key). Nobody ever saw their secrets; they all go.
        try:
            listed = client.list_api_keys(account_id)
        except errors.NotFound:
            return
        ids.update(k["key_id"] for k in listed if key.remote_tag in (k.get("name") or ""))
    for key_id in sorted(ids):
        try:
            client.update_api_key(account_id, key_id, is_enabled=False)
        except errors.NotFound:
            continue
        try:
            client.delete_api_key(account_id, key_id)
        except errors.NotFound:
            pass


@register(API_KEY_KIND)
def push_api_key(job: SyncJob, client: Any) -> str | None:
    key = ApiKey.objects.select_related("service_account").filter(pk=job.object_id).first()
    if key is None:
        return None  # keys are never deleted; nothing to do for a row that is gone
    if key.state == ApiKey.State.PENDING:
        if not api_key_abandon(key_pk=key.pk):
            raise IssueInProgress("the request issuing this key may still be waiting for the platform",
                                  code="issue_in_progress")
        key.refresh_from_db()
    account_id = key.service_account.remote_id
    if not account_id:
        return None  # the account never reached the platform, so no key of it did either
    if key.state in ApiKey.USABLE_STATES:
        state = _remote_state(key)
        if key.suspended_at is not None:
            pass  # suspended (credit guard or a person): disabled below, off until resumed
        elif job.payload.get("enable") is True:
            state["is_enabled"] = True  # resumed: switched back on once (api_key_resume asked for it)
        try:
            # Otherwise no is_enabled: a key the platform disabled itself (e.g. found exposed publicly) stays
            # disabled; the reconcile reports it as drift for a person to decide.
            client.update_api_key(account_id, key.remote_key_id, **state)
            if key.suspended_at is not None:
                _disable(client, account_id, key.remote_key_id)
        except errors.NotFound:
            if key.activated_at and timezone.now() - key.activated_at < timedelta(
                    seconds=settings.API_KEY_ISSUE_GRACE_SECONDS):
                # Just issued and already missing: more likely a platform that lost its state (an emulator
                # restarted) or a list not yet in step than someone deleting it outside Keyward. Look again later.
                raise IssueInProgress("the key was issued moments ago and the platform does not show it yet",
                                      code="issue_in_progress") from None
            api_key_mark_gone(key_pk=key.pk)
        return key.remote_key_id
    _remove_remote(client, key, account_id)
    return key.remote_key_id or None


def _local_key_for(remote: dict[str, Any], by_remote_id: dict[str, ApiKey]) -> ApiKey | None:
    key = by_remote_id.get(remote["key_id"])
    if key is not None:
        return key
    name = remote.get("name") or ""
    start = name.rfind(TAG_PREFIX)
    if start < 0 or not name.endswith("]"):
        return None
    try:
        key_uuid = uuid.UUID(name[start + len(TAG_PREFIX):-1])
    except ValueError:
        return None
    return ApiKey.objects.filter(uuid=key_uuid).first()


def _differences(key: ApiKey, remote: dict[str, Any]) -> dict[str, list[Any]]:
    local = _remote_state(key)
    remote_permissions = ALL_SCOPES if remote.get("permissions") is None else list(remote["permissions"])
    # "All" may be listed as null or as every permission, and a list's order means nothing: compared as sets.
    local_permissions = remote_permissions if same_permissions(local["permissions"], remote_permissions) \
        else local["permissions"]
    pairs = {
        "enabled": (key.suspended_at is None, not remote.get("is_disabled", False)),
        "name": (local["name"], remote.get("name")),
        "permissions": (local_permissions, remote_permissions),
        "character_limit": (key.credit_quota, remote.get("character_limit")),
        "allowed_ips": (sorted(key.allowed_ips), sorted(remote.get("allowed_ips") or [])),
    }
    expiry = platform_expiry(key.expires_at)
    if expiry is not None or key.expires_at is None:
        # An expiry beyond the platform's 90 days is not sent yet, so it is not compared either.
        pairs["expires_at_unix"] = (expiry, remote.get("expires_at_unix"))
    return {field: [mine, theirs] for field, (mine, theirs) in pairs.items() if mine != theirs}


@register_reconciler(API_KEY_KIND)
def reconcile_api_keys(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    """Usable keys missing or different on the platform; platform keys of revoked, expired or failed rows
    (pushing them deletes them); platform keys no row accounts for (made outside Keyward)."""
    accounts = list(in_scope(ServiceAccount.objects.exclude(remote_id=""), workspace_ids)
                    .values_list("remote_id", flat=True))
    remote_accounts = {a["service_account_user_id"]: a for a in client.list_service_accounts()}
    by_remote_id = {k.remote_key_id: k for k in in_scope(ApiKey.objects, workspace_ids).exclude(remote_key_id="")
                    .select_related("service_account")}
    seen: set[int] = set()
    for done, account_id in enumerate(accounts, 1):
        for remote in (remote_accounts.get(account_id) or {}).get("api-keys") or []:
            key = _local_key_for(remote, by_remote_id)
            if key is None:
                yield DriftItem(API_KEY_KIND, None, remote["key_id"], UNKNOWN_LOCALLY, label=remote.get("name", ""))
                continue
            seen.add(key.pk)
            if key.state not in ApiKey.USABLE_STATES:
                yield DriftItem(API_KEY_KIND, key.pk, remote["key_id"], DIFFERS, workspace_id=key.workspace_id,
                                label=str(key), fields={"state": [key.state, "present on the platform"]})
                continue
            changes = _differences(key, remote)
            if changes:
                yield DriftItem(API_KEY_KIND, key.pk, remote["key_id"], DIFFERS, workspace_id=key.workspace_id,
                                label=str(key), fields=changes)
        report_progress(done, len(accounts))
    for key in ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES, service_account__remote_id__in=accounts) \
            .exclude(pk__in=seen).order_by("pk"):
        yield DriftItem(API_KEY_KIND, key.pk, key.remote_key_id, MISSING_REMOTELY, workspace_id=key.workspace_id,
                        label=str(key))


@register_objects(API_KEY_KIND)
def api_key_objects() -> Iterator[LocalObject]:
    for key in ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES).only("pk", "workspace_id", "name", "hint"):
        yield LocalObject(key.pk, key.workspace_id, str(key))
