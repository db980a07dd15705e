#!/usr/bin/env python
"""Benchmark of the API-key part (a script, not a test). Prints one figure a line:

    seed: N keys in S s                 bulk-inserted keys (digests of random secrets), spread over 3 workspaces
    leak check extract p50: N ms        find and hash the sk_ strings of a ~1 MB paste (no database)
    leak check, no match p50 / p95      leak_check() on a ~1 MB paste of 2,200 unknown key-shaped strings: extract,
                                        hash and look the digests up in IN batches against 100,000 keys
    leak check p50 / p95: N ms          the same with 200 of the strings real keys: plus an audit event per match
                                        and the alerts (first run raises them, later ones find them raised today)
    leak check queries: N               database queries per check
    leak check, N matches first / again a paste holding N other real keys (2,000 by default): the first check
                                        audits each and raises their alerts, the second finds them raised
    leak check queries, N matches       queries of that first check (the same as with 200: bulk writes)
    key list (<who>) p50 / p95: N ms    GET /admin/keys/apikey/ through the whole Django stack (test client), with
                                        the list's flags, select_related and sync-state annotation
    key list (<who>) queries: N         queries per page view (the same whatever the number of keys)

Database: PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/kw_h6); a throwaway test database
is created next to it and dropped afterwards. The default run takes well under a minute.

Usage: .venv/bin/python bench/keys_bench.py [--keys 100000] [--paste-bytes 1000000] [--runs 30]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import statistics
import sys
import time
import uuid
import warnings
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kw_h6")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402

from project.actors import SYSTEM  # noqa: E402  (models need the app registry)

# DEBUG's query log would format every 5,000-row INSERT into a string: measure the app, not the log.
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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seed(n_keys: int, many: int) -> tuple[list[str], object, object]:
    """Workspaces, accounts and n_keys keys; returns some real secrets, a superuser and a workspace admin."""
    from keys.models import PLATFORM_SCOPES, ApiKey, KeyPolicy
    from workspaces.models import Role, RoleAssignment, ServiceAccount
    from workspaces.services import workspace_create

    users = get_user_model().objects
    root = users.create_user("bench-root", is_staff=True, is_superuser=True)
    admin = users.create_user("bench-admin", is_staff=True)
    workspaces = [workspace_create(actor=SYSTEM, name=f"Bench {i}", slug=f"bench-{i}") for i in range(3)]
    RoleAssignment.objects.create(user=admin, workspace=workspaces[0],
                                  role=Role.objects.get(workspace=None, name="Admin"))
    KeyPolicy.objects.create(workspace=workspaces[1], rotation_period_days=30)
    accounts = ServiceAccount.objects.bulk_create(
        ServiceAccount(workspace=workspaces[i % 3], name=f"svc-{i:04d}", remote_id=f"sa{i:026d}") for i in range(300))
    envs = {w.pk: list(w.environments.all()) for w in workspaces}
    now = timezone.now()
    kept: list[str] = []
    columns = ("uuid", "created_at", "updated_at", "workspace_id", "service_account_id", "environment_id", "name",
               "scopes", "credit_quota", "allowed_ips", "state", "hint", "digest", "remote_key_id", "activated_at",
               "overlap_until", "revoked_at", "revoke_reason", "last_used_at", "suspend_reason", "platform_hash",
               "origin")
    # COPY, not bulk_create: the seed is scaffolding, and COPY loads 100k rows several times faster.
    with connection.cursor() as cursor, cursor.connection.cursor().copy(
            f"COPY keys_apikey ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(n_keys):
            secret = "sk_" + secrets.token_hex(24)
            if len(kept) < 2000 + many:
                kept.append(secret)
            account = accounts[i % len(accounts)]
            state = RNG.choices(["active", "superseded", "revoked"], weights=[85, 5, 10])[0]
            born = now - timedelta(days=RNG.uniform(0, 200))
            scopes = "all" if RNG.random() < 0.1 else RNG.sample(PLATFORM_SCOPES, 3)
            copy.write_row((
                uuid.uuid4(), born, born, account.workspace_id, account.pk,
                RNG.choice(envs[account.workspace_id]).pk, f"key {i}", json.dumps(scopes),
                RNG.randint(1, 9) * 1000, "[]" if RNG.random() < 0.3 else '["203.0.113.0/24"]', state,
                secret[-4:], hashlib.sha256(secret.encode()).hexdigest(), f"k{i:019d}", born,
                born + timedelta(days=7) if state == "superseded" else None,
                born + timedelta(days=1) if state == "revoked" else None, "",
                born + timedelta(days=RNG.uniform(0, 30)) if RNG.random() < 0.7 else None, "", "", "keyward"))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE keys_apikey")  # the steady state autovacuum keeps: index-only counts
    assert ApiKey.objects.count() == n_keys
    return kept, root, admin


def _paste(size: int, real: list[str], n_real: int, n_unknown: int) -> str:
    """About `size` characters of log lines, with key-shaped strings sprinkled in (real and unknown)."""
    words = ["GET", "POST", "/v1/convai/agents", "200", "401", "worker", "retry", "token=[redacted]", "latency_ms=12"]
    found = RNG.sample(real, n_real) + ["sk_" + secrets.token_hex(24) for _ in range(n_unknown)]
    budget = size - sum(len(" xi-api-key=") + len(s) for s in found)
    lines, used = [], 0
    while used < budget:
        stamp = f"2026-11-20T10:{len(lines) % 60:02d}:{len(lines) % 59:02d}Z"
        line = f"{stamp} INFO svc {' '.join(RNG.choices(words, k=8))}"
        lines.append(line)
        used += len(line) + 1
    for secret in found:
        lines[RNG.randrange(len(lines))] += f" xi-api-key={secret}"
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--paste-bytes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--matches", type=int, default=2000, help="real keys in the many-matches paste")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("keys_bench needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    except OperationalError as exc:
        print(f"keys_bench needs PostgreSQL at DATABASE_URL ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    try:
        from keys import leaks

        started = time.perf_counter()
        real, root, admin = _seed(args.keys, args.matches)
        split = min(2000, len(real) // 2)  # the 200-match paste draws from the first, the many-match one is the rest
        real, others = real[:split], real[split:][:args.matches]
        print(f"seed: {args.keys:,} keys in {time.perf_counter() - started:.1f} s")

        text = _paste(args.paste_bytes, real, n_real=200, n_unknown=2000)
        print(f"paste: {len(text):,} characters, 2,200 key-shaped strings (200 of them real keys)")
        extract = []
        for _ in range(5):
            t0 = time.perf_counter()
            leaks.extract(text)
            extract.append((time.perf_counter() - t0) * 1000)
        print(f"leak check extract p50: {statistics.median(extract):.1f} ms")
        unknown = _paste(args.paste_bytes, real, n_real=0, n_unknown=2200)
        timings = []
        for _ in range(7):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                report = leaks.leak_check(actor=root, text=unknown)
                timings.append((time.perf_counter() - t0) * 1000)
        assert not report.matches and report.candidates == 2200
        print(f"leak check, no match p50 / p95: {statistics.median(timings):.0f} / {_percentile(timings, 0.95):.0f} ms "
              f"({len(ctx)} queries: digest lookups in IN batches of {leaks.BATCH})")
        timings, queries = [], 0
        for _ in range(7):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                report = leaks.leak_check(actor=root, text=text)
                timings.append((time.perf_counter() - t0) * 1000)
            queries = len(ctx)
        assert len(report.matches) == 200, len(report.matches)
        print(f"leak check p50 / p95: {statistics.median(timings):.0f} / {_percentile(timings, 0.95):.0f} ms "
              f"(first run, raising 200 alerts: {timings[0]:.0f} ms)")
        print(f"leak check queries: {queries} (200 matches: one audit event each; raised alerts found in one query)")
        if others:
            many = _paste(args.paste_bytes, others, n_real=len(others), n_unknown=200)
            timings, counts = [], []
            for _ in range(2):
                with CaptureQueriesContext(connection) as ctx:
                    t0 = time.perf_counter()
                    report = leaks.leak_check(actor=root, text=many)
                    timings.append((time.perf_counter() - t0) * 1000)
                counts.append(len(ctx))
            assert len(report.matches) == len(others), len(report.matches)
            print(f"leak check, {len(others):,} matches first / again: {timings[0]:.0f} / {timings[1]:.0f} ms")
            print(f"leak check queries, {len(others):,} matches: {counts[0]} first, {counts[1]} again")

        url = reverse("admin:keys_apikey_changelist")
        for who, user, query in (("superuser, all 100k", root, ""), ("workspace admin", admin, ""),
                                 ("superuser, flag=overdue", root, "?flag=overdue")):
            client = Client()
            client.force_login(user)
            client.get(url + query)  # warm-up
            times, counts = [], set()
            for _ in range(args.runs):
                with CaptureQueriesContext(connection) as ctx:
                    t0 = time.perf_counter()
                    response = client.get(url + query)
                    times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.status_code
                counts.add(len(ctx))
            print(f"key list ({who}) p50 / p95: {statistics.median(times):.0f} / {_percentile(times, 0.95):.0f} ms")
            print(f"key list ({who}) queries: {', '.join(map(str, sorted(counts)))}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
