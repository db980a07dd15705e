"""Raising and working alerts; each workspace's detection policy.

Usage ingest and the rules live in detection.usage and detection.rules, the credit guard in detection.guard,
concurrency in detection.concurrency, incidents in detection.incidents (those import keys' services, which import
this module: keep this one free of keys imports).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from agents.models import Workspace
from detection.models import Alert, DetectionPolicy
from project import access
from project.audit.services import diff, record

POLICY_FIELDS = ("time_zone", "spike_factor", "spike_min_credits", "baseline_days", "unusual_hours_enabled",
                 "unusual_start_hour", "unusual_end_hour", "unusual_min_credits", "idle_days", "concurrency_samples",
                 "guard_notice_percent", "guard_warning_percent", "suspend_prod_at_limit", "suspend_nonprod_at_limit",
                 "billing_period_day")


@transaction.atomic
def alert_raise(*, actor: Any = None, workspace: Workspace, kind: str, title: str, dedup_key: str,
                severity: str = Alert.Severity.MEDIUM, details: dict[str, Any] | None = None,
                target: Model | None = None) -> tuple[Alert, bool]:
    """Raise an alert unless one with the same dedup key exists (then nothing changes).

    `details` holds the figures that triggered it and must never hold a secret value. Audited when new.
    Returns (alert, created).
    """
    existing = Alert.objects.filter(workspace=workspace, dedup_key=dedup_key).first()
    if existing is not None:
        return existing, False
    alert = Alert(workspace=workspace, kind=kind, title=title[:200], dedup_key=dedup_key[:200], severity=severity,
                  details=details or {})
    if target is not None:
        alert.object_type, alert.object_id = target._meta.label_lower, str(target.pk)
        alert.object_repr = str(target)[:200]
    alert.full_clean()
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:  # raised concurrently by another worker
        return Alert.objects.get(workspace=workspace, dedup_key=dedup_key), False
    record(actor=actor, action="alert.raise", target=alert, workspace_id=workspace.pk,
           changes={"kind": kind, "severity": severity})
    return alert, True


def _transition(actor: Any, alert: Alert, state: str) -> Alert:
    access.require(actor, "incidents.manage", alert.workspace_id)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == Alert.State.RESOLVED:
        raise ValueError("This alert is already resolved.")
    old = alert.state
    now = timezone.now()
    if state == Alert.State.ACKNOWLEDGED:
        if old == Alert.State.ACKNOWLEDGED:
            return alert
        alert.acknowledged_by, alert.acknowledged_at = actor, now
    else:
        alert.resolved_by, alert.resolved_at = actor, now
        if alert.acknowledged_at is None:
            alert.acknowledged_by, alert.acknowledged_at = actor, now
    alert.state = state
    alert.save()
    record(actor=actor, action=f"alert.{state}", target=alert, workspace_id=alert.workspace_id,
           changes={"state": [old, state]})
    return alert


@transaction.atomic
def alert_acknowledge(*, actor: Any, alert: Alert) -> Alert:
    """Mark an open alert as seen by `actor`. Audited."""
    return _transition(actor, alert, Alert.State.ACKNOWLEDGED)


@transaction.atomic
def alert_resolve(*, actor: Any, alert: Alert) -> Alert:
    """Close an alert, recording who and when. Audited."""
    return _transition(actor, alert, Alert.State.RESOLVED)


# --- detection policies ------------------------------------------------------------------------------------
def _policy_values(policy: DetectionPolicy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in POLICY_FIELDS}


def detection_policies_ensure(*, workspace_ids: Iterable[int]) -> dict[int, DetectionPolicy]:
    """Each workspace's detection policy, created with the defaults where a workspace has none yet (by the
    system, audited as ``detection_policy.create``). Two queries when every policy exists."""
    wanted = sorted(set(workspace_ids))
    found = {p.workspace_id: p for p in DetectionPolicy.objects.filter(workspace_id__in=wanted)}
    missing = [ws for ws in wanted if ws not in found]
    for workspace_id in missing:  # once per workspace, ever
        with transaction.atomic():
            policy, created = DetectionPolicy.objects.get_or_create(workspace_id=workspace_id)
            if created:
                record(actor=None, action="detection_policy.create", target=policy, workspace_id=workspace_id,
                       changes={"defaults": True})
        found[workspace_id] = policy
    return found


def detection_policy_of(workspace_id: int) -> DetectionPolicy:
    """The workspace's detection policy, created with the defaults on first use."""
    return detection_policies_ensure(workspace_ids=[workspace_id])[workspace_id]


@transaction.atomic
def detection_policy_save(*, actor: Any, workspace: Workspace, **fields: Any) -> DetectionPolicy:
    """Create or change a workspace's detection thresholds and credit-guard settings (incidents.manage).
    Audits the field changes; nothing reaches the platform."""
    access.require(actor, "incidents.manage", workspace.pk)
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise TypeError(f"detection_policy_save() got unexpected fields {sorted(unknown)}")
    policy = DetectionPolicy.objects.select_for_update().filter(workspace=workspace).first()
    before = _policy_values(policy) if policy else {}
    policy = policy or DetectionPolicy(workspace=workspace)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    changes = diff(before, _policy_values(policy))
    if changes or not before:
        record(actor=actor, action="detection_policy.update" if before else "detection_policy.create",
               target=policy, workspace_id=workspace.pk, changes=changes)
    return policy
