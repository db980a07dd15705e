#!/usr/bin/env python
"""The main admin changelists at scale on PostgreSQL (a script, not a test): p50/p95 and queries per page.

Creates its own database (keyward_bench, dropped at the end unless --keep) on the PostgreSQL server that
DATABASE_URL names (default: the local one at 127.0.0.1:5432), migrates it and seeds, by COPY, 100,000 API keys,
10,000 agents, 100,000 audit events, 50,000 sync jobs, 10,000 alerts and 2,000 secrets over 5 workspaces (times
--rows-scale), then VACUUM ANALYZE (the steady state autovacuum keeps). Each page is fetched through the whole
Django stack with the test client, as
  superuser        sees every workspace, all the rows;
  workspace admin  Admin of one workspace (a fifth of the rows): the scoped path;
both with a session that passed two-factor sign-in (the device is checked on every request, as in
production). Per page and person: p50 and p95 over --runs requests (after 2 warm-ups, timed without query
capture), the queries of one more request, and EXPLAIN of each of its SELECTs: a Seq Scan on a large table
(at least 5,000 rows) is printed, since an unfiltered page must not read a whole large table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keyward .venv/bin/python bench/admin_bench.py
    ... --rows-scale 10      # 1,000,000 keys and audit events (seeding takes a few minutes more)

The default run takes under a minute on 2 cores; --rows-scale 10 about 6 minutes (mostly seeding).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "keyward_bench"  # the default of --database
LARGE_ROWS = 5_000
RNG = random.Random(20261123)  # noqa: S311 - synthetic data
PAGES = (("agents", "admin:agents_agent_changelist"), ("API keys", "admin:keys_apikey_changelist"),
         ("audit events", "admin:audit_auditevent_changelist"), ("sync jobs", "admin:sync_syncjob_changelist"),
         ("alerts", "admin:alerts_alert_changelist"), ("secrets", "admin:secrets_app_secret_changelist"))


def _server_url(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def _admin_connection(url: str) -> Any:
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                           user=parts.username or "postgres", password=parts.password, dbname="postgres",
                           autocommit=True, connect_timeout=5)


def create_database(url: str, name: str) -> None:
    with _admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    with _admin_connection(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- seeding ------------------------------------------------------------------------------------------------
def copy_rows(model: Any, rows: Any) -> int:
    """COPY unsaved instances into the model's table (ids from the sequence). Values go through each field's
    own conversion (JSON, encryption), so the rows are what the ORM would write."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    now = _now()
    count = 0
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(
            f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
        for obj in rows:
            values = []
            for f in fields:
                value = getattr(obj, f.attname)
                if value is None and (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)):
                    value = now
                values.append(f.get_db_prep_save(value, connection))
            copy.write_row(values)
            count += 1
    return count


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()


def seed(scale: float) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from agents.models import Agent
    from keys.models import PLATFORM_SCOPES, ApiKey
    from project.actors import SYSTEM
    from project.alerts.models import Alert
    from project.audit.models import AuditEvent
    from project.sync.models import SyncJob
    from secrets_app.models import Secret
    from workspaces.models import Role, RoleAssignment, ServiceAccount
    from workspaces.services import workspace_create

    users = get_user_model().objects
    root = users.create_user("bench-root", is_staff=True, is_superuser=True)
    admin = users.create_user("bench-admin", is_staff=True)
    workspaces = [workspace_create(actor=SYSTEM, name=f"Bench {i}", slug=f"bench-{i}") for i in range(5)]
    RoleAssignment.objects.create(user=admin, workspace=workspaces[0], role=Role.objects.get(workspace=None,
                                                                                             name="Admin"))
    devices = {u.pk: TOTPDevice.objects.create(user=u, name="phone", confirmed=True) for u in (root, admin)}
    accounts = ServiceAccount.objects.bulk_create(
        ServiceAccount(workspace=workspaces[i % 5], name=f"svc-{i:04d}", remote_id=f"sa{i:026d}")
        for i in range(300))
    envs = {w.pk: list(w.environments.all()) for w in workspaces}
    now = _now()
    counts: dict[str, int] = {}
    started = time.perf_counter()

    def keys() -> Any:
        for i in range(int(100_000 * scale)):
            account = accounts[i % len(accounts)]
            state = RNG.choices(["active", "superseded", "revoked"], weights=[85, 5, 10])[0]
            born = now - timedelta(days=RNG.uniform(0, 200))
            digest = hashlib.sha256(f"bench-secret-{i}".encode()).hexdigest()
            yield ApiKey(
                created_at=born, updated_at=born, workspace_id=account.workspace_id, service_account=account,
                environment=RNG.choice(envs[account.workspace_id]), name=f"key {i}",
                scopes="all" if RNG.random() < 0.1 else RNG.sample(PLATFORM_SCOPES, 3),
                credit_quota=RNG.randint(1, 9) * 1000,
                allowed_ips=[] if RNG.random() < 0.3 else ["203.0.113.0/24"], state=state, hint=digest[-4:],
                digest=digest, remote_key_id=f"k{i:019d}", activated_at=born,
                overlap_until=born + timedelta(days=7) if state == "superseded" else None,
                revoked_at=born + timedelta(days=1) if state == "revoked" else None,
                last_used_at=born + timedelta(days=RNG.uniform(0, 30)) if RNG.random() < 0.7 else None)

    def agents() -> Any:
        for i in range(int(10_000 * scale)):
            mode = RNG.choices(["signed", "allowlist", "public"], weights=[6, 3, 1])[0]
            yield Agent(workspace=workspaces[i % 5], name=f"agent {i:07d}", auth_mode=mode,
                        allowlist=[f"app{i}.example.com", "localhost:3000"] if mode == "allowlist" else [],
                        max_duration_seconds=300 if mode == "public" else None, remote_id=f"agent_{i:024x}")

    def audit_events() -> Any:
        actions = ["agent.update", "api_key.issue", "api_key.rotate", "secret.update", "role.assign"]
        for i in range(int(100_000 * scale)):
            at = now - timedelta(minutes=RNG.uniform(0, 90 * 24 * 60))
            yield AuditEvent(created_at=at, actor_type="user", actor_user_id=admin.pk, actor_label="bench-admin",
                             action=RNG.choice(actions), object_type="agents.agent", object_id=str(i),
                             object_repr=f"agent {i}", workspace_id=workspaces[i % 5].pk,
                             changes={"name": ["before", "after"]}, ip="127.0.0.1")

    def sync_jobs() -> Any:
        for i in range(int(50_000 * scale)):
            state = "pending" if i % 50 == 0 else ("failed" if i % 97 == 0 else "done")
            at = now - timedelta(minutes=RNG.uniform(0, 30 * 24 * 60))
            yield SyncJob(created_at=at, updated_at=at, kind="agent", object_id=str(i), object_repr=f"agent {i}",
                          workspace_id=workspaces[i % 5].pk, op="upsert", state=state, attempts=1,
                          next_attempt_at=at, finished_at=at if state == "done" else None)

    def alerts() -> Any:
        for i in range(int(10_000 * scale)):
            at = now - timedelta(minutes=RNG.uniform(0, 60 * 24 * 60))
            yield Alert(created_at=at, updated_at=at, workspace=workspaces[i % 5], kind="usage_spike",
                        severity=RNG.choice(["low", "medium", "high"]), state=RNG.choice(["open", "resolved"]),
                        title=f"usage spike on key {i}", dedup_key=f"bench-{i}", object_type="keys.apikey",
                        object_id=str(i), object_repr=f"key {i}")

    def secrets() -> Any:
        for i in range(int(2_000 * scale)):
            yield Secret(workspace=workspaces[i % 5], name=f"secret_{i:06d}", value=f"bench-value-{i}",
                         last_changed_at=now, last_changed_by=admin)

    for label, model, rows in (("API keys", ApiKey, keys()), ("agents", Agent, agents()),
                               ("audit events", AuditEvent, audit_events()), ("sync jobs", SyncJob, sync_jobs()),
                               ("alerts", Alert, alerts()), ("secrets", Secret, secrets())):
        counts[label] = copy_rows(model, rows)
    seeded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"root": root, "admin": admin, "devices": devices, "counts": counts, "seconds": seeded,
            "vacuumed": time.perf_counter() - started - seeded}


# --- measuring ----------------------------------------------------------------------------------------------
def signed_in(user: Any, device: Any) -> Any:
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def large_tables() -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                       "AND reltuples >= %s", [LARGE_ROWS])
        return {row[0] for row in cursor.fetchall()}


def seq_scans(queries: list[str], large: set[str]) -> list[tuple[str, str]]:
    """(plan line, query) for each Seq Scan on a large table in the plans of these queries."""
    from django.db import connection

    found = []
    with connection.cursor() as cursor:
        for sql in queries:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN " + sql)
            for (line,) in cursor.fetchall():
                if "Seq Scan on" in line and line.split("Seq Scan on", 1)[1].split()[0].strip('"') in large:
                    found.append((line.strip(), sql))
    return found


TRANSACTION_MARKERS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def measure(client: Any, url: str, runs: int) -> tuple[list[float], list[str]]:
    """Timings of `runs` requests, then the statements of one more (BEGIN/COMMIT around the session write are
    left out, as the tests leave out their savepoints: they are transaction control, not queries)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        assert client.get(url).status_code == 200, url
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return times, [q["sql"] for q in captured.captured_queries
                   if not q["sql"].lstrip().upper().startswith(TRANSACTION_MARKERS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-scale", type=float, default=1,
                        help="multiply every table's rows (10: 1M keys; 0.01, the least, for a quick check)")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page and person")
    parser.add_argument("--database", default=BENCH_DB, metavar="NAME",
                        help=f"the database to create, fill and drop (default {BENCH_DB}); two runs on one server "
                             "need two names")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--show-queries", action="store_true", help="print each page's SQL")
    args = parser.parse_args()
    # Like scripts/test.sh: DATABASE_URL names the server, else the local PostgreSQL.
    url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        print("admin_bench needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/any (it creates and drops "
              f"its own database, {args.database}, on that server)", file=sys.stderr)
        return 2
    if args.rows_scale < 0.01 or args.runs < 1:
        parser.error("--rows-scale must be at least 0.01 and --runs at least 1")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.database):
        parser.error("--database takes a lowercase name of letters, digits and underscores")
    try:
        create_database(url, args.database)
    except Exception as exc:  # psycopg's OperationalError and friends: say what and where, then stop
        print(f"admin_bench cannot create {args.database} at {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    os.environ["DATABASE_URL"] = _server_url(url, args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic for a bench
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.urls import reverse

    settings.DEBUG = False  # no query log outside the one captured request per page
    try:
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"database {args.database} migrated in {time.perf_counter() - started:.0f} s")
        world = seed(args.rows_scale)
        print("seeded " + ", ".join(f"{n:,} {label}" for label, n in world["counts"].items())
              + f" in {world['seconds']:.0f} s (VACUUM ANALYZE {world['vacuumed']:.0f} s); 5 workspaces, the "
              "workspace admin's holds a fifth")
        large = large_tables()
        people = (("superuser", world["root"]), ("workspace admin", world["admin"]))
        rows, plans = [], []
        for page, name in PAGES:
            path = reverse(name)
            for who, user in people:
                times, queries = measure(signed_in(user, world["devices"][user.pk]), path, args.runs)
                scans = seq_scans(queries, large)
                rows.append((page, who, len(queries), statistics.median(times), _percentile(times, 0.95),
                             len(scans)))
                plans += [(page, who, line, sql) for line, sql in scans]
                if args.show_queries:
                    print(f"-- {page} ({who})", *queries, sep="\n   ")
        print(f"\n{'page':<14} {'who':<16} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8}  seq scans on large tables")
        for page, who, n_queries, p50, p95, n_scans in rows:
            print(f"{page:<14} {who:<16} {n_queries:>7} {p50:>8.1f} {p95:>8.1f}  {n_scans or 'none'}")
        print(f"\n{args.runs} timed requests per row after 2 warm-ups; large tables (>= {LARGE_ROWS:,} rows): "
              + ", ".join(sorted(large)))
        for page, who, line, sql in plans:
            print(f"SEQ SCAN {page} ({who}): {line}\n    {sql[:300]}")
        if not plans:
            print("EXPLAIN: no Seq Scan on a large table in any page's queries")
    finally:
        connections.close_all()
        if not args.keep:
            drop_database(url, args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
