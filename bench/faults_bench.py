#!/usr/bin/env python
"""Agent creates under platform faults, renames during the run and a worker killed once; prints what went wrong.

    python bench/faults_bench.py                # 1,500 agent creates (a few minutes)
    python bench/faults_bench.py --agents 40    # the tiny run tests/test_benchmarks.py makes

The emulator (its own process, on loopback) fails 10 % of calls with 503 and 2 % with 429, on every route, and
honours no Idempotency-Key (like the platform). Two drainer processes run ``outbox_drain`` with Keyward's default
sync settings (attempts, backoff) except a short lease (``--lease``, so the killed worker's jobs come back within
the run rather than after two minutes). While they drain, a tenth of the agents are renamed; once a quarter of the
creates are done, one drainer is SIGKILLed (whatever call it had in flight is lost: its outcome is unknown) and
another is started. Each handler run appends (job, attempt, platform calls) to a log, so the calls of every
retried create are counted, killed workers included. The database is a temporary SQLite file unless DATABASE_URL
is set. Prints one figure a line:

    dead jobs: N                        jobs that gave up (0 expected)
    failed jobs: N                      jobs refused for good (0 expected)
    duplicates: N                       agents the platform holds twice for one Keyward agent (0 expected)
    remote equal to local: yes|no      every agent on the platform once, with its current name and auth
    retried creates: N                  create attempts after an earlier one (any reason)
    platform calls per retried create: max M, mean X   (at most 3 expected)
    lookups after an unknown outcome: N
    platform calls: N                   every call the emulator answered (faulted ones included)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "faults-bench-emulator-key"
WORKSPACE_SLUG = "faults-bench"

# A drainer: counts the platform calls of each agent handler run (appended to a log line by line, so a killed
# process loses only the run it was in), then drains until told to stop and nothing is due.
WORKER = """
import json, os, sys, time
import django
django.setup()
from project.sync import registry
from agents.models import Agent
from project.sync.models import SyncJob
from project.sync.services import outbox_drain
log_path, stop = sys.argv[1], sys.argv[2]
push = registry._handlers["agent"]
log = open(log_path, "a", buffering=1)

def counted(job, client):
    before = client.calls
    creating = Agent.objects.filter(pk=job.object_id, remote_id="").exists()
    try:
        return push(job, client)
    finally:
        log.write(json.dumps({"job": job.pk, "object": job.object_id, "attempts": job.attempts,
                              "retry": job.attempts > 1 or bool(job.last_error) or job.last_status is not None,
                              "unknown": job.last_status is None and (job.attempts > 1 or bool(job.last_error)),
                              "creating": creating, "calls": client.calls - before}) + "\\n")

registry._handlers["agent"] = counted
open(f"{log_path}.ready", "w").close()
while True:
    ran = outbox_drain(max_jobs=10**9, time_budget=30)
    if not ran:
        if os.path.exists(stop) and not SyncJob.objects.filter(state__in=["pending", "running"]).exists():
            break
        time.sleep(0.2)
print("drained")
"""

EMULATOR = """
import sys, threading
from project.platform.emulator import Emulator, server
server._Handler.disable_nagle_algorithm = True
emulator = Emulator(api_key=sys.argv[1])
emulator.set_faults(error_rate=0.10, error_status=503, rate_limit_rate=0.02, retry_after=0, seed=18)
running = emulator.serve(host="127.0.0.1", port=0)
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


def _setup_django(database_url: str, platform_url: str, lease: int) -> None:
    os.environ.update({"DATABASE_URL": database_url, "PLATFORM_API_URL": platform_url, "PLATFORM_API_KEY": KEY,
                       "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "true", "LOG_LEVEL": "CRITICAL",
                       "CELERY_TASK_ALWAYS_EAGER": "false", "SYNC_LEASE_SECONDS": str(lease),
                       "PLATFORM_TIMEOUT": "5"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _seed(count: int) -> list[int]:
    """A workspace bound to this run's emulator, and ``count`` agents made through the service (each enqueues
    its create)."""
    from django.conf import settings
    from django.db.models import F

    from agents import services
    from project.actors import SYSTEM
    from workspaces.models import PlatformAccount, Workspace
    from workspaces.services.platform_accounts import default_account

    account = default_account()
    PlatformAccount.objects.filter(pk=account.pk).update(base_url=settings.PLATFORM_API_URL,
                                                         api_key=settings.PLATFORM_API_KEY,
                                                         key_version=F("key_version") + 1)
    workspace = Workspace.objects.create(name="Faults bench", slug=WORKSPACE_SLUG, platform_account=account)
    return [services.agent_create(actor=SYSTEM, workspace=workspace, name=f"Faulty agent {i:05d}",
                                  auth_mode="allowlist", allowlist=["app.example.com"]).pk for i in range(count)]


def _start_worker(log: Path, stop: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(log), str(stop)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(log: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not Path(f"{log}.ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"a drainer did not start: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)


def _compare(platform_url: str, agent_pks: list[int]) -> tuple[int, bool]:
    """(duplicates, remote equal to local): every agent's Keyward tag once on the platform, its name and auth as
    Keyward holds them, and nothing else there."""
    from agents.models import Agent
    from agents.sync import agent_differences
    from project.platform.client import PlatformClient

    with PlatformClient(platform_url, KEY) as client:
        remote = [a for archived in (False, True) for a in client.iter_agents(archived=archived)]
        tags = Counter(t for a in remote for t in a.get("tags") or [] if t.startswith("keyward-"))
        agents = list(Agent.objects.filter(pk__in=agent_pks))
        duplicates = sum(n - 1 for n in tags.values() if n > 1)
        equal = len(remote) == len(agents) and all(tags.get(a.sync_tag) == 1 for a in agents)
        by_id = {a["agent_id"]: a for a in remote}
        for agent in agents:
            summary = by_id.get(agent.remote_id)
            if summary is None or summary["name"] != agent.name:
                equal = False
                continue
        sample = agents[:: max(1, len(agents) // 50)]  # read a sample in full (50 calls) for the auth settings
        for agent in sample:
            if agent.remote_id and agent_differences(agent, client.get_agent(agent.remote_id)):
                equal = False
    return duplicates, equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1500, help="agent creates (default 1,500)")
    parser.add_argument("--lease", type=int, default=10, help="SYNC_LEASE_SECONDS for the run (default 10)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="faults-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
        emulator, platform_url = _start_emulator()
        workers: list[subprocess.Popen] = []
        try:
            _setup_django(database_url, platform_url, args.lease)
            import httpx
            from django.core.management import call_command

            from agents import services
            from agents.models import Agent
            from project.actors import SYSTEM
            from project.sync.models import SyncJob

            call_command("migrate", verbosity=0, interactive=False)
            agent_pks = _seed(args.agents)
            stop = tmp / "stop"
            logs = [tmp / f"calls-{n}.log" for n in range(3)]
            workers = [_start_worker(logs[0], stop), _start_worker(logs[1], stop)]
            for log, proc in zip(logs, workers, strict=False):
                _wait_ready(log, proc)
            renamed = 0
            killed = False
            to_rename = agent_pks[:: 10]
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                done = Agent.objects.filter(pk__in=agent_pks).exclude(remote_id="").count()
                if renamed < len(to_rename) and done >= renamed * len(agent_pks) // len(to_rename):
                    agent = Agent.objects.get(pk=to_rename[renamed])
                    services.agent_update(actor=SYSTEM, agent=agent, name=f"{agent.name} (renamed)")
                    renamed += 1
                if not killed and done >= len(agent_pks) // 4:
                    workers[0].send_signal(signal.SIGKILL)  # mid-run: its claimed jobs come back after the lease
                    workers[0].wait()
                    workers.append(_start_worker(logs[2], stop))
                    _wait_ready(logs[2], workers[-1])
                    killed = True
                if renamed >= len(to_rename) and killed:
                    break
                time.sleep(0.05)
            stop.touch()
            for proc in workers[1:]:
                _out, err = proc.communicate(timeout=1800)
                if proc.returncode != 0:
                    raise SystemExit(f"a drainer failed:\n{err[-3000:]}")
            states = Counter(SyncJob.objects.values_list("state", flat=True))
            quiet = {"error_rate": 0, "rate_limit_rate": 0}
            httpx.post(f"{platform_url}/_emulator/faults", json=quiet).raise_for_status()
            calls = sum(httpx.get(f"{platform_url}/_emulator/state").json()["calls"].values())
            duplicates, equal = _compare(platform_url, agent_pks)
            runs = [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()
                    if line.strip()]
            creates_retried = [r for r in runs if r["retry"] and r["creating"]]
            per_retry = [r["calls"] for r in creates_retried]
            print(f"dead jobs: {states.get('dead', 0)}")
            print(f"failed jobs: {states.get('failed', 0)}")
            print(f"duplicates: {duplicates}")
            print(f"remote equal to local: {'yes' if equal else 'no'}")
            print(f"retried creates: {len(per_retry)}")
            mean = sum(per_retry) / len(per_retry) if per_retry else 0.0
            print(f"platform calls per retried create: max {max(per_retry, default=0)}, mean {mean:.2f}")
            print(f"lookups after an unknown outcome: {sum(1 for r in creates_retried if r['unknown'])}")
            print(f"platform calls: {calls}")
            print(f"renamed: {renamed}, worker killed: {'yes' if killed else 'no'}")
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
            emulator.terminate()
            emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
