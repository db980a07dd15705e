"""Suspending and resuming keys: disabled on the platform without being revoked (detection's credit guard uses it
when a key reaches its quota; a person can use it while investigating). Reversible, unlike revocation."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from keys.models import ApiKey
from keys.services.common import API_KEY_KIND, _user
from project import access
from project.actors import Actor
from project.audit.services import record
from project.sync.services import job_enqueue


def _enqueue_enabled(key: ApiKey, enabled: bool) -> None:
    # The handler sends is_enabled=false while the key is suspended whatever the payload says; "enable" tells it
    # to send is_enabled=true once after a resume (otherwise it never touches a key the platform disabled itself).
    job_enqueue(kind=API_KEY_KIND, object_id=key.pk, workspace_id=key.workspace_id, object_repr=str(key),
                payload={"enable": enabled})


@transaction.atomic
def api_key_suspend(*, actor: Actor, key: ApiKey, reason: str) -> ApiKey:
    """Disable an active or rotated key on the platform until it is resumed (keys.revoke; None is the system's
    credit guard). Audits ``api_key.suspend``; the platform learns it through the outbox (is_enabled false).
    A key already suspended is left as it is; a revoked, expired or failed key cannot be suspended."""
    access.require(actor, "keys.revoke", key.workspace_id)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.state not in ApiKey.USABLE_STATES:
        raise ValidationError(f"Only an active or rotated key can be suspended; this one is "
                              f"{key.get_state_display().lower()}.")
    if key.suspended_at is not None:
        return key
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the key is suspended (it goes in the audit trail)."})
    key.suspended_at, key.suspended_by, key.suspend_reason = timezone.now(), _user(actor), reason[:300]
    key.save(update_fields=["suspended_at", "suspended_by", "suspend_reason", "updated_at"])
    record(actor=actor, action="api_key.suspend", target=key, workspace_id=key.workspace_id,
           changes={"suspended": [False, True], "reason": key.suspend_reason})
    _enqueue_enabled(key, False)
    return key


@transaction.atomic
def api_key_resume(*, actor: Actor, key: ApiKey, reason: str = "") -> ApiKey:
    """Enable a suspended key again (keys.issue: it lets the key spend again). Audits ``api_key.resume``; the
    platform learns it through the outbox (is_enabled true). A key that is not suspended is left as it is."""
    access.require(actor, "keys.issue", key.workspace_id)
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.suspended_at is None:
        return key
    if key.state not in ApiKey.USABLE_STATES:
        raise ValidationError(f"This key is {key.get_state_display().lower()}; there is nothing to resume.")
    old_reason = key.suspend_reason
    key.suspended_at, key.suspended_by, key.suspend_reason = None, None, ""
    key.save(update_fields=["suspended_at", "suspended_by", "suspend_reason", "updated_at"])
    record(actor=actor, action="api_key.resume", target=key, workspace_id=key.workspace_id,
           changes={"suspended": [True, False], "suspend_reason": old_reason, "reason": (reason or "")[:300]})
    _enqueue_enabled(key, True)
    return key
