#!/usr/bin/env python
"""Benchmark of detection (a script, not a test). Prints one figure a line:

    seed: N keys, M daily and H hourly usage rows in S s    bulk-loaded keys with 30 days of usage
    dashboard (<who>, N keys) p50 / p95: N ms               GET /admin/posture/ through the whole Django stack
    dashboard (<who>, N keys) queries: N                    queries per page view (the same at every size)
    rules over H hourly rows: N ms                          rules_evaluate() over the last 26 hours of rows, as
                                                            of the latest 18:30 UTC (below)
    rules again, every finding already raised: N ms         the same pass once its alerts exist (the steady state)
    credit guard over N keys: N ms (Q queries)              credit_guard_run() with every key under a quota

Sizes: 10, 10,000 and (by default) 100,000 keys, each in a fresh throwaway database. The hourly usage and the rules
pass are anchored at the latest 18:30 UTC, not at the time the script runs: the unusual-hours rule judges the hour of
day, so a pass run at night raised two thirds more alerts from the same data (8,313 at 22:26 against 4,942 at 18:29),
and the figure is a pass raising about 5,000.
Database: PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/kw_h8); a test database is created
next to it and dropped afterwards.

Usage: .venv/bin/python bench/dashboard_bench.py [--sizes 10,10000] [--runs 20] [--full] [--usage-scale 10]
    [--dashboard-only] [--profile FILE]
--full: the issue's size (10, 10,000 and 100,000 keys); --usage-scale N: N times the keys with usage (N × 150,000
daily rows at 100,000 keys); --dashboard-only: skip the rules and credit guard figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kw_h8")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402

from project.actors import SYSTEM  # noqa: E402  (models need the app registry)

settings.DEBUG = False
# WhiteNoise warns when collectstatic has not run; the benchmark serves no static files.
warnings.filterwarnings("ignore", message="No directory at")

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import OperationalError, connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

RNG = random.Random(20261123)  # noqa: S311 - synthetic data
USAGE_KEYS = 5000  # keys with 30 days of usage (the rest never spent anything)


def rules_clock(now: datetime) -> datetime:
    """The latest 18:30 UTC: the hourly rows end at its hour and the rules pass runs as of it (see the docstring)."""
    anchor = now.astimezone(UTC).replace(hour=18, minute=30, second=0, microsecond=0)
    return anchor if anchor <= now else anchor - timedelta(days=1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seed(n_keys: int, usage_keys: int = USAGE_KEYS) -> tuple[object, object, int, int]:
    from keys.models import BURN_WINDOW_DAYS
    from workspaces.models import Role, RoleAssignment, ServiceAccount
    from workspaces.services import workspace_create

    users = get_user_model().objects
    root = users.create_user(f"bench-root-{n_keys}", is_staff=True, is_superuser=True)
    admin = users.create_user(f"bench-admin-{n_keys}", is_staff=True)
    workspaces = [workspace_create(actor=SYSTEM, name=f"Bench {n_keys} {i}", slug=f"bench-{n_keys}-{i}")
                  for i in range(3)]
    RoleAssignment.objects.create(user=admin, workspace=workspaces[0],
                                  role=Role.objects.get(workspace=None, name="Admin"))
    accounts = ServiceAccount.objects.bulk_create(
        ServiceAccount(workspace=workspaces[i % 3], name=f"svc-{i:04d}", remote_id=f"sa-{n_keys}-{i}")
        for i in range(min(300, n_keys)))
    envs = {w.pk: list(w.environments.all()) for w in workspaces}
    now = timezone.now()
    columns = ("uuid", "created_at", "updated_at", "workspace_id", "service_account_id", "environment_id", "name",
               "scopes", "credit_quota", "allowed_ips", "state", "hint", "digest", "remote_key_id", "activated_at",
               "revoked_at", "revoke_reason", "last_used_at", "suspend_reason", "platform_hash", "origin")
    # COPY, not bulk_create: the seed is scaffolding, and COPY loads 100k rows several times faster.
    with connection.cursor() as cursor, cursor.connection.cursor().copy(
            f"COPY keys_apikey ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(n_keys):
            account = accounts[i % len(accounts)]
            born = now - timedelta(days=RNG.uniform(0, 200))
            revoked = RNG.random() < 0.1
            copy.write_row((
                uuid.uuid4(), born, born, account.workspace_id, account.pk, RNG.choice(envs[account.workspace_id]).pk,
                f"key {i}", json.dumps("all" if RNG.random() < 0.1 else ["text_to_speech"]),
                RNG.randint(1, 9) * 100_000, "[]" if RNG.random() < 0.3 else '["203.0.113.0/24"]',
                "revoked" if revoked else "active", f"{i:04d}"[-4:], f"{n_keys:08d}{i:056d}",
                f"k-{n_keys}-{i}", born, born + timedelta(days=1) if revoked else None, "", None, "", "", "keyward"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM keys_apikey ORDER BY id LIMIT %s", [usage_keys])
        key_ids = [k for (k,) in cursor.fetchall()]
    daily = hourly = 0
    today = now.date()
    with connection.cursor() as cursor, cursor.connection.cursor().copy(
            "COPY keys_keyusagedaily (created_at, updated_at, key_id, day, credits, requests) FROM STDIN") as copy:
        for key_id in key_ids:
            for d in range(30):
                copy.write_row((now, now, key_id, today - timedelta(days=d), RNG.randint(0, 5000), RNG.randint(0, 99)))
                daily += 1
    hour = rules_clock(now).replace(minute=0)
    with connection.cursor() as cursor, cursor.connection.cursor().copy(
            "COPY detection_keyusagehourly (key_id, hour, credits, requests) FROM STDIN") as copy:
        for key_id in key_ids:
            for h in range(0, 26, 2):
                copy.write_row((key_id, hour - timedelta(hours=h), RNG.randint(1, 300), RNG.randint(1, 9)))
                hourly += 1
    with connection.cursor() as cursor:
        # The dashboard's pre-aggregated burn (what keys.services.burn keeps for the ingest), in SQL: the Python
        # rebuild takes minutes at this size. Key windows ending today - 2 … today + 29, as the ingest leaves them.
        cursor.execute("""
            INSERT INTO keys_environmentusagedaily (workspace_id, environment_id, day, credits)
            SELECT k.workspace_id, k.environment_id, d.day, SUM(d.credits)
            FROM keys_keyusagedaily d JOIN keys_apikey k ON k.id = d.key_id GROUP BY 1, 2, 3""")
        cursor.execute("""
            INSERT INTO keys_keyusagewindow (key_id, workspace_id, day, credits)
            SELECT d.key_id, k.workspace_id, g.day::date, SUM(d.credits)
            FROM keys_keyusagedaily d JOIN keys_apikey k ON k.id = d.key_id
            JOIN generate_series(%s::date, %s::date, interval '1 day') AS g(day)
              ON d.day > g.day::date - %s AND d.day <= g.day::date
            GROUP BY 1, 2, 3 HAVING SUM(d.credits) <> 0""",
                       [today - timedelta(days=2), today + timedelta(days=BURN_WINDOW_DAYS - 1), BURN_WINDOW_DAYS])
        cursor.execute("VACUUM ANALYZE keys_apikey, keys_keyusagedaily, detection_keyusagehourly, "
                       "keys_environmentusagedaily, keys_keyusagewindow")
    return root, admin, daily, hourly


def _bench_size(n_keys: int, runs: int, usage_keys: int = USAGE_KEYS, dashboard_only: bool = False,
                profile: str | None = None) -> None:
    from detection.guard import credit_guard_run
    from detection.rules import rules_evaluate

    started = time.perf_counter()
    root, admin, daily, hourly = _seed(n_keys, usage_keys)
    print(f"seed: {n_keys:,} keys, {daily:,} daily and {hourly:,} hourly usage rows in "
          f"{time.perf_counter() - started:.1f} s")
    url = reverse("posture_dashboard")
    for who, user in (("superuser, all workspaces", root), ("workspace admin", admin)):
        client = Client()
        client.force_login(user)
        assert client.get(url).status_code == 200  # warm-up
        times, counts = [], set()
        for _ in range(runs):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
            counts.add(len(ctx))
        print(f"dashboard ({who}, {n_keys:,} keys) p50 / p95: {statistics.median(times):.0f} / "
              f"{_percentile(times, 0.95):.0f} ms")
        print(f"dashboard ({who}, {n_keys:,} keys) queries: {', '.join(map(str, sorted(counts)))}")
    if dashboard_only:
        return
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(rules_evaluate, now=rules_clock(timezone.now()))
            profiler.dump_stats(profile)
        else:
            result = rules_evaluate(now=rules_clock(timezone.now()))
        elapsed = (time.perf_counter() - t0) * 1000
    print(f"rules over {result['hours_evaluated']:,} hourly rows: {elapsed:.0f} ms "
          f"({result['alerts']:,} alerts raised, {len(ctx)} queries)")
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        result = rules_evaluate(now=rules_clock(timezone.now()))
        elapsed = (time.perf_counter() - t0) * 1000
    print(f"rules again, every finding already raised: {elapsed:.0f} ms ({len(ctx)} queries, "
          f"{result['findings']:,} findings)")
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        result = credit_guard_run()  # the first pass raises the alerts; the steady state is every later pass
        elapsed = (time.perf_counter() - t0) * 1000
    print(f"credit guard first pass over {result['keys_watched']:,} keys: {elapsed:.0f} ms ({len(ctx)} queries, "
          f"{result['alerts']:,} alerts raised)")
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        result = credit_guard_run()
        elapsed = (time.perf_counter() - t0) * 1000
    print(f"credit guard over {result['keys_watched']:,} keys: {elapsed:.0f} ms ({len(ctx)} queries)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,10000")
    parser.add_argument("--full", action="store_true", help="the issue's sizes: 10, 10,000 and 100,000 keys")
    parser.add_argument("--usage-scale", type=int, default=1, help="N times the keys with 30 days of usage")
    parser.add_argument("--dashboard-only", action="store_true", help="only the dashboard's figures")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the first rules pass of the largest size into FILE "
                        "(its time is then the profiled one)")
    args = parser.parse_args()
    if args.full:
        args.sizes = "10,10000,100000"
    if connection.vendor != "postgresql":
        print("dashboard_bench needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    sizes = [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        try:
            connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        except OperationalError as exc:
            print(f"dashboard_bench needs PostgreSQL at DATABASE_URL ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        try:
            _bench_size(size, args.runs, USAGE_KEYS * args.usage_scale, args.dashboard_only,
                        args.profile if size == max(sizes) else None)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
