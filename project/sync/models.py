"""The transactional outbox: one row per object whose current state must reach the platform."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from project.models import TimeStampedModel


class SyncJob(TimeStampedModel):
    """Work to carry one object's current state (or its deletion) to the platform.

    Written in the same transaction as the change; coalesced so that an object has at most one pending
    job. The row, not the broker message, is the record of work to do.
    """

    class Op(models.TextChoices):
        UPSERT = "upsert", "Create or update"
        DELETE = "delete", "Delete"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Dead"
        SUPERSEDED = "superseded", "Superseded"
        DISCARDED = "discarded", "Discarded"

    OPEN_STATES = (State.PENDING, State.RUNNING)

    kind = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200, blank=True)
    workspace_id = models.BigIntegerField(null=True, blank=True)
    op = models.CharField(max_length=10, choices=Op.choices, default=Op.UPSERT)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    # Non-secret data a handler needs once the row is gone (the remote id for a delete).
    payload = models.JSONField(default=dict, blank=True)
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    coalesced = models.PositiveIntegerField(default=0, help_text="Later changes folded into this job")
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    remote_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Coalescing: an object has at most one pending job; later changes update it.
            models.UniqueConstraint(fields=["kind", "object_id"], condition=Q(state="pending"),
                                    name="sync_one_pending_job_per_object"),
        ]
        indexes = [
            # The drain's claim query: due pending jobs in commit (id) order.
            models.Index(fields=["state", "next_attempt_at", "id"], name="sync_due_idx"),
            # Sync state of an object: its newest job (admin annotations, "running" exclusion).
            models.Index(fields=["kind", "object_id", "-id"], name="sync_object_idx"),
            # The sync page filtered per workspace and state.
            models.Index(fields=["workspace_id", "state"], name="sync_workspace_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.op} {self.kind} {self.object_repr or self.object_id} ({self.state})"
