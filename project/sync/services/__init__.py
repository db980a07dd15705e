"""Every write of the sync app: the outbox (enqueue, claim, run, finish, drain, retry, discard) and the long
operations over whole kinds (reconcile, bulk re-sync, pushing drifted objects), and the retention prune of
done jobs."""

from project.sync.services.drain import outbox_drain
from project.sync.services.outbox import (
    Outcome,
    _kick,
    backoff_seconds,
    job_discard,
    job_enqueue,
    job_finish,
    job_retry,
    job_run,
    jobs_claim,
    jobs_enqueue_new,
    wakeup_release,
    wakeup_reserve,
    worker_name,
)
from project.sync.services.reconcile import (
    drift_act,
    drift_push,
    reconcile_execute,
    reconcile_run,
    reconcile_start,
    resync_run,
    resync_start,
)
from project.sync.services.retention import sync_jobs_prune

__all__ = [
    "Outcome",
    "_kick",
    "backoff_seconds",
    "drift_act",
    "drift_push",
    "job_discard",
    "job_enqueue",
    "job_finish",
    "jobs_enqueue_new",
    "job_retry",
    "job_run",
    "jobs_claim",
    "outbox_drain",
    "reconcile_execute",
    "reconcile_run",
    "reconcile_start",
    "resync_run",
    "resync_start",
    "sync_jobs_prune",
    "wakeup_release",
    "wakeup_reserve",
    "worker_name",
]
