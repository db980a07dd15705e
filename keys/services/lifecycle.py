"""Revoking, changing, expiring and retiring keys; the service-account hook and bookkeeping for the sync."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from keys.models import ApiKey, KeyPolicy
from keys.selectors import key_policy_of
from keys.services.common import (
    KEY_FIELDS,
    _check_budget,
    _enqueue,
    _revoke,
    _snapshot,
)
from project import access
from project.actors import SYSTEM, Actor
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit.services import diff, record
from workspaces.models import Environment, ServiceAccount


@transaction.atomic
def api_key_revoke(*, actor: Actor, key: ApiKey, reason: str) -> ApiKey:
    """Revoke a key now and for good (keys.issue not needed, keys.revoke is). Audited; the platform learns it
    through the outbox at once (disable, then delete). Refuses a key already revoked, expired or failed."""
    access.require(actor, "keys.revoke", key.workspace_id)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.is_final:
        raise ValidationError(f"This key is already {key.get_state_display().lower()}; revocation is final.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the key is revoked (it goes in the audit trail)."})
    _revoke(actor, key, reason)
    return key


@transaction.atomic
def api_keys_revoke_for_service_account(actor: Actor, service_account: ServiceAccount) -> int:
    """SERVICE_ACCOUNT_DISABLE_HOOKS entry: revoke every live key of the account, in the caller's transaction.
    Needs keys.revoke (which also grants disabling accounts). Returns how many keys were revoked."""
    keys = list(ApiKey.objects.select_for_update().filter(service_account_id=service_account.pk,
                                                          state__in=ApiKey.LIVE_STATES).order_by("pk"))
    if keys:
        access.require(actor, "keys.revoke", service_account.workspace_id)
    for key in keys:
        _revoke(actor, key, f"service account “{service_account}” disabled")
    return len(keys)


def _apply_update(key: ApiKey, fields: dict[str, Any], *, lock: bool) -> dict[str, Any]:
    """Set the fields on `key` and check every rule; returns the audit diff (empty: nothing changes)."""
    unknown = set(fields) - set(KEY_FIELDS)
    if unknown:
        raise TypeError(f"api_key_update() got unexpected fields {sorted(unknown)}")
    if key.state != ApiKey.State.ACTIVE:
        final = " A revoked key can never be re-enabled." if key.is_final else ""
        raise ValidationError(f"Only an active key can be changed; this one is {key.get_state_display().lower()}."
                              + final)
    before = _snapshot(key)
    for name, value in fields.items():
        setattr(key, name, value)
    key.full_clean()
    if key.expires_at is not None and key.expires_at != before["expires_at"] and key.expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry is in the past: a key must be valid for some time."})
    changes = diff(before, _snapshot(key))
    if "credit_quota" in changes:
        environments = Environment.objects.select_for_update() if lock else Environment.objects
        _check_budget(environments.get(pk=key.environment_id), key.credit_quota, exclude_pk=key.pk)
    return changes


def api_key_update_check(*, actor: Actor, key: ApiKey, **fields: Any) -> None:
    """api_key_update's checks without any write, so a form can show the errors on the right field."""
    access.require(actor, "keys.issue", key.workspace_id)
    _apply_update(ApiKey.objects.get(pk=key.pk), fields, lock=False)


@transaction.atomic
def api_key_update(*, actor: Actor, key: ApiKey, **fields: Any) -> ApiKey:
    """Change an active key's name, scopes, quota, network allowlist or expiry (keys.issue). Audits the field
    changes and enqueues the platform update. Revoked, expired, failed and superseded keys cannot change."""
    access.require(actor, "keys.issue", key.workspace_id)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    changes = _apply_update(key, fields, lock=True)
    if not changes:
        return key
    key.save()
    record(actor=actor, action="api_key.update", target=key, workspace_id=key.workspace_id, changes=changes)
    _enqueue(key)
    return key


@transaction.atomic
def api_key_expire(*, actor: Actor, key: ApiKey) -> bool:
    """End a key past its expiry (the platform has no expiry of its own: this sweep is it). Audited, synced."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.state not in ApiKey.USABLE_STATES or key.expires_at is None or key.expires_at > timezone.now():
        return False
    _revoke(actor, key, "expired", state=ApiKey.State.EXPIRED)
    return True


@transaction.atomic
def api_key_retire(*, actor: Actor, key: ApiKey) -> str:
    """End a rotation overlap: revoke the superseded key if it has gone quiet (no use reported for the policy's
    quiet_hours), else raise one alert saying it is still in use. Returns "revoked", "in_use" or "not_due"."""
    key = ApiKey.objects.select_for_update().select_related("workspace", "service_account", "environment").get(
        pk=key.pk)
    now = timezone.now()
    if key.state != ApiKey.State.SUPERSEDED or key.overlap_until > now:
        return "not_due"
    policy = key_policy_of(key.workspace_id)
    if key.last_used_at is None or key.last_used_at <= now - timedelta(hours=policy.quiet_hours):
        _revoke(actor, key, f"rotation overlap ended and the key had gone quiet ({policy.quiet_hours} h without use)")
        return "revoked"
    alert_raise(actor=actor, workspace=key.workspace, kind="api_key_still_in_use", severity=Alert.Severity.MEDIUM,
                title=f"Rotated key “{key}” of {key.service_account} ({key.environment.name}) is still in use",
                dedup_key=f"api_key.still_in_use:{key.uuid}", target=key,
                details={"service_account": key.service_account.name, "environment": key.environment.name,
                         "overlap_until": key.overlap_until.isoformat(), "last_used_at": key.last_used_at.isoformat(),
                         "quiet_hours": policy.quiet_hours,
                         "advice": "Find the clients still sending the old key and move them to its successor; "
                                   "it is revoked automatically once quiet, or revoke it by hand."})
    return "in_use"


@transaction.atomic
def api_key_policy_restore(*, actor: Actor, key: ApiKey, reason: str) -> bool:
    """Push the key's permissions and network limit as Keyward holds them to the platform again (a guardrail in
    enforce mode found the platform's copy changed). Nothing changes locally. Audited as ``api_key.policy_restore``
    with the reason (the rule's name); enqueues the push. False (nothing done) for a key that is not usable."""
    access.require(actor, "keys.issue", key.workspace_id)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.state not in ApiKey.USABLE_STATES or not key.remote_key_id:
        return False
    record(actor=actor, action="api_key.policy_restore", target=key, workspace_id=key.workspace_id,
           changes={"reason": reason})
    _enqueue(key)
    return True


def api_key_raise_hygiene_alerts(*, key: ApiKey, policy: KeyPolicy, now: datetime) -> int:
    """Rotation-due and idle alerts for one key (each once per key, or per idle spell). Returns alerts raised."""
    raised = 0
    flags = key.flags(policy, now)
    if "overdue for rotation" in flags:
        _, created = alert_raise(actor=SYSTEM,
            workspace=key.workspace, kind="api_key_rotation_due", severity=Alert.Severity.MEDIUM, target=key,
            title=f"Key “{key}” of {key.service_account} is older than {policy.rotation_period_days} days",
            dedup_key=f"api_key.rotation_due:{key.uuid}",
            details={"activated_at": (key.activated_at or key.created_at).isoformat(),
                     "rotation_period_days": policy.rotation_period_days, "environment": key.environment.name})
        raised += created
    if any(flag.startswith("idle") for flag in flags):
        spell = key.last_used_at.date().isoformat() if key.last_used_at else "never"
        _, created = alert_raise(actor=SYSTEM,
            workspace=key.workspace, kind="api_key_idle", severity=Alert.Severity.LOW, target=key,
            title=f"Key “{key}” of {key.service_account} has not been used for {policy.idle_days}+ days",
            dedup_key=f"api_key.idle:{key.uuid}:{spell}",
            details={"last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                     "idle_days": policy.idle_days, "environment": key.environment.name,
                     "advice": "An unused key is risk without benefit: revoke it if nothing needs it."})
        raised += created
    return raised




# --- for the outbox and the sync handlers ---------------------------------------------------------------------
@transaction.atomic
def api_key_mark_gone(*, key_pk: int) -> bool:
    """For the outbox: the platform no longer has a usable key. Its secret cannot be recreated, so the key is
    revoked here too, with an alert (someone deleted it outside Keyward)."""
    key = ApiKey.objects.select_for_update().select_related("workspace", "service_account").get(pk=key_pk)
    if key.state not in ApiKey.USABLE_STATES:
        return False
    _revoke(SYSTEM, key, "deleted on the platform outside Keyward")
    alert_raise(actor=SYSTEM, workspace=key.workspace, kind="api_key_deleted_remotely", severity=Alert.Severity.HIGH,
                target=key,
                title=f"Key “{key}” of {key.service_account} was deleted on the platform outside Keyward",
                dedup_key=f"api_key.deleted_remotely:{key.uuid}", details={"remote_key_id": key.remote_key_id})
    return True
