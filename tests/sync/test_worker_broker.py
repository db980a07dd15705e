"""One real worker on a real broker (Redis), draining the outbox to an emulator on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F

from agents import services
from agents.models import Agent
from workspaces.models import PlatformAccount

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.broker]


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({type(exc).__name__}): real-broker test skipped")


def _database_url_or_skip() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    if db["ENGINE"].endswith("sqlite3") and db["NAME"] and "memory" not in str(db["NAME"]):
        return f"sqlite:///{db['NAME']}"
    pytest.skip("the worker process needs a database it can share: set DATABASE_URL to PostgreSQL")


def test_real_worker_on_redis_syncs_a_committed_change(workspace, owner, monkeypatch):
    _redis_or_skip()
    # Only the real worker may drain: no in-process nudge.
    monkeypatch.setattr("project.sync.services._kick", lambda: None)
    database_url = _database_url_or_skip()
    from project.celery import app
    from project.platform.emulator import Emulator

    emulator = Emulator(api_key="worker-test-key")
    server = emulator.serve(host="127.0.0.1", port=0)
    # The worker reaches the platform through the workspace's platform account: point it at this emulator.
    PlatformAccount.objects.filter(pk=workspace.platform_account_id).update(
        base_url=server.url, api_key="worker-test-key", key_version=F("key_version") + 1)
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": REDIS_URL,
           "PLATFORM_API_URL": server.url, "PLATFORM_API_KEY": "worker-test-key", "DEBUG": "true"}
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "solo", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        agent = services.agent_create(actor=owner, workspace=workspace, name="Over Redis", auth_mode="allowlist",
                                      allowlist=["voice.example.com"])
        app.conf.task_always_eager = False
        with app.connection_for_write(REDIS_URL) as conn:
            app.send_task("sync.drain_outbox", connection=conn)
        deadline = time.monotonic() + 45
        remote_id = ""
        while time.monotonic() < deadline and not remote_id:
            remote_id = Agent.objects.get(pk=agent.pk).remote_id
            if worker.poll() is not None:
                break
            time.sleep(0.2)
        if not remote_id:
            worker.terminate()
            output = worker.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"the worker did not sync the agent in time; worker output:\n{output[-3000:]}")
        [remote] = [a for a in emulator.state_snapshot()["agents"] if a["agent_id"] == remote_id]
        assert remote["platform_settings"]["auth"]["allowlist"] == [{"hostname": "voice.example.com"}]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.shutdown()
