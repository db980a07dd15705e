#!/usr/bin/env python
"""Drain pending outbox jobs against the platform emulator on loopback and print jobs per second.

    python bench/sync_bench.py            # one and two workers on 3,000 jobs, naive on 150 (under 50 s)
    python bench/sync_bench.py --full     # all three on 10,000 jobs
    python bench/sync_bench.py --e2e      # also real Celery workers on Redis after a burst of commits


Each job is a first sync of an agent (a create on the platform, the remote id stored back), the real handler
and the real drain. "one worker" and "two workers" are separate processes running ``outbox_drain`` with the
process's one pooled client; "naive" is the simplest approach: one task per change, each claiming its one job
and building a new HTTP client for its call. The emulator runs in its own process. The database is a
temporary SQLite file unless DATABASE_URL is set (then its tables are used, and the bench's rows removed).
Prints one figure a line: ``one worker: N jobs/s``, ``two workers: N jobs/s``, ``naive: N jobs/s``.

``--e2e`` (needs Redis, and PostgreSQL in DATABASE_URL) measures the product end to end instead of the drain
loop alone: real ``celery worker`` processes (one, then two) consume a queue of this run's own on Redis
(``--redis``, database 9 by default) while producer threads commit one change per transaction, each nudging a
worker the way the product does. It prints ``e2e one worker: N jobs/s`` and ``e2e two workers: N jobs/s``
(first commit to last job done), ``e2e two / one: R×``, and ``queue empty after: R× the drain`` (first commit
to an empty broker queue with no drain task running, over first commit to last job done: the wake-ups a burst
leaves behind). On two cores the burst figures are the producers' commit rate more than the workers' pace, so it
then also commits a burst first and starts the workers on the backlog: ``e2e backlog one worker: N jobs/s``,
``e2e backlog two workers: N jobs/s`` (workers ready to last job done) and ``e2e backlog two / one: R×``, each
backlog run with ``CPU per job``: the CPU time of the workers, PostgreSQL, the emulator and Redis per job, and how
busy the whole machine was (of its cores) meanwhile.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cpu_split  # bench/cpu_split.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-emulator-key"
WORKSPACE_SLUG = "sync-bench"

# A worker process: set Django up, wait for the start file, drain until nothing is due, print the count.
WORKER = """
import os, sys, time
import django
django.setup()
from project.sync.services import outbox_drain
mode, start = sys.argv[1], sys.argv[2]
open(f"{start}.ready-{os.getpid()}", "w").close()
while not os.path.exists(start):
    time.sleep(0.001)
if mode == "pooled":
    done = 0
    while True:
        ran = outbox_drain(max_jobs=10**9, time_budget=10**9)
        done += ran
        if not ran:
            break
else:
    # The simplest approach: one task per change, and a new HTTP client for each call.
    from django.conf import settings
    from project.platform.client import PlatformClient
    from project.sync.services import job_finish, job_run, jobs_claim, worker_name
    done = 0
    while True:
        worker = worker_name()
        jobs = jobs_claim(worker=worker, limit=1)
        if not jobs:
            break
        client = PlatformClient(settings.PLATFORM_API_URL, settings.PLATFORM_API_KEY)
        try:
            job_finish(jobs[0], job_run(jobs[0], client=client), worker=worker)
        finally:
            client.close()
        done += 1
print(done)
"""


def _setup_django(database_url: str, platform_url: str) -> None:
    os.environ.update({"DATABASE_URL": database_url, "PLATFORM_API_URL": platform_url, "PLATFORM_API_KEY": KEY,
                       "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "true", "LOG_LEVEL": "ERROR",
                       "CELERY_TASK_ALWAYS_EAGER": "false"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# The emulator in its own process (so it does not share a GIL with a drainer), on loopback.
EMULATOR = """
import sys, threading
from project.platform.emulator import Emulator, server
# The stock handler writes a response's headers and body in two writes; with Nagle's algorithm the second
# waits for the client's delayed ACK, about 40 ms a call on loopback. Disable it here until the emulator does.
server._Handler.disable_nagle_algorithm = True
running = Emulator(api_key=sys.argv[1]).serve(host="127.0.0.1", port=0)
print("listening on", running.url, flush=True)
threading.Event().wait()
"""


def _start_emulator() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, KEY], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line}{proc.stdout.read() if proc.stdout else ''}")
    return proc, line.split("listening on", 1)[1].split()[0]


def _seed(jobs: int) -> None:
    """A fresh workspace with ``jobs`` agents never synced, and a pending upsert job for each."""
    from django.conf import settings
    from django.db.models import F

    from agents.models import Agent
    from project.sync.models import SyncJob
    from workspaces.models import PlatformAccount, Workspace
    from workspaces.services.platform_accounts import default_account

    _clear()
    # The workers reach the emulator through the default platform account: point it at this run's emulator.
    account = default_account()
    PlatformAccount.objects.filter(pk=account.pk).update(base_url=settings.PLATFORM_API_URL,
                                                         api_key=settings.PLATFORM_API_KEY,
                                                         key_version=F("key_version") + 1)
    workspace = Workspace.objects.create(name="Sync bench", slug=WORKSPACE_SLUG, platform_account=account)
    agents = Agent.objects.bulk_create(
        (Agent(workspace=workspace, name=f"Bench agent {i}", auth_mode="allowlist",
               allowlist=["app.example.com", "localhost:3000"]) for i in range(jobs)), batch_size=1000)
    SyncJob.objects.bulk_create(
        (SyncJob(kind="agent", object_id=str(a.pk), workspace_id=workspace.pk, object_repr=a.name) for a in agents),
        batch_size=1000)


def _clear() -> None:
    from agents.models import Agent
    from project.sync.models import SyncJob
    from workspaces.models import Workspace

    workspace = Workspace.objects.filter(slug=WORKSPACE_SLUG).first()
    if workspace is not None:
        SyncJob.objects.filter(workspace_id=workspace.pk).delete()
        Agent.objects.filter(workspace=workspace).delete()
        workspace.delete()


def _reset_emulator(platform_url: str) -> None:
    import httpx

    httpx.post(f"{platform_url}/_emulator/reset", timeout=10).raise_for_status()


def _measure(mode: str, processes: int, jobs: int, *, platform_url: str, tmp: Path) -> float:
    """Seed ``jobs`` jobs, start ``processes`` drainers together, return jobs per second of wall time."""
    from project.sync.models import SyncJob

    _reset_emulator(platform_url)
    _seed(jobs)
    start = tmp / f"go-{mode}-{processes}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, mode, str(start)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    # Start the clock once every process has set Django up, so it times draining only.
    deadline = time.monotonic() + 60
    while len(list(tmp.glob(f"{start.name}.ready-*"))) < processes:
        if time.monotonic() > deadline or any(proc.poll() is not None for proc in procs):
            raise SystemExit(f"a {mode} drainer did not start: {procs[0].communicate()[1][-3000:]}")
        time.sleep(0.01)
    began = time.perf_counter()
    start.touch()
    outputs = [proc.communicate() for proc in procs]
    elapsed = time.perf_counter() - began
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"a {mode} drainer failed:\n{err[-3000:]}")
    ran = sum(int(out.strip().splitlines()[-1]) for out, _ in outputs)
    done = SyncJob.objects.filter(state="done").count()
    if ran != jobs or done != jobs:
        problems = list(SyncJob.objects.exclude(state="done").values_list("state", "last_error")[:5])
        raise SystemExit(f"{mode} x{processes}: ran {ran}, done {done} of {jobs} jobs: {problems}")
    return jobs / elapsed


# --- end to end: real Celery workers on Redis ------------------------------------------------------------
def _redis_idle(client, queue: str) -> bool:
    """Nothing waits in the queue and no message of it is being worked on (kombu keeps an unacked message in its
    ``unacked`` hash until the task acks it: late acks)."""
    if client.llen(queue):
        return False
    for raw in client.hvals("unacked"):
        if f'"{queue}"'.encode() in raw:
            return False
    return True


def _start_workers(processes: int, *, queue: str, env: dict[str, str], tmp: Path) -> subprocess.Popen:
    log = open(tmp / f"worker-{processes}.log", "w+")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "prefork", "--concurrency",
         str(processes), "-Q", queue, "-n", f"{queue}-{processes}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel", "INFO"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        log.seek(0)
        if " ready." in log.read():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    proc.kill()
    raise SystemExit(f"the celery worker did not start:\n{log.read()[-3000:]}")


def _stop_workers(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    proc.log.close()  # type: ignore[attr-defined]


def _burst(producers: int) -> tuple[float, list, list[float]]:
    """Start committing one change per transaction for each seeded agent, from ``producers`` threads; every
    commit nudges a worker through the product's own path. Returns when the first commit began, and the threads."""
    import threading

    from django.db import connection, transaction

    from agents.models import Agent
    from project.sync.services import job_enqueue
    from workspaces.models import Workspace

    workspace = Workspace.objects.get(slug=WORKSPACE_SLUG)
    agents = list(Agent.objects.filter(workspace=workspace).order_by("pk").values_list("pk", "name"))
    ends: list[float] = []

    def produce(share: list[tuple[int, str]]) -> None:
        try:
            for pk, name in share:
                with transaction.atomic():
                    job_enqueue(kind="agent", object_id=pk, workspace_id=workspace.pk, object_repr=name)
        finally:
            ends.append(time.perf_counter())
            connection.close()

    threads = [threading.Thread(target=produce, args=(agents[i::producers],)) for i in range(producers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    return began, threads, ends


def _measure_backlog(processes: int, jobs: int, *, producers: int, platform_url: str, queue: str, redis_url: str,
                     env: dict[str, str], tmp: Path, emulator_pid: int) -> tuple[float, str]:
    """Jobs per second of ``processes`` worker processes on a backlog: the burst is committed first (its wake-ups
    wait on Redis), then the workers start; timed from the workers being ready to the last job done, so the figure
    is the workers' own pace end to end, not the producers' (which caps the burst figures on two cores). Also returns
    where the CPU time went meanwhile, per job (cpu_split: the workers, PostgreSQL, the emulator, Redis, and this
    process polling for the count)."""
    import redis
    from django.db.models import Max
    from django.utils import timezone

    from project.sync.models import SyncJob
    from project.sync.services import wakeup_release
    from workspaces.models import Workspace

    client = redis.Redis.from_url(redis_url)
    _reset_emulator(platform_url)
    _seed(jobs)
    workspace_id = Workspace.objects.get(slug=WORKSPACE_SLUG).pk
    SyncJob.objects.filter(workspace_id=workspace_id).delete()
    _, threads, _ = _burst(producers)
    for thread in threads:
        thread.join()
    workers = _start_workers(processes, queue=queue, env=env, tmp=tmp)
    split = cpu_split.Split({"workers": lambda: cpu_split.tree(workers.pid),
                             "database": lambda: cpu_split.processes("postgres"),
                             "emulator": lambda: [emulator_pid], "redis": lambda: cpu_split.processes("redis-server"),
                             "bench": lambda: [os.getpid()]})
    split.start()
    ready = timezone.now()
    cpu = ""
    try:
        deadline = time.monotonic() + 300
        while SyncJob.objects.filter(workspace_id=workspace_id, state="done").count() < jobs:
            if time.monotonic() > deadline:
                raise SystemExit(f"e2e backlog x{processes}: not drained in time")
            time.sleep(0.02)
        cpu = split.line(jobs, unit="job", seconds=(timezone.now() - ready).total_seconds())
    finally:
        _stop_workers(workers)
        # A wake-up a drain published for a second process may still wait: gone with the queue, and so is its mark
        # (else the next burst's commits would count on it until it goes stale; the product's periodic drain is
        # not running here).
        client.delete(queue)
        wakeup_release(queue=queue)
    last = SyncJob.objects.filter(workspace_id=workspace_id).aggregate(last=Max("finished_at"))["last"]
    return jobs / (last - ready).total_seconds(), cpu


def _measure_e2e(processes: int, jobs: int, *, producers: int, platform_url: str, queue: str, redis_url: str,
                 env: dict[str, str], tmp: Path) -> tuple[float, float, float, float]:
    """(jobs per second from first commit to last job done, that time, first commit to an idle broker queue,
    first to last commit)."""
    import redis
    from django.db.models import Count

    from project.sync.models import SyncJob
    from workspaces.models import Workspace

    client = redis.Redis.from_url(redis_url)
    _reset_emulator(platform_url)
    _seed(jobs)
    workspace_id = Workspace.objects.get(slug=WORKSPACE_SLUG).pk
    SyncJob.objects.filter(workspace_id=workspace_id).delete()  # the burst makes them
    workers = _start_workers(processes, queue=queue, env=env, tmp=tmp)
    try:
        began, threads, ends = _burst(producers)
        deadline = time.monotonic() + 300
        done_at = None
        while time.monotonic() < deadline:
            if done_at is None and SyncJob.objects.filter(workspace_id=workspace_id, state="done").count() >= jobs:
                done_at = time.perf_counter()
            if done_at is not None and all(not t.is_alive() for t in threads) and _redis_idle(client, queue):
                empty_at = time.perf_counter()
                break
            time.sleep(0.005)
        else:
            states = list(SyncJob.objects.filter(workspace_id=workspace_id).values_list("state")
                          .annotate(n=Count("id")))
            raise SystemExit(f"e2e x{processes}: not drained in time ({states}, queue {client.llen(queue)})")
    finally:
        _stop_workers(workers)
    for thread in threads:
        thread.join()
    return jobs / (done_at - began), done_at - began, empty_at - began, max(ends) - began


def _e2e(args: argparse.Namespace, jobs: int, *, platform_url: str, tmp: Path, emulator_pid: int) -> None:
    import redis

    queue = os.environ["CELERY_TASK_DEFAULT_QUEUE"]
    try:
        redis.Redis.from_url(args.redis, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        raise SystemExit(f"--e2e needs Redis at {args.redis}: {type(exc).__name__}") from exc
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the broker and queue were set before Django was
    try:
        common = {"producers": args.producers, "platform_url": platform_url, "queue": queue, "redis_url": args.redis,
                  "env": env, "tmp": tmp}
        one, drain_one, empty_one, burst_one = _measure_e2e(1, jobs, **common)
        print(f"e2e one worker: {one:.0f} jobs/s (the burst committed {jobs / burst_one:.0f} changes/s)", flush=True)
        print(f"queue empty after: {empty_one / drain_one:.2f}× the drain ({drain_one:.2f} s drain, "
              f"{empty_one:.2f} s to an idle queue)", flush=True)
        two, drain_two, empty_two, burst_two = _measure_e2e(2, jobs, **common)
        print(f"e2e two workers: {two:.0f} jobs/s (the burst committed {jobs / burst_two:.0f} changes/s)", flush=True)
        print(f"queue empty after (two workers): {empty_two / drain_two:.2f}× the drain", flush=True)
        print(f"e2e two / one: {two / one:.2f}×", flush=True)
        backlog_one, cpu_one = _measure_backlog(1, jobs, **common, emulator_pid=emulator_pid)
        print(f"e2e backlog one worker: {backlog_one:.0f} jobs/s", flush=True)
        if cpu_one:
            print(f"CPU per job (one worker): {cpu_one}", flush=True)
        backlog_two, cpu_two = _measure_backlog(2, jobs, **common, emulator_pid=emulator_pid)
        print(f"e2e backlog two workers: {backlog_two:.0f} jobs/s", flush=True)
        if cpu_two:
            print(f"CPU per job (two workers): {cpu_two}", flush=True)
        print(f"e2e backlog two / one: {backlog_two / backlog_one:.2f}×", flush=True)
    finally:
        client = redis.Redis.from_url(args.redis)
        client.delete(queue)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="all three measurements on 10,000 jobs")
    parser.add_argument("--jobs", type=int, help="jobs for the worker measurements (default 3,000; --full 10,000)")
    parser.add_argument("--naive-jobs", type=int, help="jobs for the naive measurement (default 150)")
    parser.add_argument("--e2e", action="store_true",
                        help="also real Celery workers on Redis after a burst of commits (needs PostgreSQL)")
    parser.add_argument("--e2e-jobs", type=int, help="changes in the e2e burst (default 3,000; --full 10,000)")
    parser.add_argument("--producers", type=int, default=4, help="threads committing the e2e burst (default 4)")
    parser.add_argument("--redis", default=os.environ.get("SYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
                        help="the Redis broker for --e2e (a database of its own; the queue is this run's)")
    args = parser.parse_args()
    jobs = args.jobs or (10_000 if args.full else 3_000)
    naive_jobs = args.naive_jobs or (10_000 if args.full else 150)

    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
        if args.e2e:
            if not database_url.startswith(("postgres://", "postgresql://")):
                raise SystemExit("--e2e needs DATABASE_URL on PostgreSQL (worker processes share it)")
            # This run's own queue on the broker, for the producers here and the workers it starts.
            os.environ.update({"CELERY_BROKER_URL": args.redis,
                               "CELERY_TASK_DEFAULT_QUEUE": f"sync-bench-{os.getpid()}"})
        emulator, platform_url = _start_emulator()
        try:
            _setup_django(database_url, platform_url)
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            one = _measure("pooled", 1, jobs, platform_url=platform_url, tmp=tmp)
            print(f"one worker: {one:.0f} jobs/s", flush=True)
            two = _measure("pooled", 2, jobs, platform_url=platform_url, tmp=tmp)
            print(f"two workers: {two:.0f} jobs/s", flush=True)
            naive = _measure("naive", 1, naive_jobs, platform_url=platform_url, tmp=tmp)
            print(f"naive: {naive:.0f} jobs/s", flush=True)
            if args.e2e:
                _e2e(args, args.e2e_jobs or (10_000 if args.full else 3_000), platform_url=platform_url, tmp=tmp,
                     emulator_pid=emulator.pid)
            _clear()
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
