#!/usr/bin/env python
"""Discovery, adoption and a guardrail pass over a large platform account.

    python bench/discovery_bench.py                      # 10,000 agents, 20,000 secrets, 50,000 keys
    python bench/discovery_bench.py --agents 100 --secrets 200 --keys 500    # a quick look

The account lives in an emulator in its own process on loopback (a real HTTP round trip per call), filled in
memory before timing starts; keys are spread over 100 service accounts (the platform's ceiling). Keyward reads
it as a platform account bound to one workspace. Prints, each on its own line: ``discovery: S s``, ``platform
calls: N``, ``adoption: S s`` (every adoptable object, audited one by one), ``guardrail pass: S s`` (every
observation and Keyward key judged after adoption, findings written, one alert per object and rule raised, with
the counts), ``guardrail findings:`` per rule, ``discovery + adoption: S s`` and ``peak memory: N MB`` (the
Keyward process's peak resident set, Django included). Goals: discovery + adoption < 60 s, guardrail pass
< 10 s, peak < 300 MB. The database is a temporary SQLite file unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_bench_discovery_account_key_000000000000000000001"

EMULATOR = """
import json, sys, threading
import httpx
from project.platform.emulator import EmulatorHub
agents, secrets, keys = (int(n) for n in sys.argv[2:5])
hub = EmulatorHub()
account = hub.add_account("big", api_key=sys.argv[1], max_service_accounts=100)
http = httpx.Client(base_url="http://seed", transport=httpx.MockTransport(account.handle),
                    headers={"xi-api-key": sys.argv[1]})
for i in range(secrets):
    http.post("/v1/convai/secrets", json={"type": "new", "name": f"secret_{i:06d}", "value": f"value-{i}"})
for i in range(agents):
    auth = [{"enable_auth": True}, {"allowlist": [{"hostname": f"site{i}.example"}]},
            {"enable_auth": False, "shareable_token": f"share{i}"}][i % 3]
    account.seed_agent(name=f"Agent {i:06d}", prompt="You help.", tags=["team:bench"], auth=auth,
                       max_duration_seconds=600 if i % 7 else 0)
accounts = [http.post("/v1/service-accounts", json={"name": f"sa-{n:03d}"}).json()["service-account-user-id"]
            for n in range(min(100, max(1, keys)))]
for i in range(keys):
    body = {"name": f"key {i:06d}", "permissions": "all" if i % 5 == 0 else ["convai_read"]}
    if i % 2:
        body["allowed_ips"] = ["203.0.113.0/24"]
    http.post(f"/v1/service-accounts/{accounts[i % len(accounts)]}/api-keys", json=body)
running = hub.serve(host="127.0.0.1", port=0)
print("listening on", running.url, flush=True)
threading.Event().wait()
"""


def _start_emulator(agents: int, secrets: int, keys: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR, KEY, str(agents), str(secrets), str(keys)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the emulator did not start: {line}")
    return proc, line.split("listening on", 1)[1].split()[0]


def _setup(database_url: str, platform_url: str) -> None:
    os.environ.update({"DATABASE_URL": database_url, "PLATFORM_API_URL": platform_url, "PLATFORM_API_KEY": KEY,
                       # DEBUG for the development defaults (no production secrets needed); its query log is
                       # switched off after setup, below.
                       "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "true", "LOG_LEVEL": "ERROR",
                       "CELERY_TASK_ALWAYS_EAGER": "false"})
    sys.path.insert(0, str(ROOT))
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)
    from django.conf import settings

    # As in production, and as the keys and broker benches do: DEBUG's query log formats every statement with its
    # parameters (on SQLite, one more query per statement to quote them) and keeps the last 9,000. Here that was
    # a third of the database time and 150 MB of SQL text by the end: measure the app, not the log.
    settings.DEBUG = False


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--secrets", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the guardrail pass to FILE")
    args = parser.parse_args()
    started = time.perf_counter()
    emulator, url = _start_emulator(args.agents, args.secrets, args.keys)
    print(f"emulator filled in {time.perf_counter() - started:.1f} s", flush=True)
    tmp = tempfile.TemporaryDirectory()
    try:
        _setup(os.environ.get("DATABASE_URL") or f"sqlite:///{tmp.name}/bench.sqlite3", url)
        from django.db.models import F

        from project.actors import SYSTEM
        from project.sync import registry
        from project.sync.services import discovery
        from workspaces.models import PlatformAccount
        from workspaces.services import workspace_create
        from workspaces.services.platform_accounts import default_account

        account = default_account()
        PlatformAccount.objects.filter(pk=account.pk).update(base_url=url, api_key=KEY,
                                                             key_version=F("key_version") + 1)
        # Through the service: the workspace gets its environments (adopted keys go to the production one).
        workspace = workspace_create(actor=SYSTEM, name="Bench", slug="bench", platform_account=account)
        # The guardrails are timed on their own: not inside discovery and adoption.
        listeners = registry.observation_listeners()
        registry._observation_listeners.clear()
        baseline = _peak_mb()
        t0 = time.perf_counter()
        run = discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=account.pk,
                                                                    enqueue=False))
        t1 = time.perf_counter()
        peaks = [_peak_mb()]
        if run.state != "done":
            raise SystemExit(f"discovery failed: {run.error}")
        report = discovery.adopt(actor=SYSTEM, account_id=account.pk, workspace_id=workspace.pk)
        t2 = time.perf_counter()
        peaks.append(_peak_mb())
        # The pass the listener runs (detection.guardrails), called directly for its report.
        from detection.guardrails import guardrails_evaluate

        profiler = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profiler:
            profiler.enable()
        judged = guardrails_evaluate(account_id=account.pk)
        t3, cpu = time.perf_counter(), time.process_time() - cpu
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        registry._observation_listeners.extend(listeners)
        print(f"read: {', '.join(f'{v} {k}' for k, v in run.counts.items())}")
        print(f"adopted: {', '.join(f'{v} {k}' for k, v in report.adopted.items())}"
              f"{f'; {len(report.refused)} refused' if report.refused else ''}")
        print(f"discovery: {t1 - t0:.1f} s")
        print(f"platform calls: {run.calls}")
        print(f"adoption: {t2 - t1:.1f} s")
        print(f"guardrail pass: {t3 - t2:.1f} s (CPU {cpu:.1f} s; goal < 10 s; {judged.judged} objects judged, "
              f"{sum(judged.findings.values())} findings, {judged.raised} alerts raised)")
        print("guardrail findings: " + (", ".join(f"{n} {rule}" for rule, n in sorted(judged.findings.items()))
                                        or "none"))
        print(f"discovery + adoption: {t2 - t0:.1f} s (goal < 60 s)")
        print(f"peak memory: {_peak_mb():.0f} MB (after Django setup: {baseline:.0f} MB, after discovery: "
              f"{peaks[0]:.0f} MB, after adoption: {peaks[1]:.0f} MB; goal < 300 MB)")
        return 0
    finally:
        emulator.kill()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
