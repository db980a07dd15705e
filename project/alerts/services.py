"""Raising and working alerts. Every app raises them, so this lives on the ground floor and imports no app."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from project import access
from project.actors import Actor
from project.alerts.models import Alert
from project.audit.services import event, record, record_many

BATCH = 1000  # alerts per lookup and insert


@transaction.atomic
def alert_raise(*, actor: Actor, workspace: Model, kind: str, title: str, dedup_key: str,
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


def alert_build(*, workspace: Model, kind: str, title: str, dedup_key: str, severity: str = Alert.Severity.MEDIUM,
                details: dict[str, Any] | None = None, target: Model | None = None) -> Alert:
    """An alert not yet raised, as alert_raise would save it (for alerts_raise_many)."""
    alert = Alert(workspace=workspace, kind=kind, title=title[:200], dedup_key=dedup_key[:200], severity=severity,
                  details=details or {})
    if target is not None:
        alert.object_type, alert.object_id = target._meta.label_lower, str(target.pk)
        alert.object_repr = str(target)[:200]
    return alert


def alerts_raise_many(*, actor: Actor, alerts: list[Alert]) -> list[Alert]:
    """Raise many alerts (built with alert_build) as alert_raise raises each: one whose dedup key its workspace
    already holds (or an earlier one in the list) changes nothing; each new one is audited. A bounded number of
    queries per thousand alerts, whatever their number: one lookup, one insert, one audit insert. Returns the
    alerts raised, saved."""
    raised: list[Alert] = []
    seen: set[tuple[int, str]] = set()
    for i in range(0, len(alerts), BATCH):
        chunk = alerts[i:i + BATCH]
        seen.update(Alert.objects.filter(dedup_key__in=[a.dedup_key for a in chunk])
                    .values_list("workspace_id", "dedup_key"))
        fresh = []
        for alert in chunk:
            if (alert.workspace_id, alert.dedup_key) in seen:
                continue
            seen.add((alert.workspace_id, alert.dedup_key))
            # As alert_raise's full_clean, less the lookups (the workspace is a saved row; the dedup key was
            # looked up above, and the insert below falls back to one at a time if another worker raced us).
            alert.full_clean(exclude=["workspace"], validate_unique=False, validate_constraints=False)
            fresh.append(alert)
        if not fresh:
            continue
        try:
            with transaction.atomic():  # each alert with its audit event, as alert_raise
                Alert.objects.bulk_create(fresh)
                _audit_raised(actor, fresh)
        except IntegrityError:  # another worker raised some of them meanwhile: one at a time, as alert_raise
            with transaction.atomic():
                fresh = [alert for alert in fresh if _saved_unless_raised(alert)]
                _audit_raised(actor, fresh)
        raised += fresh
    return raised


def _audit_raised(actor: Actor, alerts: list[Alert]) -> None:
    record_many([event(actor=actor, action="alert.raise", target=alert, workspace_id=alert.workspace_id,
                       changes={"kind": alert.kind, "severity": alert.severity}) for alert in alerts])


def _saved_unless_raised(alert: Alert) -> bool:
    alert.pk = None
    try:
        with transaction.atomic():
            alert.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def _transition(actor: Actor, alert: Alert, state: str) -> Alert:
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
def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    """Mark an open alert as seen by `actor`. Audited."""
    return _transition(actor, alert, Alert.State.ACKNOWLEDGED)


@transaction.atomic
def alert_resolve(*, actor: Actor, alert: Alert) -> Alert:
    """Close an alert, recording who and when. Audited."""
    return _transition(actor, alert, Alert.State.RESOLVED)
