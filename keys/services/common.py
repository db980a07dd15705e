"""Shared pieces of the API-key services: constants, results, permission and audit helpers, the one way a
key ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from keys.models import ApiKey
from keys.selectors import allocated_quota
from project.actors import Actor
from project.audit.services import record
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from workspaces.models import Environment

API_KEY_KIND = SyncKind.API_KEY
KEY_FIELDS = ("name", "scopes", "credit_quota", "allowed_ips", "expires_at")
POLICY_FIELDS = ("rotation_period_days", "max_live_keys_per_account_per_env", "idle_days", "default_overlap_days",
                 "quiet_hours")
MAX_OVERLAP = timedelta(days=90)
DIGEST_BATCH = 1000


class AlreadyIssued(ValidationError):
    """The form that asked for this key was submitted before: its secret was shown then, and never again."""

    def __init__(self, key: ApiKey) -> None:
        super().__init__(f"This form was already submitted: “{key}” was issued then and its secret was shown "
                         "once. It cannot be shown again; if nobody copied it, rotate the key now.")
        self.key = key


@dataclass(frozen=True, eq=False, repr=False)
class IssuedKey:
    """A freshly issued key and its secret, held in memory for the one page that shows it."""

    key: ApiKey
    secret: str

    def __repr__(self) -> str:
        return f"IssuedKey(key={self.key.pk}, secret=[hidden])"




def _user(actor: Actor) -> Any:
    return actor if isinstance(actor, AbstractBaseUser) else None


def _snapshot(key: ApiKey) -> dict[str, Any]:
    return {f: getattr(key, f) for f in KEY_FIELDS}


def _enqueue(key: ApiKey, *, not_before: datetime | None = None) -> SyncJob:
    job = job_enqueue(kind=API_KEY_KIND, object_id=key.pk, workspace_id=key.workspace_id, object_repr=str(key))
    if not_before is not None:
        # The request issuing the key may still be talking to the platform: the job must not declare the issue
        # lost before the grace has passed. (A later change coalesced into the job makes it due at once.)
        SyncJob.objects.filter(pk=job.pk, state=SyncJob.State.PENDING,
                               next_attempt_at__lt=not_before).update(next_attempt_at=not_before)
    return job


def _check_budget(environment: Environment, quota: int | None, *, exclude_pk: int | None = None) -> None:
    budget = environment.credit_budget
    if budget is None:
        return
    if quota is None:
        raise ValidationError({"credit_quota": f"{environment} has a budget of {budget:,} credits per period, so "
                                               "every key there needs a credit quota."})
    allocated = allocated_quota(environment.pk, exclude_pk=exclude_pk)
    total = allocated + quota
    if total > budget:
        raise ValidationError({"credit_quota": (
            f"The keys' quotas in {environment} would add up to {total:,} credits, {total - budget:,} over its "
            f"budget of {budget:,}: {allocated:,} are already allocated, so this key can have at most "
            f"{max(budget - allocated, 0):,}.")})




def _revoke(actor: Actor, key: ApiKey, reason: str, state: str = ApiKey.State.REVOKED) -> None:
    """The one way a key ends (caller holds its row lock). Synced at once: disabled, then deleted, remotely."""
    old = key.state
    key.state, key.revoked_at, key.revoked_by = state, timezone.now(), _user(actor)
    key.revoke_reason = reason[:300]
    key.save(update_fields=["state", "revoked_at", "revoked_by", "revoke_reason", "updated_at"])
    action = "api_key.expire" if state == ApiKey.State.EXPIRED else "api_key.revoke"
    record(actor=actor, action=action, target=key, workspace_id=key.workspace_id,
           changes={"state": [old, state], "reason": key.revoke_reason})
    _enqueue(key)
