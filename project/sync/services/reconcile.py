"""Long operations over every object of a kind, with progress: reconcile (the drift report) and bulk re-sync,
and pushing the local state of drifted objects."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from project import access
from project.actors import SYSTEM, Actor, is_system
from project.audit.services import actor_fields, record
from project.fields import DecryptionError
from project.platform import errors
from project.sync import registry
from project.sync.models import Drift, ReconcileRun, SyncJob
from project.sync.registry import DriftItem
from project.sync.services.outbox import _nudge_after_commit, job_enqueue

logger = logging.getLogger("project.sync")

ProgressCallback = Callable[[ReconcileRun], None]

# How often progress is written to the run row (and shown): often enough for a live bar, rarely enough to cost
# nothing next to the platform calls.
PROGRESS_EVERY_SECONDS = 0.5
# A running run whose heartbeat (updated_at) is older than this lost its worker; another may start.
STALE_AFTER = timedelta(minutes=5)
RESYNC_CHUNK = 200


def _label(actor: Actor) -> str:
    return actor_fields(actor)["actor_label"]


def _require_sync_manage_somewhere(actor: Actor) -> set[int] | None:
    """The workspaces where the actor may manage sync (None: all). A person with none is refused."""
    allowed = access.workspaces_with(actor, "sync.manage")
    if allowed is not None and not allowed:
        raise PermissionDenied("You do not have the “sync.manage” permission in any workspace.")
    return allowed


def _check_kinds(kinds: Iterable[str] | None, known: list[str], what: str) -> list[str]:
    chosen = list(kinds) if kinds else known
    unknown = [k for k in chosen if k not in known]
    if unknown:
        raise ValueError(f"cannot {what} kind(s) {', '.join(unknown)}: known kinds are {', '.join(known) or 'none'}")
    return chosen


def _send_after_commit(task_name: str, run_id: int) -> None:
    def send() -> None:
        from project.sync import tasks

        try:
            getattr(tasks, task_name).apply_async(kwargs={"run_id": run_id}, retry=False)
        except Exception as exc:  # any broker failure: the periodic reconcile picks queued runs up
            logger.warning("could not reach the broker to start run %s (%s); the periodic reconcile will start it",
                           run_id, type(exc).__name__)

    transaction.on_commit(send, robust=True)


# --- starting runs --------------------------------------------------------------------------------------------
@transaction.atomic
def reconcile_start(*, actor: Actor, kinds: Iterable[str] | None = None, enqueue: bool = True) -> ReconcileRun:
    """Queue a reconcile of ``kinds`` (default: every kind with a reconciler). Needs ``sync.manage`` in some
    workspace; audited when a person asks. With ``enqueue`` the task is sent after commit."""
    _require_sync_manage_somewhere(actor)
    chosen = _check_kinds(kinds, registry.reconciler_kinds(), "reconcile")
    run = ReconcileRun.objects.create(operation=ReconcileRun.Operation.RECONCILE, kinds=chosen,
                                      requested_by=_label(actor))
    if not is_system(actor):  # the system's own runs (beat, commands) are not audited one by one
        record(actor=actor, action="sync.reconcile", target=run, changes={"kinds": chosen})
    if enqueue:
        _send_after_commit("reconcile", run.pk)
    return run


@transaction.atomic
def resync_start(*, actor: Actor, kind: str, enqueue: bool = True) -> ReconcileRun:
    """Queue a bulk re-sync: an upsert job for every object of ``kind`` in the workspaces where the actor has
    ``sync.manage`` (all for the system and superusers). Audited when a person asks."""
    allowed = _require_sync_manage_somewhere(actor)
    [kind] = _check_kinds([kind], registry.resync_kinds(), "re-sync")
    run = ReconcileRun.objects.create(operation=ReconcileRun.Operation.RESYNC, kinds=[kind],
                                      workspace_ids=sorted(allowed) if allowed is not None else None,
                                      requested_by=_label(actor))
    if not is_system(actor):  # the system's own runs (beat, commands) are not audited one by one
        record(actor=actor, action="sync.resync", target=run,
               changes={"kind": kind, "workspaces": run.workspace_ids or "all"})
    if enqueue:
        _send_after_commit("resync", run.pk)
    return run


# --- running them ---------------------------------------------------------------------------------------------
class _Progress:
    """Keeps a run's total/done current across kinds and writes them at most every PROGRESS_EVERY_SECONDS."""

    def __init__(self, run: ReconcileRun, on_progress: ProgressCallback | None) -> None:
        self.run = run
        self.on_progress = on_progress
        self.base_total = self.base_done = 0
        self.kind_total: int | None = None
        self.kind_done = 0
        self.written = 0.0

    def begin(self, kind: str) -> None:
        self.run.current_kind = kind
        self.kind_total, self.kind_done = None, 0
        self._apply(force=True)

    def report(self, done: int, total: int | None = None) -> None:
        self.kind_done = max(0, done)
        if total is not None:
            self.kind_total = max(total, 0)
        self._apply(force=False)

    def end(self) -> None:
        total = self.kind_total if self.kind_total is not None else 1
        self.base_total += total
        self.base_done += total
        self.kind_total, self.kind_done = 0, 0
        self._apply(force=True)

    def _apply(self, *, force: bool) -> None:
        # A kind that never reports counts as one step, so the bar still moves kind by kind.
        kind_total = self.kind_total if self.kind_total is not None else 1
        self.run.total = self.base_total + max(kind_total, self.kind_done)
        self.run.done = self.base_done + self.kind_done
        now = time.monotonic()
        if force or now - self.written >= PROGRESS_EVERY_SECONDS:
            self.written = now
            self.save()

    def save(self, **extra: Any) -> None:
        for name, value in extra.items():
            setattr(self.run, name, value)
        self.run.updated_at = timezone.now()
        ReconcileRun.objects.filter(pk=self.run.pk).update(
            total=self.run.total, done=self.run.done, current_kind=self.run.current_kind,
            drift_found=self.run.drift_found, jobs_enqueued=self.run.jobs_enqueued, updated_at=self.run.updated_at,
            **extra)
        if self.on_progress is not None:
            self.on_progress(self.run)


def _claim(run: ReconcileRun) -> bool:
    now = timezone.now()
    won = ReconcileRun.objects.filter(pk=run.pk, state=ReconcileRun.State.QUEUED).update(
        state=ReconcileRun.State.RUNNING, started_at=now, updated_at=now)
    if won:
        run.state, run.started_at = ReconcileRun.State.RUNNING, now
    return bool(won)


def _finish(progress: _Progress, state: str, error: str = "") -> None:
    progress.run.current_kind = ""
    progress.save(state=state, error=error[:4000], finished_at=timezone.now())


def _open_objects(kind: str) -> set[str]:
    return set(SyncJob.objects.filter(kind=kind, state__in=SyncJob.OPEN_STATES).values_list("object_id", flat=True))


def _newest_job_id() -> int:
    return SyncJob.objects.aggregate(newest=Max("id"))["newest"] or 0


def _drop_in_flight(kind: str, items: list[registry.DriftItem], *, open_before: set[str],
                    newest_before: int) -> list[registry.DriftItem]:
    """An object whose sync job was open when the reconciler started, is open now, or was enqueued meanwhile is
    in flight, not drifted. (Index-friendly: open states and ids, never a scan of finished jobs.)"""
    busy = open_before | _open_objects(kind) | set(
        SyncJob.objects.filter(kind=kind, id__gt=newest_before).values_list("object_id", flat=True))
    return [item for item in items if item.object_id is None or str(item.object_id) not in busy]


def _plain_fields(fields: Any) -> dict[str, Any]:
    return {str(name): list(pair) if isinstance(pair, tuple) else pair for name, pair in dict(fields).items()}


@transaction.atomic
def _replace_report(run: ReconcileRun, kind: str, items: list[registry.DriftItem]) -> None:
    Drift.objects.filter(kind=kind).delete()
    Drift.objects.bulk_create([
        Drift(run=run, kind=kind, object_id=None if item.object_id is None else str(item.object_id),
              object_repr=(item.label or "")[:200], remote_id=item.remote_id or "", workspace_id=item.workspace_id,
              account_id=item.account_id, problem=item.problem, fields=_plain_fields(item.fields))
        for item in items], batch_size=500)


def reconcile_run(*, run: ReconcileRun, client: Any | None = None,
                  on_progress: ProgressCallback | None = None) -> ReconcileRun:
    """Run a queued reconcile: each kind's reconciler compares local and remote state, and a kind that
    completes replaces its drift report. A kind the platform fails for keeps its previous report and is named
    in the run's error. Returns the run (unchanged if another worker had already claimed it)."""
    from project.platform.client import accounts_with_workspaces, client_for_account

    if not _claim(run):
        return run
    progress = _Progress(run, on_progress)
    problems: list[str] = []
    # Each platform account is compared with the local objects of the workspaces bound to it.
    accounts = {None: None} if client is not None else accounts_with_workspaces()
    try:
        for kind in run.kinds:
            progress.begin(kind)
            open_before, newest_before = _open_objects(kind), _newest_job_id()
            token = registry.listening(progress.report)
            items: list[DriftItem] = []
            failed = False
            try:
                for account_id, workspace_ids in accounts.items():
                    try:
                        account_client = client or client_for_account(account_id)
                        # A remote object nobody local owns concerns the account's workspace when it has one.
                        alone = next(iter(workspace_ids)) if workspace_ids and len(workspace_ids) == 1 else None
                        items += [replace(item, account_id=item.account_id or account_id,
                                          workspace_id=item.workspace_id if item.workspace_id is not None else alone)
                                  for item in registry.reconciler_for(kind)(account_client, workspace_ids)]
                    except (errors.PlatformError, LookupError, DecryptionError) as exc:
                        where = f" (platform account {account_id})" if account_id else ""
                        problems.append(f"{kind}{where}: {exc}")
                        failed = True
            finally:
                registry.stop_listening(token)
            if failed:
                progress.end()
                continue
            items = _drop_in_flight(kind, items, open_before=open_before, newest_before=newest_before)
            _replace_report(run, kind, items)
            run.drift_found += len(items)
            progress.end()
    except BaseException as exc:  # out of time, shutting down, or a bug: the run must not stay "running"
        _finish(progress, ReconcileRun.State.FAILED, f"stopped: {type(exc).__name__}")
        raise
    _finish(progress, ReconcileRun.State.FAILED if problems else ReconcileRun.State.DONE, "\n".join(problems))
    # The guardrails judge each account again (Keyward's own objects may have changed since the last refresh).
    from project.sync.services.discovery import tell_listeners

    for account_id in accounts:
        if account_id is not None:
            tell_listeners(account_id, None)
    return run


def resync_run(*, run: ReconcileRun, on_progress: ProgressCallback | None = None) -> ReconcileRun:
    """Run a queued bulk re-sync: enqueue an upsert for every object of the kind within the run's workspaces,
    a chunk per transaction (each chunk nudges the workers once)."""
    if not _claim(run):
        return run
    progress = _Progress(run, on_progress)
    [kind] = run.kinds
    scope = None if run.workspace_ids is None else set(run.workspace_ids)
    try:
        progress.begin(kind)
        objects = [o for o in registry.objects_for(kind)() if scope is None or o.workspace_id in scope]
        progress.report(0, len(objects))
        for start in range(0, len(objects), RESYNC_CHUNK):
            chunk = objects[start:start + RESYNC_CHUNK]
            with transaction.atomic():
                for obj in chunk:
                    job_enqueue(kind=kind, object_id=obj.object_id, workspace_id=obj.workspace_id,
                                object_repr=obj.label, nudge=False)
                _nudge_after_commit()
            run.jobs_enqueued += len(chunk)
            progress.report(start + len(chunk), len(objects))
        progress.end()
    except BaseException as exc:
        _finish(progress, ReconcileRun.State.FAILED, f"stopped: {type(exc).__name__}")
        raise
    _finish(progress, ReconcileRun.State.DONE)
    return run


def _alive(operation: str) -> bool:
    """Is a run of this operation going, with a recent heartbeat? Stale ones (worker lost) are closed here."""
    now = timezone.now()
    ReconcileRun.objects.filter(operation=operation, state=ReconcileRun.State.RUNNING,
                                updated_at__lt=now - STALE_AFTER).update(
        state=ReconcileRun.State.FAILED, error="worker lost (no progress for 5 minutes)", finished_at=now,
        updated_at=now)
    return ReconcileRun.objects.filter(operation=operation, state=ReconcileRun.State.RUNNING).exists()


def reconcile_execute(*, run_id: int | None = None, kind: str | None = None,
                      client: Any | None = None) -> ReconcileRun | None:
    """The task's entry point. With a run id, run that queued run. Without (the periodic schedule), run the
    oldest queued reconcile (one the broker never delivered) or a new one, unless one is already going."""
    if run_id is not None:
        run = ReconcileRun.objects.filter(pk=run_id).first()
        if run is None:
            return None
    else:
        if _alive(ReconcileRun.Operation.RECONCILE):
            return None
        run = (ReconcileRun.objects.filter(operation=ReconcileRun.Operation.RECONCILE,
                                           state=ReconcileRun.State.QUEUED).order_by("id").first()
               or reconcile_start(actor=SYSTEM, kinds=[kind] if kind else None, enqueue=False))
    if run.operation == ReconcileRun.Operation.RESYNC:
        return resync_run(run=run)
    return reconcile_run(run=run, client=client)


# --- acting on drift ------------------------------------------------------------------------------------------
def drift_act(*, actor: Actor, drift: Drift, action: str) -> str:
    """Run a registered drift action (Recreate from Keyward, Forget, Adopt, …) on one drift row: it must match
    the action's kind and problem; the action checks the actor's rights and audits what it changes, and this
    marks the row acted upon (audited as sync.drift_action). Returns the action's message."""
    chosen = registry.drift_action(action)
    if (drift.kind, drift.problem) != (chosen.kind, chosen.problem):
        raise ValueError(f"{drift}: “{chosen.label}” applies to {chosen.kind} drift of kind {chosen.problem}")
    message = chosen.run(actor, drift)
    with transaction.atomic():
        locked = Drift.objects.select_for_update().filter(pk=drift.pk).first()
        if locked is not None:
            locked.pushed_at = timezone.now()
            locked.save(update_fields=["pushed_at", "updated_at"])
        record(actor=actor, action="sync.drift_action", target=drift, workspace_id=drift.workspace_id,
               changes={"action": action, "kind": drift.kind, "object_id": drift.object_id,
                        "remote_id": drift.remote_id})
    return message



@transaction.atomic
def drift_push(*, actor: Actor, drift: Drift) -> SyncJob:
    """Push the local state of a drifted object: enqueue an upsert (coalesced with any pending job) and mark
    the drift row pushed. Needs ``sync.manage`` in the object's workspace; audited. A remote object unknown
    locally has nothing local to push and is refused: Keyward never deletes it on its own."""
    drift = Drift.objects.select_for_update().get(pk=drift.pk)
    access.require(actor, "sync.manage", drift.workspace_id)
    if drift.problem == Drift.Problem.UNKNOWN_LOCALLY or not drift.object_id:
        raise ValueError(f"{drift}: no local object to push; adopt or remove it on the platform by hand")
    job = job_enqueue(kind=drift.kind, object_id=drift.object_id, workspace_id=drift.workspace_id,
                      object_repr=drift.object_repr)
    drift.pushed_at = timezone.now()
    drift.push_job_id = job.pk
    drift.save(update_fields=["pushed_at", "push_job_id", "updated_at"])
    record(actor=actor, action="sync.push", target=drift, workspace_id=drift.workspace_id,
           changes={"kind": drift.kind, "object_id": drift.object_id, "problem": drift.problem, "job": job.pk})
    return job
