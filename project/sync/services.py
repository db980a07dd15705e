"""The outbox's verbs: enqueue in the caller's transaction, claim safely, run outside any transaction,
record the outcome. Retries are the job's own state machine (backoff with jitter, Retry-After on 429,
dead after the last attempt), so a lost broker message never loses work."""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from project.audit.services import record
from project.platform import errors
from project.sync import registry
from project.sync.models import SyncJob

logger = logging.getLogger(__name__)


def _kick() -> None:
    """Nudge a worker. Failure is harmless: the job row is committed and the periodic drain will run it."""
    from project.sync.tasks import drain_outbox

    try:
        drain_outbox.delay()
    except Exception as exc:  # any broker failure: kombu raises many unrelated types
        logger.warning("could not reach the broker to nudge the sync worker (%s); the periodic drain will "
                       "pick the change up", type(exc).__name__)


def job_enqueue(*, kind: str, object_id: Any, op: str = SyncJob.Op.UPSERT, workspace_id: int | None = None,
                object_repr: str = "", payload: dict[str, Any] | None = None) -> SyncJob:
    """Record that an object's state must reach the platform, in the caller's transaction.

    A pending job for the same object absorbs the change (coalescing): the handler always sends the
    object's current state, so the platform sees the latest state, not every step. After commit the
    drain task is nudged; if the broker is down the periodic drain picks the job up later.
    """
    object_id = str(object_id)
    with transaction.atomic():
        job = (SyncJob.objects.select_for_update()
               .filter(kind=kind, object_id=object_id, state=SyncJob.State.PENDING).first())
        if job is None:
            try:
                with transaction.atomic():
                    job = SyncJob.objects.create(kind=kind, object_id=object_id, op=op, workspace_id=workspace_id,
                                                 object_repr=object_repr[:200], payload=payload or {})
            except IntegrityError:
                # Another transaction inserted the pending job first: fold into it.
                job = SyncJob.objects.select_for_update().get(kind=kind, object_id=object_id,
                                                              state=SyncJob.State.PENDING)
                _coalesce(job, op, payload, object_repr)
        else:
            _coalesce(job, op, payload, object_repr)
    transaction.on_commit(_kick, robust=True)
    return job


def _coalesce(job: SyncJob, op: str, payload: dict[str, Any] | None, object_repr: str) -> None:
    job.op = op
    job.payload = {**job.payload, **(payload or {})}
    job.object_repr = object_repr[:200] or job.object_repr
    job.coalesced = F("coalesced") + 1
    job.next_attempt_at = min(job.next_attempt_at, timezone.now())
    job.save(update_fields=["op", "payload", "object_repr", "coalesced", "next_attempt_at", "updated_at"])
    job.refresh_from_db(fields=["coalesced"])


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _release_expired_leases(now: Any) -> None:
    """Jobs whose worker died mid-call go back to pending (or yield to a newer pending job)."""
    for job in SyncJob.objects.filter(state=SyncJob.State.RUNNING, lease_until__lt=now).only("id", "kind", "object_id"):
        newer = SyncJob.objects.filter(kind=job.kind, object_id=job.object_id, state=SyncJob.State.PENDING).exists()
        new_state = SyncJob.State.SUPERSEDED if newer else SyncJob.State.PENDING
        SyncJob.objects.filter(pk=job.pk, state=SyncJob.State.RUNNING, lease_until__lt=now).update(
            state=new_state, claimed_by="", lease_until=None, last_error="worker lost; requeued",
            updated_at=now)


def jobs_claim(*, worker: str, limit: int = 20) -> list[SyncJob]:
    """Claim up to `limit` due jobs for this worker.

    Each claim is a conditional UPDATE (state still pending, no job of the same object running), so two
    workers never take the same job and an object's changes are applied in commit order, on PostgreSQL
    and SQLite alike, without holding a lock across the HTTP call.
    """
    now = timezone.now()
    _release_expired_leases(now)
    running_same_object = SyncJob.objects.filter(
        kind=OuterRef("kind"), object_id=OuterRef("object_id"), state=SyncJob.State.RUNNING)
    candidates = list(
        SyncJob.objects.filter(state=SyncJob.State.PENDING, next_attempt_at__lte=now)
        .order_by("id").values_list("id", flat=True)[: limit * 3]
    )
    lease = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    claimed_ids = []
    for job_id in candidates:
        won = (SyncJob.objects.filter(pk=job_id, state=SyncJob.State.PENDING)
               .exclude(Exists(running_same_object))
               .update(state=SyncJob.State.RUNNING, claimed_by=worker, lease_until=lease,
                       attempts=F("attempts") + 1, updated_at=now))
        if won:
            claimed_ids.append(job_id)
            if len(claimed_ids) >= limit:
                break
    return list(SyncJob.objects.filter(pk__in=claimed_ids).order_by("id"))


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped (an hour by default)."""
    ceiling = min(settings.SYNC_BACKOFF_MAX_SECONDS, settings.SYNC_BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0)))
    return random.uniform(ceiling / 2, ceiling)


@dataclass
class Outcome:
    state: str
    error: str = ""
    status: int | None = None
    delay: float = 0.0
    remote_id: str = ""


def job_run(job: SyncJob, *, client: Any) -> Outcome:
    """Run one claimed job: the HTTP call happens here, outside any transaction."""
    try:
        handler = registry.handler_for(job.kind)
        remote_id = handler(job, client)
    except errors.RateLimited as exc:
        delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(job.attempts)
        return Outcome(SyncJob.State.PENDING, _reason(exc), exc.status, delay)
    except errors.TRANSIENT as exc:
        if job.attempts >= settings.SYNC_MAX_ATTEMPTS:
            return Outcome(SyncJob.State.DEAD, f"gave up after {job.attempts} attempts: {_reason(exc)}", exc.status)
        return Outcome(SyncJob.State.PENDING, _reason(exc), exc.status, backoff_seconds(job.attempts))
    except errors.PlatformError as exc:
        # The platform refused the state itself (validation, conflict, auth): retrying will not help.
        return Outcome(SyncJob.State.FAILED, _reason(exc), exc.status)
    except LookupError as exc:
        return Outcome(SyncJob.State.FAILED, str(exc))
    except Exception as exc:
        logger.exception("sync job %s (%s %s) crashed", job.pk, job.kind, job.object_id)
        return Outcome(SyncJob.State.FAILED, f"internal error: {type(exc).__name__}")
    return Outcome(SyncJob.State.DONE, remote_id=remote_id or "")


def _reason(exc: errors.PlatformError) -> str:
    return str(exc)[:2000]


def job_finish(job: SyncJob, outcome: Outcome, *, worker: str) -> None:
    """Record the outcome, only if this worker still holds the job (a stolen lease loses the write)."""
    now = timezone.now()
    fields: dict[str, Any] = {"claimed_by": "", "lease_until": None, "updated_at": now,
                              "last_error": outcome.error, "last_status": outcome.status}
    state = outcome.state
    if state == SyncJob.State.PENDING:
        if SyncJob.objects.filter(kind=job.kind, object_id=job.object_id, state=SyncJob.State.PENDING).exists():
            # A newer change is already waiting and will send the current state.
            state = SyncJob.State.SUPERSEDED
        fields["next_attempt_at"] = now + timedelta(seconds=outcome.delay)
        if outcome.status == 429:
            # Waiting out a rate limit is not a failed attempt.
            fields["attempts"] = F("attempts") - 1
    else:
        fields["finished_at"] = now
    if outcome.remote_id:
        fields["remote_id"] = outcome.remote_id
    fields["state"] = state
    SyncJob.objects.filter(pk=job.pk, state=SyncJob.State.RUNNING, claimed_by=worker).update(**fields)
    if state in (SyncJob.State.FAILED, SyncJob.State.DEAD):
        logger.warning("sync job %s %s %s is %s: %s", job.pk, job.kind, job.object_id, state, outcome.error)


def outbox_drain(*, client: Any | None = None, max_jobs: int = 1000, batch: int = 20,
                 worker: str | None = None) -> int:
    """Claim and run due jobs until none is left or max_jobs ran. Returns the number of jobs run."""
    from project.platform.client import get_client

    client = client or get_client()
    worker = worker or worker_name()
    done = 0
    while done < max_jobs:
        jobs = jobs_claim(worker=worker, limit=min(batch, max_jobs - done))
        if not jobs:
            break
        for job in jobs:
            job_finish(job, job_run(job, client=client), worker=worker)
            done += 1
    return done


@transaction.atomic
def job_retry(*, actor: Any, job: SyncJob) -> SyncJob:
    """Put a failed or dead job back in the queue (audited). A newer pending job makes it moot."""
    job = SyncJob.objects.select_for_update().get(pk=job.pk)
    if job.state not in (SyncJob.State.FAILED, SyncJob.State.DEAD):
        raise ValueError(f"only failed or dead jobs can be retried (this one is {job.get_state_display()})")
    if SyncJob.objects.filter(kind=job.kind, object_id=job.object_id, state=SyncJob.State.PENDING).exists():
        job.state = SyncJob.State.SUPERSEDED
    else:
        job.state = SyncJob.State.PENDING
        job.attempts = 0
        job.next_attempt_at = timezone.now()
        job.finished_at = None
    job.save()
    record(actor=actor, action="sync.retry", target=job, workspace_id=job.workspace_id,
           changes={"state": ["failed/dead", job.state]})
    transaction.on_commit(_kick, robust=True)
    return job


@transaction.atomic
def job_discard(*, actor: Any, job: SyncJob) -> SyncJob:
    """Give up on a failed, dead or pending job (audited); the local object keeps its state."""
    job = SyncJob.objects.select_for_update().get(pk=job.pk)
    if job.state in (SyncJob.State.RUNNING, SyncJob.State.DONE):
        raise ValueError(f"a {job.get_state_display().lower()} job cannot be discarded")
    old = job.state
    job.state = SyncJob.State.DISCARDED
    job.finished_at = timezone.now()
    job.save()
    record(actor=actor, action="sync.discard", target=job, workspace_id=job.workspace_id,
           changes={"state": [old, job.state]})
    return job
