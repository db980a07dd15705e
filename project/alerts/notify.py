"""Fan-out: which channels an alert's state change goes to, and the delivery rows (with their outbox jobs) that
carry it there, written in the caller's transaction. Nothing is sent here: the outbox's worker sends each delivery
(project.alerts.senders), so a request or a detection pass never waits on a receiver and nothing is lost when the
broker is down.

No storms: a state change is delivered once per channel; an alert raised again while open (same dedup key) is
counted on the alert and delivered again to a channel only after that channel's quiet period, and never once it is
acknowledged or has an owner.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Max
from django.utils import timezone

from project.alerts.models import Alert, Delivery, NotificationChannel, NotificationRule
from project.sync.kinds import SyncKind


def routed_channels(alert: Alert) -> list[NotificationChannel]:
    """The enabled channels the workspace's rules send this alert to (the default rules' when no other matches)."""
    return _route(_rules([alert.workspace_id]).get(alert.workspace_id, []), alert)


def _rules(workspace_ids: list[int]) -> dict[int, list[NotificationRule]]:
    """The enabled rules of these workspaces, with their channels (two queries, whatever the number)."""
    rules: dict[int, list[NotificationRule]] = {}
    for rule in (NotificationRule.objects.filter(workspace_id__in=set(workspace_ids), enabled=True)
                 .prefetch_related("channels")):
        rules.setdefault(rule.workspace_id, []).append(rule)
    return rules


def _route(rules: list[NotificationRule], alert: Alert) -> list[NotificationChannel]:
    if not rules:
        return []
    matched = [r for r in rules if not r.is_default and r.matches(alert)]
    if not matched:
        matched = [r for r in rules if r.is_default and r.matches(alert)]
    channels: dict[int, NotificationChannel] = {}
    for rule in matched:
        for channel in rule.channels.all():
            if channel.enabled:
                channels.setdefault(channel.pk, channel)
    return sorted(channels.values(), key=lambda c: c.pk)


def _enqueue(deliveries: list[Delivery]) -> list[Delivery]:
    from project.sync.services import jobs_enqueue_new

    if not deliveries:
        return []
    Delivery.objects.bulk_create(deliveries)
    jobs_enqueue_new(kind=SyncKind.NOTIFICATION,
                     objects=[(d.pk, d.workspace_id, str(d)) for d in deliveries])
    return deliveries


def _to_channel(alert: Alert | None, channel: NotificationChannel, event: str) -> Delivery:
    return Delivery(workspace_id=channel.workspace_id, alert=alert, channel=channel, channel_label=str(channel)[:200],
                    event=event)


def on_raise(alert: Alert) -> list[Delivery]:
    """A new alert: one delivery per routed channel."""
    return _enqueue([_to_channel(alert, c, Delivery.Event.RAISE) for c in routed_channels(alert)])


def on_raise_many(alerts: list[Alert]) -> list[Delivery]:
    """New alerts raised together (alerts_raise_many): routed as on_raise routes each, in a bounded number of
    queries (the rules of their workspaces once, one insert of deliveries and one of outbox jobs)."""
    rules = _rules([a.workspace_id for a in alerts])
    return _enqueue([_to_channel(alert, c, Delivery.Event.RAISE)
                     for alert in alerts for c in _route(rules.get(alert.workspace_id, []), alert)])


def on_repeat(alert: Alert) -> list[Delivery]:
    """The alert was raised again while open: delivered again only to channels whose quiet period has passed since
    their last delivery of it, and not at all once someone acknowledged or owns it."""
    if alert.state != Alert.State.OPEN or alert.assignee_id is not None:
        return []
    channels = routed_channels(alert)
    if not channels:
        return []
    now = timezone.now()
    last = dict(Delivery.objects.filter(alert=alert, channel__in=channels).order_by()
                .values("channel_id").annotate(at=Max("created_at")).values_list("channel_id", "at"))
    due = [c for c in channels if last.get(c.pk) is None or last[c.pk] <= now - timedelta(minutes=c.quiet_minutes)]
    return _enqueue([_to_channel(alert, c, Delivery.Event.REPEAT) for c in due])


def on_transition(alert: Alert, event: str) -> list[Delivery]:
    """Acknowledged or resolved: told to the channels that were told of the alert (PagerDuty resolves the incident
    it opened), once."""
    told = (NotificationChannel.objects.filter(deliveries__alert=alert, enabled=True).distinct().order_by("pk"))
    return _enqueue([_to_channel(alert, c, event) for c in told])


def on_assign(alert: Alert, assignee: object) -> list[Delivery]:
    """The new owner gets the alert by email, when they have an address."""
    address = (getattr(assignee, "email", "") or "").strip()
    if not address:
        return []
    label = f"{assignee.get_username()} <{address}>"  # type: ignore[attr-defined]
    return _enqueue([Delivery(workspace_id=alert.workspace_id, alert=alert, channel=None, recipient=address,
                              channel_label=label[:200], event=Delivery.Event.ASSIGN)])


def on_test(channel: NotificationChannel) -> Delivery:
    """A test message to one channel (sent by the worker like any delivery)."""
    return _enqueue([_to_channel(None, channel, Delivery.Event.TEST)])[0]
