"""Alerts: what a security admin should look at. Every app raises them (project.alerts.services), so they live
on the ground floor; detection/ holds the rules that raise most of them, and the pages that work them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from project.fields import EncryptedCharField, EncryptedTextField
from project.models import TimeStampedModel
from project.querysets import RestrictedManager


class Alert(TimeStampedModel):
    """Something a security admin should look at, with the figures that triggered it.

    An open alert is unique per `dedup_key`: a check that fires again for the same window updates nothing
    and raises nothing new.
    """

    audit_former_labels = ("detection.alert",)  # the audit trail's label for it before it moved here

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        CRITICAL = "critical", "Critical"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=60, help_text="The rule that fired, e.g. credential_refresh_failed")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    state = models.CharField(max_length=15, choices=State.choices, default=State.OPEN)
    title = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True, help_text="The figures that triggered the alert")
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    dedup_key = models.CharField(max_length=200)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", help_text="The person who owns it")
    # Raised again while open (same dedup key): counted here, not delivered again (see project.alerts.notify).
    repeats = models.PositiveIntegerField(default=0)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedManager()

    class Meta:
        db_table = "detection_alert"  # created by the detection app; moved here with its rows
        ordering = ["-created_at", "-id"]
        constraints = [
            # A rule firing again for the same window must not raise a second alert.
            models.UniqueConstraint(fields=["workspace", "dedup_key"], name="alert_unique_dedup_key"),
        ]
        indexes = [
            # The alert list and dashboard: open alerts of a workspace, newest first.
            models.Index(fields=["workspace", "state", "-created_at"], name="alert_workspace_state_idx"),
            # The unfiltered alert list of a superuser (every workspace), newest first: its first page reads
            # this index from the top instead of sorting the whole table.
            models.Index(fields=["-created_at", "-id"], name="alert_created_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class NotificationChannel(TimeStampedModel):
    """Where a workspace's alerts are delivered: email addresses, a Slack-compatible incoming webhook, a PagerDuty
    Events API v2 routing key, or a generic webhook signed per the Standard Webhooks specification.

    The webhook URL, the routing key and the signing secret are encrypted and never shown after save (the signing
    secret once, when it is made). ``quiet_minutes``: an alert raised again while open is not delivered to this
    channel again sooner than that after its last delivery here.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack-compatible incoming webhook"
        PAGERDUTY = "pagerduty", "PagerDuty (Events API v2)"
        WEBHOOK = "webhook", "Generic webhook (Standard Webhooks signature)"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    addresses = models.TextField(blank=True, help_text="Email: one address per line (or comma-separated)")
    url = EncryptedTextField(blank=True, default="")
    routing_key = EncryptedCharField(max_length=200, blank=True, default="")
    signing_secret = EncryptedCharField(max_length=200, blank=True, default="")
    quiet_minutes = models.PositiveIntegerField(default=60, help_text="Repeats of an open alert are not sent to "
                                                "this channel again within this many minutes")
    enabled = models.BooleanField(default=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="notification_channel_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def address_list(self) -> list[str]:
        return [a.strip() for a in self.addresses.replace(",", "\n").splitlines() if a.strip()]


class NotificationRule(TimeStampedModel):
    """Which channels get a workspace's alerts: every rule whose severities and kinds match an alert (an empty list
    matches all) adds its channels; when no rule matches, the workspace's default rules do."""

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    severities = models.JSONField(default=list, blank=True, help_text="Empty: any severity")
    kinds = models.JSONField(default=list, blank=True, help_text="Empty: any kind of alert")
    channels = models.ManyToManyField(NotificationChannel, related_name="rules")
    is_default = models.BooleanField(default=False, help_text="Used only for alerts no other rule matches")
    enabled = models.BooleanField(default=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace_id", "is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="notification_rule_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, alert: Alert) -> bool:
        return ((not self.severities or alert.severity in self.severities)
                and (not self.kinds or alert.kind in self.kinds))


class Delivery(models.Model):
    """One message to one channel (or to an alert's assignee by email) about one state change of an alert, or a
    channel's test. Sent by the outbox (sync kind ``notification``, object = this row): attempts, backoff, the
    last error and dead letters live on its sync job."""

    workspace_path = "workspace_id"

    class Event(models.TextChoices):
        RAISE = "raise", "Raised"
        REPEAT = "repeat", "Raised again (still open)"
        ACKNOWLEDGE = "acknowledge", "Acknowledged"
        RESOLVE = "resolve", "Resolved"
        ASSIGN = "assign", "Assigned"
        TEST = "test", "Test"

    created_at = models.DateTimeField(auto_now_add=True)
    workspace_id = models.BigIntegerField()
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="deliveries")
    channel_label = models.CharField(max_length=200, help_text="The channel (or person) as it was named")
    recipient = models.CharField(max_length=254, blank=True, help_text="An assignee's address (no channel)")
    event = models.CharField(max_length=12, choices=Event.choices)
    sent_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The alert page's delivery log, and the quiet period: an alert's deliveries per channel, newest first.
            models.Index(fields=["alert", "channel", "-created_at"], name="delivery_alert_channel_idx"),
            # The channel page's recent deliveries (its tests among them).
            models.Index(fields=["channel", "-id"], name="delivery_channel_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} → {self.channel_label}"
