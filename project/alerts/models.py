"""Alerts: what a security admin should look at. Every app raises them (project.alerts.services), so they live
on the ground floor; detection/ holds the rules that raise most of them, and the pages that work them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

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
