#!/usr/bin/env python
"""Sync drain with two platform accounts, one healthy and one answering 503 to every call.

    python bench/accounts_bench.py            # 1,000 jobs per account (under a minute)
    python bench/accounts_bench.py --full     # 5,000 jobs per account

Both accounts are served by one emulator hub in its own process on loopback (a real HTTP round trip per call).
First run: only the healthy account's jobs are pending; the drain's rate over them is the baseline. Second run:
as many jobs of the failing account are pending too (each answered 503 and backed off); the rate at which the
healthy account's jobs finish is compared with the baseline. Prints ``healthy alone: N jobs/s``,
``healthy beside a failing account: N jobs/s`` and ``ratio: R`` (the goal is at least 0.80). The database is a
temporary SQLite file unless DATABASE_URL is set.
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
HEALTHY_KEY = "sk_bench_healthy_account_key_000000000000000000001"
FAILING_KEY = "sk_bench_failing_account_key_000000000000000000002"

EMULATOR = """
import sys, threading
from project.platform.emulator import EmulatorHub
hub = EmulatorHub()
hub.add_account("healthy", api_key=sys.argv[1])
hub.add_account("failing", api_key=sys.argv[2]).set_faults(error_rate=1.0, error_status=503)
running = hub.serve(host="127.0.0.1", port=0)
print("listening on", running.url, flush=True)
threading.Event().wait()
"""


def _start_emulator() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, HEALTHY_KEY, FAILING_KEY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line}")
    return proc, line.split("listening on", 1)[1].split()[0]


def _setup(database_url: str, platform_url: str) -> None:
    os.environ.update({"DATABASE_URL": database_url, "PLATFORM_API_URL": platform_url,
                       "PLATFORM_API_KEY": HEALTHY_KEY, "DJANGO_SETTINGS_MODULE": "project.settings",
                       "DEBUG": "true", "LOG_LEVEL": "ERROR", "CELERY_TASK_ALWAYS_EAGER": "false"})
    sys.path.insert(0, str(ROOT))
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)


def _accounts(platform_url: str) -> tuple[object, object]:
    from django.db.models import F

    from workspaces.models import PlatformAccount
    from workspaces.services.platform_accounts import default_account

    healthy = default_account()
    PlatformAccount.objects.filter(pk=healthy.pk).update(base_url=platform_url, api_key=HEALTHY_KEY,
                                                         key_version=F("key_version") + 1)
    failing, _ = PlatformAccount.objects.get_or_create(
        name="Bench failing account", defaults={"base_url": platform_url, "api_key": FAILING_KEY, "key_hint": "0002"})
    return healthy, failing


def _jobs(account: object, slug: str, count: int) -> int:
    """A fresh workspace on `account` with `count` never-synced agents and a pending job for each."""
    from agents.models import Agent
    from project.sync.models import SyncJob
    from workspaces.models import Workspace

    workspace = Workspace.objects.create(name=f"Bench {slug}", slug=slug, platform_account=account,
                                         remote_prefix=f"{slug}__")
    agents = Agent.objects.bulk_create(
        (Agent(workspace=workspace, name=f"Agent {i}", auth_mode="signed") for i in range(count)), batch_size=1000)
    SyncJob.objects.bulk_create((SyncJob(kind="agent", object_id=str(a.pk), workspace_id=workspace.pk,
                                         object_repr=a.name) for a in agents), batch_size=1000)
    return workspace.pk


def _drain_until_done(workspace_id: int) -> float:
    """Seconds until every job of the workspace is done (the drain keeps claiming whatever is due)."""
    from project.sync.models import SyncJob
    from project.sync.services import outbox_drain

    started = time.perf_counter()
    while SyncJob.objects.filter(workspace_id=workspace_id).exclude(state="done").exists():
        if not outbox_drain(max_jobs=10**9, time_budget=300):
            time.sleep(0.05)
        if time.perf_counter() - started > 600:
            raise SystemExit("the healthy account's jobs did not finish within 10 minutes")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per account")
    parser.add_argument("--full", action="store_true", help="5,000 jobs per account")
    args = parser.parse_args()
    jobs = 5000 if args.full else args.jobs
    emulator, url = _start_emulator()
    tmp = tempfile.TemporaryDirectory()
    try:
        _setup(os.environ.get("DATABASE_URL") or f"sqlite:///{tmp.name}/bench.sqlite3", url)
        healthy, failing = _accounts(url)
        alone = _jobs(healthy, "bench-alone", jobs)
        alone_rate = jobs / _drain_until_done(alone)
        beside = _jobs(healthy, "bench-beside", jobs)
        _jobs(failing, "bench-failing", jobs)
        beside_rate = jobs / _drain_until_done(beside)
        from project.sync.models import SyncJob

        failing_left = SyncJob.objects.filter(workspace_id__in=failing.workspaces.values("pk")).exclude(
            state="done").count()
        print(f"healthy alone: {alone_rate:.0f} jobs/s")
        print(f"healthy beside a failing account: {beside_rate:.0f} jobs/s")
        print(f"ratio: {beside_rate / alone_rate:.2f} (goal >= 0.80)")
        print(f"failing account: {failing_left} of {jobs} jobs backing off, none lost")
        return 0
    finally:
        emulator.kill()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
