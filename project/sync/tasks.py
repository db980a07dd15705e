"""Celery entry points: thin wake-up calls. The rows (SyncJob, ReconcileRun) are the record of work."""

from __future__ import annotations

from celery import shared_task

from project.actors import SYSTEM
from project.sync import services

# Reconcile and re-sync walk every object of a kind: allow them far longer than a drain batch. A run that
# outlives a broker's redelivery (Redis's visibility timeout) is not run twice: a run is claimed once.
LONG_SOFT_LIMIT = 1800
LONG_HARD_LIMIT = 1860


@shared_task(name="sync.drain_outbox", ignore_result=True)
def drain_outbox(max_jobs: int = 1000) -> int:
    """Wake-up call: drain due outbox rows. Idempotent; safe to run on many workers at once.

    Takes the queued wake-up first (a commit from then on publishes a new one; at most one waits per queue). On a
    backlog it publishes one more, so an idle worker process joins, and again when it stops at ``max_jobs``."""
    services.wakeup_release()
    eager = drain_outbox.app.conf.task_always_eager  # no other worker: the periodic drain goes on
    ran = services.outbox_drain(max_jobs=max_jobs, on_busy=None if eager else services._kick)
    if ran >= max_jobs and not eager:
        services._kick()
    return ran


@shared_task(name="sync.reconcile", ignore_result=True, soft_time_limit=LONG_SOFT_LIMIT, time_limit=LONG_HARD_LIMIT)
def reconcile(run_id: int | None = None, kind: str | None = None) -> None:
    """Run a queued reconcile, or (periodic, no id) start one unless one is already going."""
    services.reconcile_execute(run_id=run_id, kind=kind)


@shared_task(name="sync.resync", ignore_result=True, soft_time_limit=LONG_SOFT_LIMIT, time_limit=LONG_HARD_LIMIT)
def resync(run_id: int) -> None:
    """Run a queued bulk re-sync (enqueue an upsert for every object of a kind)."""
    services.reconcile_execute(run_id=run_id)


@shared_task(name="sync.prune_done_jobs", ignore_result=True, soft_time_limit=600, time_limit=660)
def prune_done_jobs() -> int:
    """Periodic (SYNC_PRUNE_INTERVAL_SECONDS): delete done jobs finished over SYNC_DONE_RETENTION_DAYS ago that a
    newer job of their object replaced."""
    return services.sync_jobs_prune(actor=SYSTEM)


@shared_task(name="sync.discover", ignore_result=True, soft_time_limit=LONG_SOFT_LIMIT, time_limit=LONG_HARD_LIMIT)
def discover(run_id: int) -> None:
    """Run a queued discovery of a platform account."""
    from project.sync.services.discovery import discovery_execute

    discovery_execute(run_id=run_id)


@shared_task(name="sync.refresh_observations", ignore_result=True, soft_time_limit=LONG_SOFT_LIMIT,
             time_limit=LONG_HARD_LIMIT)
def refresh_observations() -> int:
    """Periodic (GUARDRAIL_INTERVAL_SECONDS): run discovery runs the broker never delivered, then read every
    platform account that has workspaces again, so the guardrails judge the live state."""
    from project.sync.services.discovery import discovery_sweep

    return discovery_sweep()
