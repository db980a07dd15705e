"""The audit trail: one append-only row per change, never a secret value."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from project.querysets import RestrictedQuerySet


class AuditEventQuerySet(RestrictedQuerySet):
    def update(self, **kwargs: object) -> int:
        raise PermissionError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """Something a user, a service account or the system did, to which object, when and from where.

    Rows are append-only: the queryset refuses updates and deletes, and database triggers (see the
    migration) refuse them for everyone, superusers and raw SQL included.
    """

    class ActorType(models.TextChoices):
        USER = "user", "User"
        SERVICE_ACCOUNT = "service_account", "Service account"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(auto_now_add=True)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    # No foreign key: the audit app imports no other app, and an event outlives its workspace.
    workspace_id = models.BigIntegerField(null=True, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The per-object history link: events for one object, newest first.
            models.Index(fields=["object_type", "object_id", "-created_at"], name="audit_object_idx"),
            # The workspace-scoped changelist, newest first.
            models.Index(fields=["workspace_id", "-created_at"], name="audit_workspace_idx"),
            # The changelist's default ordering for superusers (no workspace filter).
            models.Index(fields=["-created_at", "-id"], name="audit_created_idx"),
            # From a request id (a log line, a sync job) to what that request changed: the admin's search.
            models.Index(fields=["request_id"], condition=~models.Q(request_id=""), name="audit_request_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type} {self.object_repr}".strip()


class AuditStreamEntry(models.Model):
    """An audit event not yet delivered to the audit stream (AUDIT_STREAM_URL): written in the same transaction as
    the event, deleted once the sink took it. The backlog is these rows; the stream sends them in id order."""

    event = models.OneToOneField(AuditEvent, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    workspace_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"audit event {self.event_id} waiting for the stream"
