#!/usr/bin/env python
"""Drain pending outbox jobs against the platform emulator on loopback and print jobs per second.

    python bench/sync_bench.py            # one and two workers on 3,000 jobs, naive on 150 (under 50 s)
    python bench/sync_bench.py --full     # all three on 10,000 jobs

Each job is a first sync of an agent (a create on the platform, the remote id stored back), the real handler
and the real drain. "one worker" and "two workers" are separate processes running ``outbox_drain`` with the
process's one pooled client; "naive" is the simplest approach: one task per change, each claiming its one job
and building a new HTTP client for its call. The emulator runs in its own process. The database is a
temporary SQLite file unless DATABASE_URL is set (then its tables are used, and the bench's rows removed).
Prints one figure a line: ``one worker: N jobs/s``, ``two workers: N jobs/s``, ``naive: N jobs/s``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="all three measurements on 10,000 jobs")
    parser.add_argument("--jobs", type=int, help="jobs for the worker measurements (default 3,000; --full 10,000)")
    parser.add_argument("--naive-jobs", type=int, help="jobs for the naive measurement (default 150)")
    args = parser.parse_args()
    jobs = args.jobs or (10_000 if args.full else 3_000)
    naive_jobs = args.naive_jobs or (10_000 if args.full else 150)

    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
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
            _clear()
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
