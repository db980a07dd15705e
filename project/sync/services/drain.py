"""The drain: claim a batch, run it, record each outcome, repeat, on several threads of one worker process
sharing its pooled client. Leases are renewed while a batch runs and handed back when the drain stops early."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from project.platform.client import account_of_workspace
from project.sync import registry
from project.sync.models import SyncJob
from project.sync.services.outbox import _renew_leases, _requeue, job_finish, job_run, jobs_claim, worker_name

# However long the platform asks us to wait after a 429, a worker pauses at most this long before going on
# with its batch (the rate-limited job itself waits the full Retry-After in the queue).
RATE_LIMIT_PAUSE_CAP = 5.0
# A busy drain loop looks for jobs whose worker died at most this often (an idle one, before every claim).
LEASE_SWEEP_EVERY = 5.0
# After this many transient failures in a row from one platform account (503, timeouts, no connection), the
# worker stops calling it for SYNC_ACCOUNT_PAUSE_SECONDS: its jobs wait (no attempt spent), the other
# accounts' jobs go on. Then one job probes it again.
ACCOUNT_FAILURES_TO_PAUSE = 5


class _AccountPauses:
    """Which platform accounts this worker process leaves alone for a while (shared by the drain threads)."""

    def __init__(self) -> None:
        self._failures: dict[int | None, int] = {}
        self._until: dict[int | None, float] = {}
        self._lock = threading.Lock()

    def paused_until(self, account: int | None) -> float | None:
        until = self._until.get(account)
        return until if until is not None and until > time.time() else None

    def paused(self) -> list[int | None]:
        now = time.time()
        return [account for account, until in list(self._until.items()) if until > now]

    def outcome(self, account: int | None, *, unavailable: bool) -> None:
        with self._lock:
            if not unavailable:
                self._failures.pop(account, None)
                self._until.pop(account, None)
                return
            failures = self._failures.get(account, 0) + 1
            self._failures[account] = failures
            if failures >= ACCOUNT_FAILURES_TO_PAUSE:
                self._until[account] = time.time() + settings.SYNC_ACCOUNT_PAUSE_SECONDS
                self._failures[account] = ACCOUNT_FAILURES_TO_PAUSE - 1  # one more failure after the pause re-pauses


_pauses = _AccountPauses()


def _skip_workspaces(client: Any) -> list[int]:
    """The workspaces of the accounts this process has paused (none when one client serves every account)."""
    paused = _pauses.paused() if client is None else []
    if not paused:
        return []
    from project.platform.client import accounts_with_workspaces

    bound = accounts_with_workspaces()
    return sorted({ws for account in paused for ws in (bound.get(account) or ())})


def _run_batch(jobs: list[SyncJob], *, client: Any, worker: str, stop: threading.Event | None = None,
               pause: _Pause | None = None) -> int:
    """Run claimed jobs in order, renewing their lease as time passes; give back what is left on the way out."""
    pause = pause or _Pause()
    renew_every = settings.SYNC_LEASE_SECONDS / 3
    renewed_at = time.monotonic()
    waiting = list(jobs)
    current: SyncJob | None = None
    ran = 0
    try:
        while waiting and not (stop is not None and stop.is_set()):
            if time.monotonic() - renewed_at > renew_every:
                waiting = _renew_leases(waiting, worker=worker)
                renewed_at = time.monotonic()
                if not waiting:
                    break
            current = waiting.pop(0)
            if registry.is_local(current.kind):
                # A notification or the audit stream: no platform account to pause or to wait for.
                job_finish(current, job_run(current), worker=worker)
                current = None
                ran += 1
                continue
            account = None if client is not None else account_of_workspace(current.workspace_id)
            until = _pauses.paused_until(account) if client is None else None
            if until is not None:
                # Its account is paused (failing): hand back its jobs of this batch untried, due when the pause
                # ends, in one go; the other accounts' jobs go on.
                mine = [current] + [job for job in waiting if not registry.is_local(job.kind)
                                     and account_of_workspace(job.workspace_id) == account]
                waiting = [job for job in waiting if job not in mine]
                when = timezone.now() + timedelta(seconds=until - time.time())
                _requeue([job.pk for job in mine], now=timezone.now(), reason="", worker=worker,
                         refund_attempt=True, not_before=when)
                current = None
                continue
            pause.wait(account)
            outcome = job_run(current, client=client)
            job_finish(current, outcome, worker=worker)
            current = None
            ran += 1
            if client is None:
                _pauses.outcome(account, unavailable=outcome.state == SyncJob.State.PENDING and (
                    outcome.status is None or outcome.status >= 500))
            if outcome.status == 429:
                # The platform's limit is per account, not per job: every thread of this drain lets that account
                # breathe (the other accounts' jobs go on).
                pause.extend(account, min(outcome.delay, RATE_LIMIT_PAUSE_CAP))  # waited out before its next call
    finally:
        # Out of time, shutting down or crashed: hand back what this worker holds instead of waiting for the
        # leases to run out. The job in progress keeps its attempt (its call may have reached the platform).
        now = timezone.now()
        if current is not None:
            _requeue([current.pk], now=now, reason="worker interrupted; requeued", worker=worker)
        if waiting:
            _requeue([job.pk for job in waiting], now=now, reason="", worker=worker, refund_attempt=True)
    return ran


class _Pause:
    """A pause after a 429, per platform account, shared by the threads of one drain."""

    def __init__(self) -> None:
        self._until: dict[int | None, float] = {}
        self._lock = threading.Lock()

    def extend(self, account: int | None, seconds: float) -> None:
        with self._lock:
            self._until[account] = max(self._until.get(account, 0.0), time.monotonic() + seconds)

    def wait(self, account: int | None) -> None:
        remaining = self._until.get(account, 0.0) - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


class _Quota:
    """How many more jobs the threads of one drain may claim (``max_jobs`` in all)."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self._lock:
            granted = min(wanted, self._left)
            self._left -= granted
            return granted

    def give_back(self, unused: int) -> None:
        with self._lock:
            self._left += unused


def _drain_loop(*, client: Any, worker: str, batch: int, deadline: float, quota: _Quota, pause: _Pause,
                stop: threading.Event | None = None, on_busy: Callable[[], None] | None = None) -> int:
    """Claim a batch, run it, repeat: until nothing is due, the quota or the time is used up, or ``stop``."""
    done, busy, swept = 0, False, time.monotonic()
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        limit = quota.take(batch)
        if not limit:
            break
        # While busy, sweep expired leases every few seconds rather than before every claim.
        sweep = not busy or time.monotonic() - swept > LEASE_SWEEP_EVERY
        jobs = jobs_claim(worker=worker, limit=limit, release_expired=sweep, probe=not busy,
                          skip_workspaces=_skip_workspaces(client))
        swept = time.monotonic() if sweep else swept
        quota.give_back(limit - len(jobs))
        if not jobs:
            break
        busy = len(jobs) == limit
        if busy and on_busy is not None:
            on_busy()
            on_busy = None
        done += _run_batch(jobs, client=client, worker=worker, stop=stop, pause=pause)
    return done


def outbox_drain(*, client: Any | None = None, max_jobs: int = 1000, batch: int | None = None,
                 worker: str | None = None, time_budget: float | None = None, threads: int | None = None,
                 on_busy: Callable[[], None] | None = None) -> int:
    """Claim and run due jobs until none is left, ``max_jobs`` ran or ``time_budget`` seconds passed (the
    budget stays below the task's time limit). Returns the number of jobs run.

    Each job goes through the pooled client of its workspace's platform account (``client``, when given, serves
them all). ``threads`` (SYNC_DRAIN_THREADS) drain loops share the process's pooled clients, so calls overlap;
    each claims its own share of the batch like a separate worker would (claims are safe under concurrency,
    and a job is never claimed while another of its object runs, so each object's changes stay in commit
    order). Inside a transaction the drain runs on this thread alone: other connections could not see what
    this one has not committed. ``on_busy`` is called once, when a claim comes back full (more is due than one
    batch): the drain task publishes one more wake-up there, so an idle worker process joins a burst.
    """
    worker = worker or worker_name()
    batch = batch or settings.SYNC_CLAIM_BATCH
    threads = threads or settings.SYNC_DRAIN_THREADS
    if transaction.get_connection().in_atomic_block:
        threads = 1
    budget = settings.SYNC_DRAIN_TIME_BUDGET_SECONDS if time_budget is None else time_budget
    deadline = time.monotonic() + budget
    quota, pause = _Quota(max_jobs), _Pause()
    if threads == 1:
        return _drain_loop(client=client, worker=worker, batch=batch, deadline=deadline, quota=quota, pause=pause,
                           on_busy=on_busy)
    # A name per thread, so a thread that lost its lease cannot record over another thread's claim.
    names = [f"{worker}/{i}" for i in range(threads)]
    share = max(1, batch // threads)
    limit = quota.take(share)
    first = jobs_claim(worker=names[0], limit=limit) if limit and budget > 0 else []
    quota.give_back(limit - len(first))
    loop_here = functools.partial(_drain_loop, client=client, worker=names[0], batch=share, deadline=deadline,
                                  quota=quota, pause=pause)
    if len(first) < share:
        # A trickle (the usual nudge after one commit): no helper threads, no extra database connections.
        return (_run_batch(first, client=client, worker=names[0], pause=pause) + loop_here()) if first else 0
    if on_busy is not None:
        on_busy()
    stop = threading.Event()

    def helper(name: str) -> int:
        try:
            return _drain_loop(client=client, worker=name, batch=share, deadline=deadline, quota=quota,
                               pause=pause, stop=stop)
        finally:
            db_connection.close()  # this thread's own database connection

    with ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="sync-drain") as pool:
        helpers = [pool.submit(helper, name) for name in names[1:]]
        try:
            ran = _run_batch(first, client=client, worker=names[0], pause=pause) + loop_here(stop=stop)
            return ran + sum(future.result() for future in helpers)
        except BaseException:
            # Out of time (the signal lands in this thread) or crashed: the helpers hand back their unstarted
            # jobs after the call in progress.
            stop.set()
            raise
