"""Raising and working alerts. Every app raises them, so this lives on the ground floor and imports no app."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from project import access
from project.actors import Actor, is_system
from project.alerts.models import Alert
from project.audit.services import record


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


def _transition(actor: Actor, alert: Alert, state: str) -> Alert:
    access.require(actor, "incidents.manage", alert.workspace_id)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == Alert.State.RESOLVED:
        raise ValueError("This alert is already resolved.")
    old = alert.state
    now = timezone.now()
    # The system (an incident it opened itself) is nobody: the "by" columns hold people only.
    actor_user = None if is_system(actor) else actor
    if state == Alert.State.ACKNOWLEDGED:
        if old == Alert.State.ACKNOWLEDGED:
            return alert
        alert.acknowledged_by, alert.acknowledged_at = actor_user, now
    else:
        alert.resolved_by, alert.resolved_at = actor_user, now
        if alert.acknowledged_at is None:
            alert.acknowledged_by, alert.acknowledged_at = actor_user, now
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
