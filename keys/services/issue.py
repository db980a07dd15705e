"""Issuing and rotating keys (see the package docstring for the three steps around the platform call)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys.models import ApiKey, key_digest, platform_expiry
from keys.selectors import key_policy_of, live_key_count
from keys.services.common import (
    MAX_OVERLAP,
    AlreadyIssued,
    IssuedKey,
    _check_budget,
    _enqueue,
    _revoke,
    _snapshot,
    _user,
)
from keys.services.platform_hash import platform_hash_read
from project import access
from project.actors import SYSTEM, Actor
from project.audit.services import diff, record
from project.platform import errors
from workspaces.models import Environment, ServiceAccount


# --- issue ---------------------------------------------------------------------------------------------------
@transaction.atomic
def _issue_prepare(*, actor: Actor, service_account: ServiceAccount, environment: Environment, name: str,
                   scopes: Any, credit_quota: int | None, allowed_ips: Any, expires_at: datetime | None,
                   request_uuid: uuid.UUID | None, predecessor: ApiKey | None = None,
                   budget_exclude_pk: int | None = None) -> ApiKey:
    access.require(actor, "keys.issue", environment.workspace_id)
    if request_uuid is not None:
        done = ApiKey.objects.filter(uuid=request_uuid).first()
        if done is not None:
            raise AlreadyIssued(done)
    # Issues in one environment take turns: the budget and the live-key cap are sums over rows.
    env = Environment.objects.select_for_update().get(pk=environment.pk)
    account = ServiceAccount.objects.get(pk=service_account.pk)
    key = ApiKey(workspace_id=env.workspace_id, service_account=account, environment=env, name=name,
                 scopes=scopes, credit_quota=credit_quota, allowed_ips=list(allowed_ips or []), expires_at=expires_at,
                 predecessor=predecessor, created_by=_user(actor))
    if request_uuid is not None:
        key.uuid = request_uuid
    key.full_clean(exclude=["uuid"])
    if not account.is_active:
        raise ValidationError({"service_account": f"“{account}” is disabled: a disabled account gets no keys."})
    if not account.remote_id:
        raise ValidationError({"service_account": f"“{account}” has not reached the platform yet (sync pending); "
                                                  "try again shortly."})
    policy = key_policy_of(env.workspace_id)
    live = live_key_count(account.pk, env.pk)
    if live >= policy.max_live_keys_per_account_per_env:
        raise ValidationError({"service_account": (
            f"“{account}” already has {live} live key(s) in {env.name}, the workspace's limit "
            f"({policy.max_live_keys_per_account_per_env}: one in use, one in rotation). Revoke one first.")})
    _check_budget(env, key.credit_quota, exclude_pk=budget_exclude_pk)
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError:
        if request_uuid is not None and ApiKey.objects.filter(uuid=request_uuid).exists():
            raise AlreadyIssued(ApiKey.objects.get(uuid=request_uuid)) from None
        if predecessor is not None:
            raise ValidationError("This key is already being rotated; wait for that rotation to finish.") from None
        raise
    changes = diff({}, _snapshot(key))
    changes.update(service_account=[None, account.name], environment=[None, env.name])
    if predecessor is not None:
        changes["predecessor"] = [None, predecessor.pk]
    record(actor=actor, action="api_key.issue", target=key, workspace_id=key.workspace_id, changes=changes)
    _enqueue(key, not_before=timezone.now() + timedelta(seconds=settings.API_KEY_ISSUE_GRACE_SECONDS))
    return key


@transaction.atomic
def _issue_fail(*, actor: Actor, key_pk: int, reason: str) -> None:
    key = ApiKey.objects.select_for_update().get(pk=key_pk)
    if key.state != ApiKey.State.PENDING:
        return
    key.state, key.revoked_at = ApiKey.State.FAILED, timezone.now()
    key.revoke_reason = f"issue failed: {reason}"[:300]
    key.save(update_fields=["state", "revoked_at", "revoke_reason", "updated_at"])
    record(actor=actor, action="api_key.issue_failed", target=key, workspace_id=key.workspace_id,
           changes={"state": [ApiKey.State.PENDING, ApiKey.State.FAILED], "reason": reason[:300]})
    _enqueue(key)  # deletes whatever the platform made under this key's uuid


@sensitive_variables("secret")
@transaction.atomic
def _issue_complete(*, actor: Actor, key_pk: int, key_id: str, secret: str,
                    overlap: timedelta | None, platform_hash: str = "") -> IssuedKey | None:
    predecessor_id = ApiKey.objects.filter(pk=key_pk).values_list("predecessor_id", flat=True).get()
    # Locks in chain order (predecessor first), as every rotation takes them, so two never wait on each other.
    predecessor = ApiKey.objects.select_for_update().get(pk=predecessor_id) if predecessor_id else None
    key = ApiKey.objects.select_for_update().get(pk=key_pk)
    if key.state != ApiKey.State.PENDING:
        # Cancelled or declared lost while the platform worked: the key it made must not live.
        ApiKey.objects.filter(pk=key.pk, remote_key_id="").update(remote_key_id=key_id)
        _enqueue(key)
        return None
    now = timezone.now()
    key.state, key.remote_key_id, key.activated_at = ApiKey.State.ACTIVE, key_id, now
    key.hint, key.digest, key.platform_hash = secret[-4:], key_digest(secret), platform_hash
    key.save(update_fields=["state", "remote_key_id", "activated_at", "hint", "digest", "platform_hash",
                            "updated_at"])
    record(actor=actor, action="api_key.activate", target=key, workspace_id=key.workspace_id,
           changes={"state": [ApiKey.State.PENDING, ApiKey.State.ACTIVE], "remote_key_id": [None, key_id],
                    "hint": [None, key.hint]})
    if predecessor is not None and predecessor.state == ApiKey.State.ACTIVE:
        predecessor.state, predecessor.overlap_until = ApiKey.State.SUPERSEDED, now + (overlap or timedelta(0))
        predecessor.save(update_fields=["state", "overlap_until", "updated_at"])
        record(actor=actor, action="api_key.supersede", target=predecessor, workspace_id=predecessor.workspace_id,
               changes={"state": [ApiKey.State.ACTIVE, ApiKey.State.SUPERSEDED],
                        "overlap_until": [None, predecessor.overlap_until.isoformat()], "successor": key.pk})
    return IssuedKey(key=key, secret=secret)


@sensitive_variables("created", "secret")
def _issue_call(*, actor: Actor, key: ApiKey, client: Any, overlap: timedelta | None = None) -> IssuedKey:
    from project.platform.client import client_for_workspace

    client = client or client_for_workspace(key.workspace_id)
    account = ServiceAccount.objects.only("remote_id").get(pk=key.service_account_id)
    try:
        created = client.create_api_key(
            account.remote_id, name=key.remote_name, permissions=key.platform_permissions(),
            character_limit=key.credit_quota, allowed_ips=key.allowed_ips or None,
            expires_at_unix=platform_expiry(key.expires_at), idempotency_key=str(key.uuid))
        secret, key_id = str(created["xi-api-key"]), str(created["key_id"])
    except errors.PlatformError as exc:
        _issue_fail(actor=actor, key_pk=key.pk, reason=exc.message or exc.code)
        raise ValidationError(
            f"The platform did not issue the key: {exc.message or exc.code}. No key is usable; anything the "
            "platform half-made is being deleted. You can try again.") from None
    except (KeyError, TypeError, ValueError):
        _issue_fail(actor=actor, key_pk=key.pk, reason="unexpected answer from the platform")
        raise ValidationError("The platform gave an unexpected answer; the key is being deleted there. "
                              "You can try again.") from None
    # The platform names the key in its usage by its own hash, listed with the key: read it back now (a failed
    # read leaves it empty; the usage ingest fills it before joining).
    platform_hash = platform_hash_read(client, account.remote_id, key_id)
    issued = _issue_complete(actor=actor, key_pk=key.pk, key_id=key_id, secret=secret, overlap=overlap,
                             platform_hash=platform_hash)
    if issued is None:
        raise ValidationError("This key was cancelled while the platform was issuing it; the platform's copy is "
                              "being deleted.")
    return issued


def api_key_issue(*, actor: Actor, service_account: ServiceAccount, environment: Environment, name: str,
                  scopes: Any, credit_quota: int | None = None, allowed_ips: Any = None,
                  expires_at: datetime | None = None, request_uuid: uuid.UUID | None = None,
                  client: Any = None) -> IssuedKey:
    """Issue a key to a service account in one environment and return it with its secret (in memory only).

    Checks keys.issue, the scopes, network allowlist and expiry, the account (same workspace, enabled, on the
    platform), the live-key cap and the environment's budget. Audits ``api_key.issue`` and ``api_key.activate``
    (or ``api_key.issue_failed``); enqueues the key's sync job (deferred, see the module docstring). Not one
    transaction on purpose: the pending row is committed before the platform is called. Call it outside any
    transaction. Raises ValidationError (field errors, AlreadyIssued, or the platform's refusal).
    """
    key = _issue_prepare(actor=actor, service_account=service_account, environment=environment, name=name,
                         scopes=scopes, credit_quota=credit_quota, allowed_ips=allowed_ips, expires_at=expires_at,
                         request_uuid=request_uuid)
    return _issue_call(actor=actor, key=key, client=client)


# --- rotate ----------------------------------------------------------------------------------------------------
def _successor_expiry(old: ApiKey) -> datetime | None:
    return old.expires_at if old.expires_at and old.expires_at > timezone.now() else None


@transaction.atomic
def _rotate_prepare(*, actor: Actor, key: ApiKey, request_uuid: uuid.UUID | None) -> ApiKey:
    access.require(actor, "keys.issue", key.workspace_id)
    if request_uuid is not None and (done := ApiKey.objects.filter(uuid=request_uuid).first()) is not None:
        raise AlreadyIssued(done)
    old = ApiKey.objects.select_for_update().get(pk=key.pk)
    if old.state != ApiKey.State.ACTIVE:
        final = " A revoked key can never be re-enabled; issue a new key instead." if old.is_final else ""
        raise ValidationError(f"Only an active key can be rotated; this one is {old.get_state_display().lower()}."
                              + final)
    if old.successors.filter(state__in=ApiKey.LIVE_STATES).exists():
        raise ValidationError("This key is already being rotated; wait for that rotation to finish.")
    # The pair counts once in the budget: the successor takes over the old key's allocation.
    return _issue_prepare(actor=actor, service_account=old.service_account, environment=old.environment,
                          name=old.name, scopes=old.scopes, credit_quota=old.credit_quota, allowed_ips=old.allowed_ips,
                          expires_at=_successor_expiry(old), request_uuid=request_uuid, predecessor=old,
                          budget_exclude_pk=old.pk)


def api_key_rotate(*, actor: Actor, key: ApiKey, overlap: timedelta | None = None,
                   request_uuid: uuid.UUID | None = None, client: Any = None) -> IssuedKey:
    """Issue a successor with the key's environment, scopes, quota, network allowlist (and expiry, if still
    ahead); the old key becomes superseded and stays valid for ``overlap`` (default: the policy's, 0–90 days).
    The sweep revokes it after the overlap once it has gone quiet, or raises an alert while it is still used.

    Needs keys.issue. Audits the issue, the activation and ``api_key.supersede``. Retry-safe: a key has at most
    one live successor (database constraint), a resubmitted form gets AlreadyIssued, a lost answer fails the
    successor and deletes the platform's copy. Call it outside any transaction.
    """
    if overlap is None:
        overlap = timedelta(days=key_policy_of(key.workspace_id).default_overlap_days)
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise ValidationError({"overlap_days": "The overlap is between 0 and 90 days."})
    successor = _rotate_prepare(actor=actor, key=key, request_uuid=request_uuid)
    return _issue_call(actor=actor, key=successor, client=client, overlap=overlap)


@transaction.atomic
def _rotate_now_revoke(*, actor: Actor, key: ApiKey) -> tuple[ApiKey, bool]:
    access.require(actor, "keys.issue", key.workspace_id)
    access.require(actor, "keys.revoke", key.workspace_id)
    old = ApiKey.objects.select_for_update().get(pk=key.pk)
    if old.state in (ApiKey.State.PENDING, ApiKey.State.FAILED):
        raise ValidationError("This key was never issued; there is nothing to rotate (revoke it, or issue a new key).")
    if old.state in ApiKey.USABLE_STATES:
        _revoke(actor, old, "rotated now (exposure)")
    has_successor = old.successors.filter(state__in=ApiKey.LIVE_STATES).exists()
    return old, has_successor


def api_key_rotate_now(*, actor: Actor, key: ApiKey, request_uuid: uuid.UUID | None = None,
                       client: Any = None) -> IssuedKey | None:
    """Exposure response: revoke the key at once, then issue a successor with its settings (no overlap).

    The revocation commits first and stands even if the successor cannot be issued. A key that already has a
    live successor (a rotation in its overlap) is only revoked: returns None. A revoked or expired key without
    one gets its replacement. Needs keys.issue and keys.revoke; audited; the revocation is synced at once.
    """
    if request_uuid is not None and (done := ApiKey.objects.filter(uuid=request_uuid).first()) is not None:
        raise AlreadyIssued(done)
    old, has_successor = _rotate_now_revoke(actor=actor, key=key)
    if has_successor:
        return None
    try:
        successor = _issue_prepare(
            actor=actor, service_account=old.service_account, environment=old.environment, name=old.name,
            scopes=old.scopes, credit_quota=old.credit_quota, allowed_ips=old.allowed_ips,
            expires_at=_successor_expiry(old), request_uuid=request_uuid, predecessor=old)
    except AlreadyIssued:
        raise
    except ValidationError as exc:
        raise ValidationError([f"The old key is revoked. Its successor could not be issued: {m}"
                               for m in exc.messages]) from None
    return _issue_call(actor=actor, key=successor, client=client)




# --- for the outbox ------------------------------------------------------------------------------------------
@transaction.atomic
def api_key_abandon(*, key_pk: int) -> bool:
    """For the outbox: a pending key past the grace lost its request (crash, lost answer): mark it failed so its
    job deletes the platform's copy. False while the grace lasts (the request may still complete it)."""
    key = ApiKey.objects.select_for_update().get(pk=key_pk)
    if key.state != ApiKey.State.PENDING:
        return True
    if key.created_at > timezone.now() - timedelta(seconds=settings.API_KEY_ISSUE_GRACE_SECONDS):
        return False
    key.state, key.revoked_at = ApiKey.State.FAILED, timezone.now()
    key.revoke_reason = "issue failed: the platform's answer never reached Keyward"
    key.save(update_fields=["state", "revoked_at", "revoke_reason", "updated_at"])
    record(actor=SYSTEM, action="api_key.issue_failed", target=key, workspace_id=key.workspace_id,
           changes={"state": [ApiKey.State.PENDING, ApiKey.State.FAILED], "reason": key.revoke_reason})
    return True
