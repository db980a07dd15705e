"""The transactional outbox: one row per object whose current state must reach the platform."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from project.models import TimeStampedModel
from project.querysets import RestrictedManager


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
    # The request (or task) that asked for this change, as in the audit trail and the request logs; after
    # coalescing, the latest one. The worker runs the job under it, so its log lines carry it too.
    request_id = models.CharField(max_length=64, blank=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Coalescing: an object has at most one pending job; later changes update it.
            models.UniqueConstraint(fields=["kind", "object_id"], condition=Q(state="pending"),
                                    name="sync_one_pending_job_per_object"),
        ]
        indexes = [
            # Lease expiry (running jobs past lease_until) and the per-state counts of the sync page.
            models.Index(fields=["state", "next_attempt_at", "id"], name="sync_due_idx"),
            # The drain's claim query walks pending jobs in commit (id) order and stops after a batch; a partial
            # index keeps that walk short however many finished jobs the table holds.
            models.Index(fields=["id"], condition=Q(state="pending"), name="sync_pending_idx"),
            # Sync state of an object: its newest job (admin annotations, "running" exclusion).
            models.Index(fields=["kind", "object_id", "-id"], name="sync_object_idx"),
            # The sync page filtered per workspace and state.
            models.Index(fields=["workspace_id", "state"], name="sync_workspace_idx"),
            # From a request id (a log line, an audit event) to the sync jobs it caused: the admin's search.
            models.Index(fields=["request_id"], condition=~Q(request_id=""), name="sync_request_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.op} {self.kind} {self.object_repr or self.object_id} ({self.state})"


class DrainWakeup(models.Model):
    """A drain wake-up is queued on the broker for ``queue`` and no drain task has taken it yet.

    A burst of commits then publishes one wake-up, not one per commit: a commit that finds the row leaves it to
    the queued drain (which deletes the row before it claims, so it sees that commit's job). A row older than a
    few periodic drains is stale (its message was lost) and is replaced by a new wake-up; the periodic drain
    deletes it too, so a lost message never stops the outbox.
    """

    queue = models.CharField(max_length=200, primary_key=True)
    queued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"drain wake-up queued on {self.queue} at {self.queued_at:%H:%M:%S}"


class ReconcileRun(TimeStampedModel):
    """One long operation over every object of some kinds, with its progress.

    ``reconcile`` compares local objects with the platform's copies and replaces the drift report of each kind
    it finishes; ``resync`` enqueues an upsert for every object of one kind (within ``workspace_ids``, the
    workspaces where the requester may manage sync; ``None`` means all). ``updated_at`` doubles as a heartbeat.
    """

    class Operation(models.TextChoices):
        RECONCILE = "reconcile", "Reconcile"
        RESYNC = "resync", "Bulk re-sync"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    operation = models.CharField(max_length=10, choices=Operation.choices, default=Operation.RECONCILE)
    kinds = models.JSONField(default=list, blank=True)
    workspace_ids = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    requested_by = models.CharField(max_length=200, default="system")
    current_kind = models.CharField(max_length=40, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    drift_found = models.PositiveIntegerField(default=0)
    jobs_enqueued = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # "Is a run of this operation already going?" before the periodic reconcile starts another.
            models.Index(fields=["operation", "state"], name="sync_run_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} #{self.pk} ({self.state})"

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.state == self.State.DONE else None
        return min(100, round(100 * self.done / self.total))


class Drift(TimeStampedModel):
    """One difference between Keyward and the platform, from the latest reconcile of its kind.

    Rows of a kind are replaced whenever a reconcile of that kind completes. ``fields`` maps a field to
    ``[local, remote]`` and never holds a secret value.
    """

    class Problem(models.TextChoices):
        MISSING_REMOTELY = "missing_remotely", "Missing on the platform"
        UNKNOWN_LOCALLY = "unknown_locally", "Unknown to Keyward"
        DIFFERS = "differs", "Fields differ"

    run = models.ForeignKey(ReconcileRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="drift")
    kind = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64, null=True, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    remote_id = models.CharField(max_length=128, blank=True)
    workspace_id = models.BigIntegerField(null=True, blank=True)
    # The platform account the difference was found on (workspaces.PlatformAccount; an id, the ground floor
    # imports no app). For an object unknown to Keyward it says which account holds it.
    account_id = models.BigIntegerField(null=True, blank=True)
    problem = models.CharField(max_length=20, choices=Problem.choices)
    fields = models.JSONField(default=dict, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_job_id = models.BigIntegerField(null=True, blank=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["kind", "problem", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(problem__in=["missing_remotely", "unknown_locally", "differs"]),
                                   name="sync_drift_problem_valid"),
            models.CheckConstraint(condition=Q(problem="unknown_locally") | Q(object_id__isnull=False),
                                   name="sync_drift_local_needs_object"),
        ]
        indexes = [
            # The drift page filtered per workspace, kind and problem.
            models.Index(fields=["workspace_id", "kind", "problem"], name="sync_drift_filter_idx"),
            # Replacing a kind's report when its reconcile completes.
            models.Index(fields=["kind", "problem"], name="sync_drift_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_repr or self.object_id or self.remote_id}: {self.get_problem_display()}"


class DiscoveryRun(TimeStampedModel):
    """One read of everything a platform account holds (a Discover, or the guardrails' periodic refresh).

    Each remote object read is an Observation; an object observed before and not read again is gone (deleted on
    the platform since), counted here with a sample of its labels. While a run of an account is running, nothing
    is adopted from that account.
    """

    class Purpose(models.TextChoices):
        DISCOVER = "discover", "Discover"
        REFRESH = "refresh", "Guardrail refresh"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    OPEN_STATES = (State.QUEUED, State.RUNNING)

    account_id = models.BigIntegerField(help_text="workspaces.PlatformAccount")
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.DISCOVER)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    requested_by = models.CharField(max_length=200, default="system")
    counts = models.JSONField(default=dict, blank=True, help_text="objects read per kind")
    unmanaged = models.JSONField(default=dict, blank=True, help_text="objects Keyward does not manage, per kind")
    gone = models.JSONField(default=list, blank=True, help_text="objects observed before and gone since (sample)")
    gone_count = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="platform calls made")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # "Is a run of this account in progress?" (adoption refuses meanwhile) and the account's newest run.
            models.Index(fields=["account_id", "state"], name="discovery_account_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} of account {self.account_id} ({self.state})"


class Observation(TimeStampedModel):
    """A remote object of a platform account as it was last read: its security-relevant facts (never a secret
    value), and the local object that governs it, if any. What guardrails judge and what Discover lists."""

    workspace_path = "workspace_id"

    account_id = models.BigIntegerField(help_text="workspaces.PlatformAccount")
    kind = models.CharField(max_length=40)
    remote_id = models.CharField(max_length=128)
    label = models.CharField(max_length=200, blank=True)
    facts = models.JSONField(default=dict, blank=True)
    # The local object adopted from (or made for) it; empty for an object Keyward does not manage.
    object_id = models.CharField(max_length=64, blank=True)
    # The workspace of that local object; for an unmanaged object, the workspace it would be adopted into when
    # that is clear (the account's only workspace, or the one whose name prefix it carries), else empty.
    workspace_id = models.BigIntegerField(null=True, blank=True)
    # The guardrail rules the live object breaks (rule codes), written by the guardrail pass.
    findings = models.JSONField(default=list, blank=True)
    # Why the last adoption of this object was refused (cleared when adopted).
    note = models.CharField(max_length=300, blank=True)
    run = models.ForeignKey(DiscoveryRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    observed_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedManager()

    class Meta:
        ordering = ["kind", "label", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account_id", "kind", "remote_id"], name="observation_unique_remote"),
        ]
        indexes = [
            # Discover's list: an account's objects Keyward does not manage, by kind.
            models.Index(fields=["account_id", "kind", "object_id"], name="observation_account_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.label or self.remote_id}"

    @property
    def managed(self) -> bool:
        return bool(self.object_id)
