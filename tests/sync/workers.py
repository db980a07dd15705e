"""Infrastructure of the sync tests, not object builders (those are in tests/factories.py): real services
(PostgreSQL, Redis, RabbitMQ) or a printed skip, Celery worker processes, publishing to a real broker, and polling
with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# Database numbers 10-12 belong to these tests (the lead's worker test uses 13).
REDIS_FAULT_URL = os.environ.get("TEST_SYNC_REDIS_URL", "redis://127.0.0.1:6379/10")
REDIS_BROKER_DOWN_URL = os.environ.get("TEST_SYNC_REDIS_URL_2", "redis://127.0.0.1:6379/11")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
EMULATOR_KEY = "sync-fault-test-key"


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05,
               on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(every)


def database_url_for_workers() -> str:
    """The test database as a URL another process can use: PostgreSQL only (an in-memory SQLite is private)."""
    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("worker-process tests need PostgreSQL (the test database is SQLite in memory); "
                    "set DATABASE_URL=postgres://...")
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_or_skip(url: str) -> str:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {url} ({type(exc).__name__}): real-broker test skipped")
    return url


def rabbitmq_problem(url: str) -> str | None:
    """None when RabbitMQ answers, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return type(exc).__name__
    return None


def rabbitmq_or_skip(url: str) -> str:
    problem = rabbitmq_problem(url)
    if problem:
        pytest.skip(f"RabbitMQ not reachable at {url} ({problem}): real-broker test skipped")
    return url


def broker_or_skip(name: str) -> str:
    return redis_or_skip(REDIS_FAULT_URL) if name == "redis" else rabbitmq_or_skip(RABBITMQ_URL)


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def purge_broker(url: str, queue: str) -> None:
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()  # our own database number
        return
    from kombu import Connection

    with Connection(url, connect_timeout=2) as conn:
        try:
            conn.default_channel.queue_delete(queue)
        except Exception:  # noqa: S110 - a queue that was never declared is fine
            pass


def worker_env(*, database_url: str, broker_url: str, queue: str, platform_url: str, **extra: Any) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url,
           "CELERY_TASK_DEFAULT_QUEUE": queue, "PLATFORM_API_URL": platform_url, "PLATFORM_API_KEY": EMULATOR_KEY,
           "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "project.settings", "LOG_LEVEL": "WARNING"}
    env.update({name: str(value) for name, value in extra.items()})
    return env


class Workers:
    """Celery worker processes started by one test, each in its own process group, stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, env: dict[str, str], *, beat: bool = False) -> subprocess.Popen:
        argv = [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "solo", "-n", f"{name}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
        if beat:
            argv += ["-B", "--schedule", str(self.tmp_path / f"beat-{name}")]
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and any child it made (the embedded beat)
        proc.wait(timeout=10)

    def output(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def outputs(self) -> str:
        return "\n".join(f"--- worker {name} ---\n{self.output(name)}" for name in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGQUIT)  # Celery's cold shutdown: the test is over, nothing to finish
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@contextmanager
def celery_publishing_to(broker_url: str) -> Iterator[Any]:
    """Point this process's Celery app at ``broker_url`` for real publishing (tests run tasks eagerly)."""
    from project.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager)

    def reset_pools() -> None:
        from kombu import pools

        # app._pool is kombu's process-wide pool for the broker URL: closing it alone leaves a closed pool in
        # kombu's registry, and every later publish to that URL (even an eager task's) fails with "Acquire on
        # closed pool". reset() closes and forgets them all.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url, app.conf.task_always_eager = broker_url, False
    reset_pools()
    try:
        yield app
    finally:
        reset_pools()
        app.conf.broker_url, app.conf.task_always_eager = saved
