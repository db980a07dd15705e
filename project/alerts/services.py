"""Raising and working alerts. Every app raises them, so this lives on the ground floor and imports no app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Model
from django.utils import timezone

from project import access, webhooks
from project.actors import Actor, is_system
from project.alerts import notify
from project.alerts.models import Alert, Delivery, NotificationChannel, NotificationRule
from project.audit.services import diff, event, record, record_many
from project.bulk import build, bulk_insert
from project.outbound import validate_outbound_url

BATCH = 1000  # alerts per lookup and insert


@transaction.atomic
def alert_raise(*, actor: Actor, workspace: Model, kind: str, title: str, dedup_key: str,
                severity: str = Alert.Severity.MEDIUM, details: dict[str, Any] | None = None,
                target: Model | None = None, notify_channels: bool = True) -> tuple[Alert, bool]:
    """Raise an alert unless one with the same dedup key exists: then a repeat is counted on it (unless resolved)
    and delivered again only past each channel's quiet period (project.alerts.notify.on_repeat).

    `details` holds the figures that triggered it and must never hold a secret value. Audited when new; a new
    alert is delivered to the channels its workspace's rules route it to (through the outbox, after commit), unless
    `notify_channels` is False (the credit guard sends only the highest threshold crossed at once).
    Returns (alert, created).
    """
    existing = Alert.objects.filter(workspace=workspace, dedup_key=dedup_key[:200]).first()
    if existing is not None:
        if existing.state != Alert.State.RESOLVED:
            now = timezone.now()
            Alert.objects.filter(pk=existing.pk).update(repeats=F("repeats") + 1, last_seen_at=now)
            existing.repeats += 1
            existing.last_seen_at = now
            if notify_channels:
                notify.on_repeat(existing)
        return existing, False
    alert = build(Alert, workspace=workspace, kind=kind, title=title[:200], dedup_key=dedup_key[:200],
                  severity=severity, details=details or {})
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
    if notify_channels:
        notify.on_raise(alert)
    return alert, True


def alert_build(*, workspace: Model, kind: str, title: str, dedup_key: str, severity: str = Alert.Severity.MEDIUM,
                details: dict[str, Any] | None = None, target: Model | None = None) -> Alert:
    """An alert not yet raised, as alert_raise would save it (for alerts_raise_many)."""
    alert = build(Alert, workspace=workspace, kind=kind, title=title[:200], dedup_key=dedup_key[:200],
                  severity=severity, details=details or {})
    if target is not None:
        alert.object_type, alert.object_id = target._meta.label_lower, str(target.pk)
        alert.object_repr = str(target)[:200]
    return alert


def alerts_raise_many(*, actor: Actor, alerts: list[Alert],
                      deliver: Callable[[list[Alert]], list[Alert]] | None = None) -> list[Alert]:
    """Raise many alerts (built with alert_build) as alert_raise raises each: one whose dedup key its workspace
    already holds (or an earlier one in the list) is counted as a repeat on it unless resolved (its deliveries
    past a quiet period are alert_raise's business, not a bulk pass's); each new one is audited and delivered to
    its routed channels (notify.on_raise_many), all of them or those `deliver` picks from the raised ones. A
    bounded number of queries per thousand alerts, whatever their number: one lookup, one update of repeats, one
    insert, one audit insert, the routing. Returns the alerts raised, saved."""
    raised: list[Alert] = []
    seen: set[tuple[int, str]] = set()
    for i in range(0, len(alerts), BATCH):
        chunk = alerts[i:i + BATCH]
        wanted = {(a.workspace_id, a.dedup_key) for a in chunk}
        # By workspace and dedup key, the unique index's columns: by dedup key alone the lookup reads the table.
        existing = {(ws, key): (pk, state) for pk, ws, key, state in
                    Alert.objects.filter(workspace_id__in={ws for ws, _ in wanted},
                                         dedup_key__in=[a.dedup_key for a in chunk])
                    .values_list("pk", "workspace_id", "dedup_key", "state") if (ws, key) in wanted}
        repeated = [pk for (ws, key), (pk, state) in existing.items()
                    if state != Alert.State.RESOLVED and (ws, key) not in seen]
        if repeated:
            Alert.objects.filter(pk__in=repeated).update(repeats=F("repeats") + 1, last_seen_at=timezone.now())
        seen.update(existing)
        fresh = []
        for alert in chunk:
            if (alert.workspace_id, alert.dedup_key) in seen:
                continue
            seen.add((alert.workspace_id, alert.dedup_key))
            _check_built(alert)
            fresh.append(alert)
        if not fresh:
            continue
        try:
            with transaction.atomic():  # each alert with its audit event, as alert_raise
                bulk_insert(Alert, fresh, batch_size=BATCH)
                _audit_raised(actor, fresh)
        except IntegrityError:  # another worker raised some of them meanwhile: one at a time, as alert_raise
            with transaction.atomic():
                fresh = [alert for alert in fresh if _saved_unless_raised(alert)]
                _audit_raised(actor, fresh)
        raised += fresh
    notify.on_raise_many(deliver(raised) if deliver else raised)
    return raised


_SEVERITIES = frozenset(Alert.Severity.values)
_LIMITS = {f: Alert._meta.get_field(f).max_length for f in ("kind", "title", "dedup_key", "object_type", "object_id",
                                                            "object_repr")}


def _check_built(alert: Alert) -> None:
    """What alert_raise's full_clean checks of an alert built by alert_build, without a model validation per row
    (a guardrail pass raises tens of thousands): the workspace is a saved row, the dedup key was looked up, the
    insert falls back to one at a time if another worker raced us, and the database refuses the rest."""
    errors = {}
    if alert.severity not in _SEVERITIES:
        errors["severity"] = f"Value {alert.severity!r} is not a valid choice."
    for name, limit in _LIMITS.items():
        value = getattr(alert, name)
        if len(value) > limit or (not value and name in ("kind", "title", "dedup_key")):
            errors[name] = f"Required, at most {limit} characters."
    if not isinstance(alert.details, dict):
        errors["details"] = "The figures are a mapping."
    if errors:
        raise ValidationError(errors)


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
    notify.on_transition(alert, Delivery.Event.ACKNOWLEDGE if state == Alert.State.ACKNOWLEDGED
                         else Delivery.Event.RESOLVE)
    return alert


@transaction.atomic
def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    """Mark an open alert as seen by `actor`. Audited."""
    return _transition(actor, alert, Alert.State.ACKNOWLEDGED)


@transaction.atomic
def alert_resolve(*, actor: Actor, alert: Alert) -> Alert:
    """Close an alert, recording who and when. Audited."""
    return _transition(actor, alert, Alert.State.RESOLVED)


@transaction.atomic
def alert_assign(*, actor: Actor, alert: Alert, assignee: Any) -> Alert:
    """Give the alert an owner (None: nobody), who must be able to work alerts in its workspace. The new owner gets
    it by email where they have an address; an owned alert is not delivered again on repeats. Audited."""
    access.require(actor, "incidents.manage", alert.workspace_id)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if assignee is not None and not access.has_perm(assignee, "incidents.manage", alert.workspace_id):
        raise ValidationError({"assignee": f"{assignee} cannot work alerts in this workspace (incidents.manage)."})
    if alert.state == Alert.State.RESOLVED:
        raise ValidationError({"assignee": "This alert is already resolved."})
    old = alert.assignee
    if (old.pk if old else None) == (assignee.pk if assignee else None):
        return alert
    alert.assignee = assignee
    alert.save(update_fields=["assignee", "updated_at"])
    record(actor=actor, action="alert.assign", target=alert, workspace_id=alert.workspace_id,
           changes={"assignee": [old.get_username() if old else None,
                                 assignee.get_username() if assignee else None]})
    if assignee is not None:
        notify.on_assign(alert, assignee)
    return alert


# --- notification channels and routing rules ------------------------------------------------------------------
CHANNEL_FIELDS = ("name", "kind", "addresses", "url", "routing_key", "quiet_minutes", "enabled")
CHANNEL_SECRETS = ("url", "routing_key", "signing_secret")


def _clean_channel(channel: NotificationChannel) -> None:
    kind = channel.kind
    if kind == NotificationChannel.Kind.EMAIL:
        addresses = channel.address_list()
        if not addresses:
            raise ValidationError({"addresses": "Give at least one email address."})
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"addresses": f"“{address}” is not an email address."}) from None
        channel.addresses = "\n".join(addresses)
        channel.url = channel.routing_key = channel.signing_secret = ""
    elif kind in (NotificationChannel.Kind.SLACK, NotificationChannel.Kind.WEBHOOK):
        if not channel.url:
            raise ValidationError({"url": "Give the webhook's URL."})
        validate_outbound_url(channel.url, field="url", what="The webhook URL")
        channel.addresses = channel.routing_key = ""
        if kind == NotificationChannel.Kind.SLACK:
            channel.signing_secret = ""
    elif kind == NotificationChannel.Kind.PAGERDUTY:
        key = channel.routing_key.strip()
        if not key or not key.isalnum() or len(key) > 64:
            raise ValidationError({"routing_key": "Give the integration's routing key (32 letters and digits, from "
                                                  "the PagerDuty service's Events API v2 integration)."})
        channel.routing_key = key
        channel.addresses = channel.url = channel.signing_secret = ""


def _channel_state(channel: NotificationChannel) -> dict[str, Any]:
    return {f: getattr(channel, f) for f in (*CHANNEL_FIELDS, "signing_secret")}


def _prepared(workspace: Model, channel: NotificationChannel | None, values: dict[str, Any]) -> NotificationChannel:
    """The channel with `values` applied and checked, not saved. Raises ValidationError keyed by field."""
    channel = NotificationChannel(workspace=workspace) if channel is None else channel
    for field, value in values.items():
        if field not in CHANNEL_FIELDS:
            raise TypeError(f"unknown channel field {field!r}")
        if field in CHANNEL_SECRETS and not value:
            continue  # write-only: blank keeps the current value
        setattr(channel, field, value)
    _clean_channel(channel)
    if NotificationChannel.objects.filter(workspace=workspace, name=channel.name).exclude(pk=channel.pk).exists():
        raise ValidationError({"name": "This workspace already has a channel of that name."})
    channel.full_clean(exclude=["workspace"])
    return channel


def notification_channel_check(*, workspace: Model, channel: NotificationChannel | None = None,
                               **values: Any) -> None:
    """Raise the ValidationError notification_channel_save would (for a form's clean), changing nothing."""
    copy = None
    if channel is not None and channel.pk:
        copy = NotificationChannel.objects.get(pk=channel.pk, workspace=workspace)
    _prepared(workspace, copy, values)


@transaction.atomic
def notification_channel_save(*, actor: Actor, workspace: Model, channel: NotificationChannel | None = None,
                              **values: Any) -> tuple[NotificationChannel, str]:
    """Create or change a workspace's channel. Secret parts left blank ("" or None) keep their current value; URLs
    follow the outbound rules (project.outbound). A new generic webhook gets a signing secret, returned once as the
    second item ("" otherwise). Audited without the secret parts' values."""
    access.require(actor, "incidents.manage", workspace.pk)
    before: dict[str, Any] = {}
    if channel is not None and channel.pk:
        channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk, workspace=workspace)
        before = _channel_state(channel)
    else:
        channel = None
    channel = _prepared(workspace, channel, values)
    new_secret = ""
    if channel.kind == NotificationChannel.Kind.WEBHOOK and not channel.signing_secret:
        new_secret = channel.signing_secret = webhooks.new_secret()
    channel.save()
    record(actor=actor, action="notification_channel.update" if before else "notification_channel.create",
           target=channel, workspace_id=workspace.pk,
           changes=diff(before, _channel_state(channel), secret_fields=CHANNEL_SECRETS))
    return channel, new_secret


@transaction.atomic
def notification_channel_rotate_secret(*, actor: Actor, channel: NotificationChannel) -> str:
    """A new signing secret for a generic webhook, returned once. Audited (that it changed)."""
    access.require(actor, "incidents.manage", channel.workspace_id)
    channel = NotificationChannel.objects.select_for_update().get(pk=channel.pk)
    if channel.kind != NotificationChannel.Kind.WEBHOOK:
        raise ValidationError("Only a generic webhook has a signing secret.")
    secret = channel.signing_secret = webhooks.new_secret()
    channel.save(update_fields=["signing_secret", "updated_at"])
    record(actor=actor, action="notification_channel.rotate_secret", target=channel,
           workspace_id=channel.workspace_id, changes={"signing_secret": "[changed]"})
    return secret


@transaction.atomic
def notification_channel_delete(*, actor: Actor, channel: NotificationChannel) -> None:
    """Delete a channel (its past deliveries keep its name). Audited."""
    access.require(actor, "incidents.manage", channel.workspace_id)
    record(actor=actor, action="notification_channel.delete", target=channel, workspace_id=channel.workspace_id)
    channel.delete()


@transaction.atomic
def notification_channel_test(*, actor: Actor, channel: NotificationChannel) -> Delivery:
    """Queue a test message to the channel (the worker sends it; its result shows on the channel's page). Audited."""
    access.require(actor, "incidents.manage", channel.workspace_id)
    delivery = notify.on_test(channel)
    record(actor=actor, action="notification_channel.test", target=channel, workspace_id=channel.workspace_id)
    return delivery


@transaction.atomic
def notification_rule_save(*, actor: Actor, workspace: Model, rule: NotificationRule | None = None, name: str,
                           severities: list[str], kinds: list[str], channels: list[NotificationChannel],
                           is_default: bool = False, enabled: bool = True) -> NotificationRule:
    """Create or change a routing rule. Its channels must be the workspace's own. Audited."""
    access.require(actor, "incidents.manage", workspace.pk)
    bad = [s for s in severities if s not in Alert.Severity.values]
    if bad:
        raise ValidationError({"severities": f"Unknown severity: {', '.join(bad)}."})
    if not channels:
        raise ValidationError({"channels": "Choose at least one channel."})
    if any(c.workspace_id != workspace.pk for c in channels):
        raise ValidationError({"channels": "Choose channels of this workspace."})
    if NotificationRule.objects.filter(workspace=workspace, name=name).exclude(
            pk=rule.pk if rule else None).exists():
        raise ValidationError({"name": "This workspace already has a rule of that name."})
    if rule is None:
        rule, before = NotificationRule(workspace=workspace), {}
    else:
        rule = NotificationRule.objects.select_for_update().get(pk=rule.pk, workspace=workspace)
        before = {"name": rule.name, "severities": rule.severities, "kinds": rule.kinds,
                  "is_default": rule.is_default, "enabled": rule.enabled,
                  "channels": sorted(rule.channels.values_list("pk", flat=True))}
    rule.name, rule.severities, rule.kinds = name, sorted(set(severities)), sorted(set(kinds))
    rule.is_default, rule.enabled = is_default, enabled
    rule.full_clean()
    rule.save()
    rule.channels.set(channels)
    after = {"name": name, "severities": rule.severities, "kinds": rule.kinds, "is_default": is_default,
             "enabled": enabled, "channels": sorted(c.pk for c in channels)}
    record(actor=actor, action="notification_rule.update" if before else "notification_rule.create", target=rule,
           workspace_id=workspace.pk, changes=diff(before, after))
    return rule


@transaction.atomic
def notification_rule_delete(*, actor: Actor, rule: NotificationRule) -> None:
    """Delete a routing rule. Audited."""
    access.require(actor, "incidents.manage", rule.workspace_id)
    record(actor=actor, action="notification_rule.delete", target=rule, workspace_id=rule.workspace_id)
    rule.delete()
