"""The outbox's handler for alert deliveries (sync kind ``notification``): one message to one channel, built from
the alert as it is now and the state change the delivery is about. Runs in the worker, outside any transaction.

What a message carries: the alert's title, severity, state change, workspace, object, figures and a link to its
page (``PUBLIC_URL``). Never a secret value: alert details hold figures only, and the channel's own secret parts
(the webhook URL, the routing key, the signing secret) are used to send, never put in a message, an error or a log.
"""

from __future__ import annotations

import json
import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from project import webhooks
from project.alerts.models import Delivery, NotificationChannel
from project.platform import errors
from project.sync.kinds import SyncKind
from project.sync.registry import register

#: PagerDuty's severities for ours.
PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info", "info": "info"}
PD_ACTION = {Delivery.Event.RAISE: "trigger", Delivery.Event.REPEAT: "trigger", Delivery.Event.TEST: "trigger",
             Delivery.Event.ASSIGN: "trigger", Delivery.Event.ACKNOWLEDGE: "acknowledge",
             Delivery.Event.RESOLVE: "resolve"}
WEBHOOK_TYPE = {Delivery.Event.RAISE: "alert.raised", Delivery.Event.REPEAT: "alert.repeated",
                Delivery.Event.ACKNOWLEDGE: "alert.acknowledged", Delivery.Event.RESOLVE: "alert.resolved",
                Delivery.Event.ASSIGN: "alert.assigned", Delivery.Event.TEST: "test"}


def alert_url(alert_id: int) -> str:
    return settings.PUBLIC_URL + reverse("admin:alerts_alert_change", args=[alert_id])


def message(delivery: Delivery) -> dict[str, Any]:
    """What every channel says about a delivery, as plain data (the webhook sends it as is)."""
    alert = delivery.alert
    if alert is None:
        return {"event": "test", "title": "Test message from Keyward", "severity": "info",
                "text": f"Test message from Keyward to “{delivery.channel_label}”.", "workspace": "",
                "url": settings.PUBLIC_URL + reverse("admin:index")}
    event = delivery.event
    who = ""
    if event == Delivery.Event.ACKNOWLEDGE and alert.acknowledged_by is not None:
        who = f" by {alert.acknowledged_by.get_username()}"
    elif event == Delivery.Event.RESOLVE and alert.resolved_by is not None:
        who = f" by {alert.resolved_by.get_username()}"
    change = {Delivery.Event.RAISE: "raised", Delivery.Event.REPEAT: f"still open (seen {alert.repeats + 1} times)",
              Delivery.Event.ACKNOWLEDGE: f"acknowledged{who}", Delivery.Event.RESOLVE: f"resolved{who}",
              Delivery.Event.ASSIGN: "assigned to you"}.get(event, event)
    return {
        "event": event, "alert_id": alert.pk, "title": alert.title, "severity": alert.severity, "kind": alert.kind,
        "state": alert.state, "change": change, "workspace": alert.workspace.name,
        "object": {"type": alert.object_type, "id": alert.object_id, "name": alert.object_repr},
        "figures": alert.details or {}, "repeats": alert.repeats, "dedup_key": alert.dedup_key,
        "raised_at": alert.created_at.isoformat(), "url": alert_url(alert.pk),
        "text": f"[{alert.severity.upper()}] {alert.title} — {change}",
    }


def _lines(msg: dict[str, Any]) -> list[str]:
    lines = [msg["text"]]
    if msg.get("workspace"):
        lines.append(f"Workspace: {msg['workspace']}")
    obj = msg.get("object") or {}
    if obj.get("name") or obj.get("id"):
        lines.append(f"About: {obj.get('name') or obj.get('id')} ({obj.get('type')})")
    for key, value in sorted((msg.get("figures") or {}).items()):
        lines.append(f"{key.replace('_', ' ')}: {value}")
    lines.append(msg["url"])
    return lines


def _email(recipients: list[str], msg: dict[str, Any]) -> int:
    try:
        send_mail(f"[Keyward] {msg['text']}"[:200], "\n".join(_lines(msg)), None, recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise errors.Unavailable(f"the mail server did not take the message ({type(exc).__name__})",
                                 code="mail_unavailable") from None
    return 250


def _slack(channel: NotificationChannel, msg: dict[str, Any]) -> int:
    lines = _lines(msg)
    text = f"*{lines[0]}*\n" + "\n".join(lines[1:-1]) + f"\n<{msg['url']}|Open in Keyward>"
    return webhooks.post(channel.url, json.dumps({"text": text}).encode(), what="the Slack webhook")


def _pagerduty(channel: NotificationChannel, delivery: Delivery, msg: dict[str, Any]) -> int:
    alert = delivery.alert
    dedup = f"keyward:{alert.workspace_id}:{alert.dedup_key}"[:255] if alert else f"keyward:test:{delivery.pk}"
    action = PD_ACTION.get(delivery.event, "trigger")
    body: dict[str, Any] = {"routing_key": channel.routing_key, "event_action": action, "dedup_key": dedup}
    if action == "trigger":
        obj = msg.get("object") or {}
        body["payload"] = {"summary": msg["text"][:1024], "source": "keyward", "severity": PD_SEVERITY.get(
            msg["severity"], "warning"), "group": msg.get("workspace") or "", "class": msg.get("kind", "test"),
            "component": obj.get("name") or "", "custom_details": msg.get("figures") or {}}
        body["links"] = [{"href": msg["url"], "text": "Open in Keyward"}]
    return webhooks.post(settings.PAGERDUTY_EVENTS_URL, json.dumps(body).encode(), what="PagerDuty")


def _webhook(channel: NotificationChannel, delivery: Delivery, msg: dict[str, Any]) -> int:
    body = json.dumps({"type": WEBHOOK_TYPE.get(delivery.event, delivery.event),
                       "timestamp": timezone.now().isoformat(), "data": msg}).encode()
    headers = webhooks.signed_headers(channel.signing_secret, f"msg_keyward_delivery_{delivery.pk}", body)
    return webhooks.post(channel.url, body, headers, what="the webhook")


def send(delivery: Delivery) -> int:
    """Send one delivery; the receiver's status. Raises project.platform.errors exceptions (see project.webhooks)."""
    msg = message(delivery)
    if delivery.channel_id is None:
        return _email([delivery.recipient], msg)
    channel = delivery.channel
    if channel.kind == NotificationChannel.Kind.EMAIL:
        return _email(channel.address_list(), msg)
    if channel.kind == NotificationChannel.Kind.SLACK:
        return _slack(channel, msg)
    if channel.kind == NotificationChannel.Kind.PAGERDUTY:
        return _pagerduty(channel, delivery, msg)
    return _webhook(channel, delivery, msg)


@register(SyncKind.NOTIFICATION, platform=False)
def push_delivery(job: Any, client: Any) -> str | None:
    delivery = (Delivery.objects.select_related("alert__workspace", "alert__acknowledged_by", "alert__resolved_by",
                                                "channel").filter(pk=job.object_id).first())
    if delivery is None:
        return None  # its alert was deleted with its workspace: nothing to tell anyone
    if delivery.channel_id is None and not delivery.recipient:
        return None  # its channel was deleted since
    status = send(delivery)
    Delivery.objects.filter(pk=delivery.pk).update(sent_at=timezone.now(), response_status=status)
    return None
