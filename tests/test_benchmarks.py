"""The benchmark scripts still run, at tiny sizes: a schema change that breaks one is caught here, not on the day
its figures are needed. The figures themselves are not checked: speed is measured by the scripts (`make bench`),
never asserted in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Two test runs on one server (two checkouts) must not fill and drop each other's benchmark databases.
_OWN = os.environ.get("TEST_DATABASE_NAME", "").lower()


def _bench_database(name: str) -> str:
    return f"{name}_{_OWN}"[:63] if _OWN else name


def _postgres_server() -> str | None:
    """A PostgreSQL server URL (no database part) if one answers: the tests' own, else the local one."""
    url = os.environ.get("DATABASE_URL", "")
    if url and not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2).close()
    except psycopg.Error:
        return None
    return "postgres://postgres@127.0.0.1:5432"


def _run(script: str, args: list[str], database_url: str | None) -> str:
    # Not the suite's TEST_DATABASE_NAME either: a bench that makes a throwaway test database (keys, dashboard) would
    # take that name from the settings, drop the suite's own database and make it anew (its databases are named
    # from DATABASE_URL, which carries this run's suffix).
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_NAME")}
    if database_url:
        env["DATABASE_URL"] = database_url
    result = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize(("script", "args", "lines"), [
    ("broker_bench.py", ["--verify", "200", "--sessions", "20", "--tokens", "10"],
     ["verify p50:", "verify:", "password-hasher verify:", "session p50:", "session overhead p50:",
      "single-use token p50:", "token refresh p50:"]),
    ("sync_bench.py", ["--jobs", "200", "--naive-jobs", "20"], ["one worker:", "two workers:", "naive:"]),
    ("accounts_bench.py", ["--jobs", "30"], ["healthy alone:", "healthy beside a failing account:", "ratio:"]),
    ("faults_bench.py", ["--agents", "30", "--lease", "3"],
     ["dead jobs:", "duplicates:", "remote equal to local:", "platform calls per retried create:"]),
    ("discovery_bench.py", ["--agents", "30", "--secrets", "40", "--keys", "50"],
     ["discovery:", "platform calls:", "adoption:", "guardrail pass:", "discovery + adoption:", "peak memory:"]),
    ("notify_bench.py", ["--alerts", "10"], ["raise pass:", "deliveries:", "deliveries/s:", "outbox empty after:"]),
])
def test_the_embedded_benchmarks_run(script, args, lines):
    out = _run(script, args, None)  # a temporary SQLite file of their own
    for line in lines:
        assert f"\n{line} " in f"\n{out}", out


@pytest.mark.parametrize(("script", "args", "database", "lines"), [
    ("keys_bench.py", ["--keys", "600", "--paste-bytes", "300000", "--runs", "2"], "kw_bench_smoke_keys",
     ["leak check p50 / p95:", "leak check queries:", "leak check, 300 matches first / again:"]),
    ("dashboard_bench.py", ["--sizes", "10", "--runs", "2"], "kw_bench_smoke_dashboard",
     ["dashboard (superuser, all workspaces, 10 keys) queries:", "credit guard over 10 keys:"]),
    ("admin_bench.py", ["--rows-scale", "0.01", "--runs", "1", "--database", _bench_database("keyward_bench")],
     "postgres",  # makes and drops its --database
     ["seeded 1,000 API keys", "API keys       workspace admin", "EXPLAIN:"]),
    ("load_bench.py", ["--clients", "2", "--seconds", "1", "--limit", "3"], "postgres",  # makes and drops its own
     ["server: gunicorn", "session API:", "platform call alone:", "session / platform call:", "limits exact:"]),
])
def test_the_postgresql_benchmarks_run(script, args, database, lines):
    server = _postgres_server()
    if server is None:
        pytest.skip(f"{script} needs PostgreSQL, and none answers at 127.0.0.1:5432")
    out = _run(script, args, f"{server}/{_bench_database(database) if database != 'postgres' else database}")
    for line in lines:
        assert line in out, out


@pytest.mark.broker
def test_the_end_to_end_sync_benchmark_runs():
    """sync_bench --e2e at a tiny size: real Celery workers on Redis (a database and queue of their own)."""
    server = _postgres_server()
    redis_url = os.environ.get("SYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")  # not flushed by other tests
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"sync_bench --e2e needs Redis at {redis_url} ({type(exc).__name__})")
    if server is None:
        pytest.skip("sync_bench --e2e needs PostgreSQL, and none answers at 127.0.0.1:5432")
    import psycopg

    name = _bench_database("kw_bench_smoke_sync")
    with psycopg.connect(f"{server.replace('postgres://', 'postgresql://')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        out = _run("sync_bench.py", ["--jobs", "50", "--naive-jobs", "10", "--e2e", "--e2e-jobs", "60",
                                     "--producers", "2", "--redis", redis_url], f"{server}/{name}")
    finally:
        with psycopg.connect(f"{server.replace('postgres://', 'postgresql://')}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for line in ("e2e one worker:", "e2e two workers:", "queue empty after:", "e2e two / one:",
                 "e2e backlog one worker:", "e2e backlog two workers:", "e2e backlog two / one:"):
        assert f"\n{line} " in f"\n{out}", out
