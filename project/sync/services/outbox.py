"""The outbox's verbs: enqueue in the caller's transaction, claim safely, run outside any transaction, record
the outcome. Retries are the job's own state machine (backoff with jitter, Retry-After on 429, dead after the
last attempt), so a lost broker message never loses work. The drain loop that strings them together lives in
drain.py."""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from project import context
from project.actors import Actor
from project.audit.services import record
from project.fields import DecryptionError
from project.logging import redact
from project.platform import errors
from project.platform.client import client_for_workspace
from project.sync import kinds, registry
from project.sync.models import DrainWakeup, SyncJob

logger = logging.getLogger("project.sync")

# job_enqueue's lookup/insert rounds: each lost round means a worker claimed the job it collided with, which
# takes far longer than a round, so a handful is plenty.
ENQUEUE_ROUNDS = 20



# --- enqueue -----------------------------------------------------------------------------------------------
def _wakeup_queue() -> str:
    return settings.CELERY_TASK_DEFAULT_QUEUE


def wakeup_stale_seconds() -> float:
    """How long a queued wake-up may go untaken before a commit publishes another (its message was lost, or the
    workers are busy for that long): a few periodic drains."""
    return max(30.0, 3 * settings.SYNC_DRAIN_INTERVAL_SECONDS)


def wakeup_reserve(*, queue: str | None = None) -> bool:
    """True when the caller must publish a drain wake-up: none is queued for the queue, or the queued one is
    stale. Marks one as queued (one statement). At most one wake-up waits per queue: a burst of commits no longer
    leaves a worker thousands of drains that find nothing."""
    connection = transaction.get_connection()
    now = timezone.now()
    table = connection.ops.quote_name(DrainWakeup._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (queue, queued_at) VALUES (%s, %s) ON CONFLICT (queue) DO UPDATE "  # noqa: S608
            f"SET queued_at = excluded.queued_at WHERE {table}.queued_at < %s RETURNING queue",
            [queue or _wakeup_queue(), adapt(now), adapt(now - timedelta(seconds=wakeup_stale_seconds()))])
        return cursor.fetchone() is not None


def wakeup_release(*, queue: str | None = None) -> None:
    """Forget the queued wake-up: a drain took it (before claiming, so a commit from now on publishes a new one
    and nothing committed before is missed), or publishing it failed."""
    DrainWakeup.objects.filter(queue=queue or _wakeup_queue()).delete()


def _kick() -> None:
    """Nudge a worker, unless a wake-up already waits on the broker (it will see this commit's job). Failure is
    harmless: the job row is committed and the periodic drain will run it."""
    from project.sync.tasks import drain_outbox

    try:
        if not wakeup_reserve():
            return
    except Exception as exc:  # the database is unreachable after commit: publish as before
        logger.warning("could not mark the sync wake-up as queued (%s); publishing it anyway", type(exc).__name__)
    try:
        # retry=False: with the broker down, publishing must fail at once, not hold the admin's request.
        drain_outbox.apply_async(retry=False)
    except Exception as exc:  # any broker failure: kombu raises many unrelated types
        logger.warning("could not reach the broker to nudge the sync worker (%s); the periodic drain will "
                       "pick the change up", type(exc).__name__)
        try:
            wakeup_release()  # nothing was queued: the next commit tries the broker again
        except Exception:  # noqa: BLE001, S110 (the row goes stale and is replaced)
            pass


def _nudge() -> None:
    # Looked up on the package at call time, so replacing project.sync.services._kick (tests) takes effect.
    from project.sync import services

    services._kick()


def _nudge_after_commit() -> None:
    transaction.on_commit(_nudge, robust=True)


def job_enqueue(*, kind: str, object_id: Any, op: str = SyncJob.Op.UPSERT, workspace_id: int | None = None,
                object_repr: str = "", payload: dict[str, Any] | None = None, nudge: bool = True) -> SyncJob:
    """Record that an object's state must reach the platform, in the caller's transaction.

    A pending job for the same object absorbs the change (coalescing): the handler always sends the object's
    current state, so the platform sees the latest state, not every step. After commit a worker is nudged; if
    the broker is down the periodic drain picks the job up later (``nudge=False`` leaves the nudge to a caller
    that enqueues many jobs at once). No audit: the caller audits its change. Raises UnknownSyncKind (a
    ValueError) for a kind outside the catalogue (project/sync/kinds.py).
    """
    kinds.require_known(kind)
    object_id = str(object_id)
    with transaction.atomic():
        for _ in range(ENQUEUE_ROUNDS):
            job = (SyncJob.objects.select_for_update()
                   .filter(kind=kind, object_id=object_id, state=SyncJob.State.PENDING).first())
            if job is not None:
                _coalesce(job, op, payload, object_repr)
                break
            try:
                with transaction.atomic():
                    job = SyncJob.objects.create(kind=kind, object_id=object_id, op=op, workspace_id=workspace_id,
                                                 object_repr=object_repr[:200], payload=payload or {},
                                                 request_id=_request_id())
                break
            except IntegrityError:
                # Another transaction inserted the pending job first. A worker may claim it before we look it up
                # (then nothing is pending any more and the next round inserts): look again until one wins.
                continue
        else:
            raise RuntimeError(f"could not enqueue {kind} {object_id}: the pending job kept changing hands")
    if nudge:
        _nudge_after_commit()
    return job


def jobs_enqueue_new(*, kind: str, objects: list[tuple[Any, int | None, str]], nudge: bool = True) -> int:
    """Enqueue jobs for objects that were just created in the caller's transaction (so none can have a pending
    job to coalesce with): one insert for all. ``objects`` holds (object_id, workspace_id, object_repr)."""
    kinds.require_known(kind)
    request_id = _request_id()
    SyncJob.objects.bulk_create([SyncJob(kind=kind, object_id=str(object_id), workspace_id=workspace_id,
                                         object_repr=object_repr[:200], request_id=request_id)
                                 for object_id, workspace_id, object_repr in objects], batch_size=500)
    if nudge and objects:
        _nudge_after_commit()
    return len(objects)


def _request_id() -> str:
    ctx = context.current()
    return ctx.request_id if ctx else ""


def _coalesce(job: SyncJob, op: str, payload: dict[str, Any] | None, object_repr: str) -> None:
    job.request_id = _request_id() or job.request_id
    job.op = op
    job.payload = {**job.payload, **(payload or {})}
    job.object_repr = object_repr[:200] or job.object_repr
    job.coalesced = F("coalesced") + 1
    job.next_attempt_at = min(job.next_attempt_at, timezone.now())
    job.save(update_fields=["op", "payload", "object_repr", "coalesced", "next_attempt_at", "request_id",
                            "updated_at"])
    job.refresh_from_db(fields=["coalesced"])


# --- claim -------------------------------------------------------------------------------------------------
def worker_name() -> str:
    # Fits claimed_by (64) with a drain thread's "/N" suffix, however long the host name (pods have long ones).
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _pending_exists(kind: str, object_id: str) -> bool:
    return SyncJob.objects.filter(kind=kind, object_id=object_id, state=SyncJob.State.PENDING).exists()


def _requeue(job_ids: Iterable[int], *, now: datetime, reason: str, worker: str | None = None,
             refund_attempt: bool = False, not_before: datetime | None = None) -> None:
    """Put running jobs back in the queue: pending again, or superseded when a newer change already waits.

    With ``worker`` only jobs that worker still holds move (a worker giving back its unfinished batch);
    without it only jobs whose lease has run out (the worker died). ``refund_attempt`` takes back the attempt
    the claim counted, for jobs that were never tried.
    """
    for job in SyncJob.objects.filter(pk__in=list(job_ids)).only("id", "kind", "object_id", "attempts"):
        held = SyncJob.objects.filter(pk=job.pk, state=SyncJob.State.RUNNING)
        held = held.filter(claimed_by=worker) if worker else held.filter(lease_until__lt=now)
        fields: dict[str, Any] = {"claimed_by": "", "lease_until": None, "updated_at": now}
        if not_before is not None:
            fields["next_attempt_at"] = not_before
        reason = redact(reason or "")
        if reason:
            fields["last_error"] = reason
        if refund_attempt:
            fields["attempts"] = F("attempts") - 1
        if not refund_attempt and job.attempts >= settings.SYNC_MAX_ATTEMPTS:
            # A job that keeps taking its worker down is poison: stop feeding it to workers.
            held.update(**{**fields, "last_error": f"gave up after {job.attempts} attempts: {reason}"},
                        state=SyncJob.State.DEAD, finished_at=now)
            continue
        state = SyncJob.State.SUPERSEDED if _pending_exists(job.kind, job.object_id) else SyncJob.State.PENDING
        try:
            with transaction.atomic():
                held.update(**fields, state=state, finished_at=now if state == SyncJob.State.SUPERSEDED else None)
        except IntegrityError:
            # A newer change was enqueued between the check and the update: it carries the current state.
            held.update(**fields, state=SyncJob.State.SUPERSEDED, finished_at=now)


def _release_expired_leases(now: datetime) -> None:
    """Jobs whose worker died mid-call go back to the queue (or yield to a newer pending job)."""
    expired = list(SyncJob.objects.filter(state=SyncJob.State.RUNNING, lease_until__lt=now)
                   .values_list("id", flat=True)[:500])
    if expired:
        logger.warning("re-queueing %d sync job(s) whose worker stopped renewing its lease", len(expired))
        _requeue(expired, now=now, reason="worker lost; requeued")


def jobs_claim(*, worker: str, limit: int = 20, release_expired: bool = True, probe: bool = True,
               skip_workspaces: Iterable[int] = ()) -> list[SyncJob]:
    """Claim up to ``limit`` due jobs for this worker, oldest first, and lease them.

    One short transaction selects due pending jobs of objects with no job running (so an object's changes
    apply in commit order) and marks them running. On PostgreSQL the select takes row locks with SKIP LOCKED,
    so concurrent workers pass over each other's candidates instead of waiting, and a row another worker
    claimed meanwhile no longer matches ``state = pending`` when re-checked; on SQLite the transaction begins
    IMMEDIATE, so claims are serialised. No lock is held across the HTTP calls.

    A drain loop that just claimed a full batch skips the lease sweep (it ran moments ago) and the "anything
    due?" probe that spares idle polls the write lock. Jobs of ``skip_workspaces`` (those of a platform account
    the drain has paused) are left for later.
    """
    now = timezone.now()
    if release_expired:
        _release_expired_leases(now)
    due = SyncJob.objects.filter(state=SyncJob.State.PENDING, next_attempt_at__lte=now)
    skipped = list(skip_workspaces)
    if skipped:
        # Deliveries that never reach the platform (notifications) go on while its account is paused.
        due = due.exclude(Q(workspace_id__in=skipped) & ~Q(kind__in=registry.local_kinds()))
    if probe and not due.exists():
        return []
    running_same_object = SyncJob.objects.filter(
        kind=OuterRef("kind"), object_id=OuterRef("object_id"), state=SyncJob.State.RUNNING)
    lease = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(due.select_for_update(skip_locked=True).exclude(Exists(running_same_object))
                   .order_by("id").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        SyncJob.objects.filter(pk__in=ids, state=SyncJob.State.PENDING).update(
            state=SyncJob.State.RUNNING, claimed_by=worker, lease_until=lease, attempts=F("attempts") + 1,
            updated_at=now)
        # Whether an older job of the same object was ever tried, for selectors.attempted_before: one subquery
        # per batch instead of one query per job.
        tried_before = SyncJob.objects.filter(kind=OuterRef("kind"), object_id=OuterRef("object_id"),
                                              id__lt=OuterRef("id"), attempts__gt=0)
        return list(SyncJob.objects.filter(pk__in=ids, state=SyncJob.State.RUNNING, claimed_by=worker)
                    .annotate(older_job_tried=Exists(tried_before)).order_by("id"))


def _renew_leases(jobs: list[SyncJob], *, worker: str) -> list[SyncJob]:
    """Extend the lease of jobs this worker still holds; return those (a job whose lease lapsed may be gone)."""
    now = timezone.now()
    ids = [job.pk for job in jobs]
    held = SyncJob.objects.filter(pk__in=ids, state=SyncJob.State.RUNNING, claimed_by=worker)
    renewed = held.update(lease_until=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS), updated_at=now)
    if renewed == len(ids):
        return jobs
    still = set(held.values_list("id", flat=True))
    return [job for job in jobs if job.pk in still]


# --- run and record ------------------------------------------------------------------------------------------
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


def _transient(job: SyncJob, reason: str, status: int | None) -> Outcome:
    if job.attempts >= settings.SYNC_MAX_ATTEMPTS:
        return Outcome(SyncJob.State.DEAD, f"gave up after {job.attempts} attempts: {reason}", status)
    return Outcome(SyncJob.State.PENDING, reason, status, backoff_seconds(job.attempts))


def job_run(job: SyncJob, *, client: Any | None = None) -> Outcome:
    """Run one claimed job: the HTTP call happens here, outside any transaction, under the request id of the
    change that asked for it (log lines and any audit event the handler writes carry it), through the client of
    the platform account the job's workspace is bound to (or `client`, when one is given)."""
    token = context.activate(context.RequestContext(request_id=job.request_id or context.new_request_id()))
    try:
        if client is None and not registry.is_local(job.kind):
            try:
                client = client_for_workspace(job.workspace_id)
            except DecryptionError:
                return _transient(job, "the platform account's key cannot be decrypted (FIELD_ENCRYPTION_KEY)", None)
        return _job_run(job, client=client)
    finally:
        context.deactivate(token)


def _job_run(job: SyncJob, *, client: Any) -> Outcome:
    try:
        handler = registry.handler_for(job.kind)
        remote_id = handler(job, client)
    except SoftTimeLimitExceeded:
        raise  # the task is out of time: the drain gives the batch back
    except errors.RateLimited as exc:
        delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(job.attempts)
        return Outcome(SyncJob.State.PENDING, _reason(exc), exc.status, delay)
    except errors.TRANSIENT as exc:
        return _transient(job, _reason(exc), exc.status)
    except errors.PlatformError as exc:
        # The platform refused the state itself (validation, conflict, auth): retrying will not help.
        return Outcome(SyncJob.State.FAILED, _reason(exc), exc.status)
    except (OperationalError, InterfaceError) as exc:
        # Our own database hiccuped (connection dropped, lock wait ran out): worth another try.
        return _transient(job, f"database unavailable: {type(exc).__name__}", None)
    except LookupError as exc:
        return Outcome(SyncJob.State.FAILED, str(exc))
    except Exception as exc:
        logger.exception("sync job %s (%s %s) crashed", job.pk, job.kind, job.object_id)
        return Outcome(SyncJob.State.FAILED, f"internal error: {type(exc).__name__}")
    return Outcome(SyncJob.State.DONE, remote_id=remote_id or "")


def _reason(exc: errors.PlatformError) -> str:
    return str(exc)[:2000]


@functools.cache
def _done_sql(vendor: str, with_remote_id: bool) -> str:
    quote = db_connection.ops.quote_name

    def column(name: str) -> str:
        return quote(SyncJob._meta.get_field(name).column)

    remote = f", {column('remote_id')} = %s" if with_remote_id else ""
    # Only quoted names from the model's metadata go into the text; every value is a parameter.
    assignments = (f"{column('state')} = %s, {column('claimed_by')} = '', {column('lease_until')} = NULL, "
                   f"{column('updated_at')} = %s, {column('finished_at')} = %s, {column('last_error')} = '', "
                   f"{column('last_status')} = NULL{remote}")
    condition = f"{column('id')} = %s AND {column('state')} = %s AND {column('claimed_by')} = %s"
    return f"UPDATE {quote(SyncJob._meta.db_table)} SET {assignments} WHERE {condition}"  # noqa: S608


def _record_done(job_id: int, *, worker: str, remote_id: str, now: datetime) -> None:
    """The drain's most frequent write, as the plain UPDATE the ORM would issue: building it through the ORM
    for every job cost about 0.2 ms of CPU, a tenth of a job's whole cost on a fast platform."""
    stamp = db_connection.ops.adapt_datetimefield_value(now)
    params = [SyncJob.State.DONE.value, stamp, stamp, *([remote_id] if remote_id else []), job_id,
              SyncJob.State.RUNNING.value, worker]
    with db_connection.cursor() as cursor:
        cursor.execute(_done_sql(db_connection.vendor, bool(remote_id)), params)


def job_finish(job: SyncJob, outcome: Outcome, *, worker: str) -> None:
    """Record the outcome, only if this worker still holds the job (a stolen lease loses the write)."""
    now = timezone.now()
    # The platform's error text may echo what it was sent: redacted like a log line before it is stored and shown.
    fields: dict[str, Any] = {"claimed_by": "", "lease_until": None, "updated_at": now,
                              "last_error": redact(outcome.error or ""), "last_status": outcome.status}
    state = outcome.state
    if state == SyncJob.State.PENDING:
        if _pending_exists(job.kind, job.object_id):
            state = SyncJob.State.SUPERSEDED  # a newer change is already waiting and will send the current state
            fields["finished_at"] = now
        fields["next_attempt_at"] = now + timedelta(seconds=outcome.delay)
        if outcome.status == 429:
            # Waiting out a rate limit is not a failed attempt.
            fields["attempts"] = F("attempts") - 1
    else:
        fields["finished_at"] = now
    if outcome.remote_id:
        fields["remote_id"] = outcome.remote_id
    held = SyncJob.objects.filter(pk=job.pk, state=SyncJob.State.RUNNING, claimed_by=worker)
    if state == SyncJob.State.DONE:
        _record_done(job.pk, worker=worker, remote_id=outcome.remote_id, now=now)
    elif state != SyncJob.State.PENDING:
        held.update(**fields, state=state)  # no constraint to collide with: one statement, no transaction
    else:
        try:
            with transaction.atomic():
                held.update(**fields, state=state)
        except IntegrityError:
            # Back to pending collided with a change enqueued just now: that newer job carries the current state.
            held.update(**{**fields, "finished_at": now}, state=SyncJob.State.SUPERSEDED)
    if state in (SyncJob.State.FAILED, SyncJob.State.DEAD):
        logger.warning("sync job %s %s %s is %s: %s", job.pk, job.kind, job.object_id, state, outcome.error)


# --- human actions -------------------------------------------------------------------------------------------
@transaction.atomic
def job_retry(*, actor: Actor, job: SyncJob) -> SyncJob:
    """Put a failed or dead job back in the queue (audited). A newer pending job makes it moot."""
    job = SyncJob.objects.select_for_update().get(pk=job.pk)
    if job.state not in (SyncJob.State.FAILED, SyncJob.State.DEAD):
        raise ValueError(f"only failed or dead jobs can be retried (this one is {job.get_state_display()})")
    old = job.state
    if _pending_exists(job.kind, job.object_id):
        job.state = SyncJob.State.SUPERSEDED
    else:
        job.state = SyncJob.State.PENDING
        job.attempts = 0
        job.next_attempt_at = timezone.now()
        job.finished_at = None
    job.save()
    record(actor=actor, action="sync.retry", target=job, workspace_id=job.workspace_id,
           changes={"state": [old, job.state]})
    _nudge_after_commit()
    return job


@transaction.atomic
def job_discard(*, actor: Actor, job: SyncJob) -> SyncJob:
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
