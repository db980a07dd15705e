#!/usr/bin/env python
"""Benchmark of the session broker (a script, not a test). Prints one figure a line:

    verify p50: N us               broker-key verification on the database path (shape, digest, one indexed lookup)
    verify: N/s                    verifications per second, one process, one thread
    password-hasher verify: N/s    the same key checked with Django's default password hasher, for comparison
    session p50: N ms              POST /api/v1/agents/<agent>/session through the whole Django stack, against the
                                   platform emulator on loopback (the platform call included)
    platform call p50: N ms        the platform call alone, over the same loopback HTTP
    session overhead p50: N ms     per request, session time minus its own platform call
    single-use token p50: N ms     POST /api/v1/tokens/tts_websocket the same way (the platform mint included)
    token refresh p50: N ms        POST /api/v1/platform/token-refresh as the platform's tool call makes it (the
                                   end user's token is far from expiry: Keyward's own path, no provider call)

Targets (issue 10): verify p50 <= 1000 us on the database path, >= 1,000 verifications/s, session overhead beyond the
platform call < 2 ms p50. The default run takes well under 50 seconds.

Database: DATABASE_URL if set (a throwaway test database is created next to it and dropped afterwards), otherwise a
temporary SQLite file. Usage: .venv/bin/python bench/broker_bench.py [--verify N] [--sessions N] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_tmpdir: str | None = None
if not os.environ.get("DATABASE_URL"):
    _tmpdir = tempfile.mkdtemp(prefix="keyward-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmpdir}/bench.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "ERROR")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"  # the outbox drains in-process: no broker needed

import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402

from project.actors import SYSTEM  # noqa: E402  (models need the app registry)

settings.DEBUG = False  # as in production: no query log kept per statement
# WhiteNoise warns when collectstatic has not run; the session API serves no static files.
warnings.filterwarnings("ignore", message="No directory at")
from django.contrib.auth.hashers import check_password, make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

BENCH_PLATFORM_KEY = "bench-platform-key-0f9e8d7c"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _database() -> tuple[str, object]:
    """Migrate a throwaway database; returns (description, teardown)."""
    if connection.vendor == "sqlite":
        call_command("migrate", verbosity=0, interactive=False)
        return f"sqlite (temporary file {settings.DATABASES['default']['NAME']})", lambda: None
    old_name = connection.settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)

    def teardown() -> None:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    return f"{connection.vendor} (throwaway database {test_name})", teardown


def _fixtures(platform_client: object) -> tuple[object, str, object]:
    from agents import services as agent_services
    from broker import services
    from project.platform.client import set_client
    from workspaces.models import Role, RoleAssignment, ServiceAccount

    set_client(platform_client)  # the eager outbox drain and the session API use it
    from workspaces.services import workspace_create

    workspace = workspace_create(actor=SYSTEM, name="Bench", slug="bench")
    agent = agent_services.agent_create(actor=SYSTEM, workspace=workspace, name="Support", auth_mode="signed")
    agent.refresh_from_db()
    if not agent.remote_id:
        from project.sync.services import outbox_drain

        outbox_drain(client=platform_client)
        agent.refresh_from_db()
    assert agent.remote_id, "the agent did not reach the emulator"
    account = ServiceAccount.objects.create(workspace=workspace, name="web-backend")
    RoleAssignment.objects.create(service_account=account, workspace=workspace,
                                  role=Role.objects.get(workspace=None, name="Developer"))
    issued = services.broker_key_issue(actor=SYSTEM, workspace=workspace, service_account=account,
                                       environment=workspace.environments.get(name="prod"), name="bench",
                                       agents=[agent], rate_limit_per_minute=1_000_000, session_quota=100_000_000,
                                       carries_vault_tokens=True)  # the token-refresh bench needs the vault right
    return agent, issued.secret, issued.key


def bench_commit(key: object, count: int = 100) -> float:
    """One no-op UPDATE in autocommit: what one statement with its commit costs on this database."""
    from broker import rows

    timings = []
    for _ in range(count):
        t0 = time.perf_counter()
        rows.execute("UPDATE broker_brokerkeyusage SET sessions_total = sessions_total WHERE key_id = %s", [key.pk])
        timings.append((time.perf_counter() - t0) * 1000)
    return statistics.median(timings)


def bench_verify(secret: str, count: int) -> tuple[float, float]:
    from broker.auth import broker_key_authenticate

    for _ in range(200):
        assert broker_key_authenticate(secret) is not None
    timings = []
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter_ns()
        broker_key_authenticate(secret)
        timings.append((time.perf_counter_ns() - t0) / 1000)
    elapsed = time.perf_counter() - started
    return statistics.median(timings), count / elapsed


def bench_password_hasher(secret: str, budget_seconds: float = 6.0) -> float:
    encoded = make_password(secret)  # Django's default hasher (PBKDF2-SHA256, Django's iteration count)
    done = 0
    started = time.perf_counter()
    while done < 3 or (time.perf_counter() - started < budget_seconds and done < 200):
        assert check_password(secret, encoded)
        done += 1
    return done / (time.perf_counter() - started)


class _TimedClient:
    """The platform client, timing each call so the session's own overhead can be separated out."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.last_ms = 0.0

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def get_signed_url(self, *args: object, **kwargs: object) -> str:
        t0 = time.perf_counter()
        try:
            return self._client.get_signed_url(*args, **kwargs)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1000

    def get_signed_url_with_conversation(self, *args: object, **kwargs: object) -> tuple[str, str]:
        t0 = time.perf_counter()
        try:
            return self._client.get_signed_url_with_conversation(*args, **kwargs)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1000


def bench_sessions(agent: object, secret: str, timed: _TimedClient, count: int) -> tuple[float, float, float]:
    """Session requests through Django's WSGI handler, the entry point a WSGI server (gunicorn) calls: every
    middleware, the view, the response; the platform call over loopback HTTP. (Django's test Client adds its
    own bookkeeping and keeps connections open whatever CONN_MAX_AGE says, so it is not used here.)"""
    import io

    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    body = b'{"end_user_id": "bench-user"}'
    base = {"REQUEST_METHOD": "POST", "PATH_INFO": f"/api/v1/agents/{agent.remote_id}/session",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {secret}"}
    statuses: list[str] = []

    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        statuses.append(status)

    def one() -> None:
        response = handler({**base, "wsgi.input": io.BytesIO(body)}, start_response)
        try:
            b"".join(response)
        finally:
            response.close()  # sends request_finished: Django's end-of-request connection handling runs
        assert statuses.pop().startswith("200"), "session request refused"

    for _ in range(30):
        one()
    totals, platform, overhead = [], [], []
    for _ in range(count):
        t0 = time.perf_counter()
        one()
        total = (time.perf_counter() - t0) * 1000
        totals.append(total)
        platform.append(timed.last_ms)
        overhead.append(total - timed.last_ms)
    return statistics.median(totals), statistics.median(platform), statistics.median(overhead)


def _wsgi_post(path: str, body: bytes, headers: dict[str, str]) -> object:
    """A POST through Django's WSGI handler, as bench_sessions makes them; returns a callable doing one."""
    import io

    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    base = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            **headers}
    statuses: list[str] = []

    def start_response(status: str, response_headers: object, exc_info: object = None) -> None:
        statuses.append(status)

    def one() -> None:
        response = handler({**base, "wsgi.input": io.BytesIO(body)}, start_response)
        try:
            b"".join(response)
        finally:
            response.close()
        status = statuses.pop()
        assert status.startswith("200"), f"{path} refused: {status}"

    return one


def _timed(one: object, count: int) -> float:
    for _ in range(20):
        one()
    timings = []
    for _ in range(count):
        t0 = time.perf_counter()
        one()
        timings.append((time.perf_counter() - t0) * 1000)
    return statistics.median(timings)


def bench_single_use_tokens(key: object, count: int) -> float:
    """A key of the same backend that may mint tts_websocket tokens (and open no session)."""
    from broker import services

    issued = services.broker_key_issue(actor=SYSTEM, workspace=key.workspace, service_account=key.service_account,
                                       environment=key.environment, name="bench speech", agents=[],
                                       token_types=["tts_websocket"], rate_limit_per_minute=1_000_000,
                                       session_quota=100_000_000)
    one = _wsgi_post("/api/v1/tokens/tts_websocket", b'{"end_user_id": "bench-user"}',
                     {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"})
    return _timed(one, count)


def bench_token_refresh(agent: object, secret: str, platform_client: object, count: int) -> float:
    """The credential webhook on (its secret pushed to the emulator), an end user with a Google token valid for an
    hour, a conversation brokered for them; then the refresh tool's calls."""
    import json
    from datetime import timedelta

    from django.utils import timezone

    from agents import services as agent_services
    from agents import webhook
    from broker import services
    from project.sync.services import outbox_drain
    from secrets_app.services import credential_store, provider_save

    agent_services.agent_credential_webhook_set(actor=SYSTEM, agent=agent, enabled=True)
    outbox_drain(client=platform_client)
    agent.refresh_from_db()
    provider = provider_save(actor=SYSTEM, workspace=agent.workspace, slug="google", name="Google",
                             token_url="https://oauth.example.invalid/token", client_id="bench",
                             client_secret="bench-client-secret")
    credential_store(actor=SYSTEM, workspace=agent.workspace, provider=provider, end_user_id="bench-user",
                     access_token="bench-access-token", refresh_token="bench-refresh-token",
                     expires_at=timezone.now() + timedelta(hours=1))
    grant = services.session_open(actor=agent.workspace.service_accounts.get(name="web-backend"),
                                  key=agent.broker_keys.get(name="bench"), agent_ref=agent.remote_id,
                                  end_user_id="bench-user")
    body = json.dumps({"conversation_id": grant.conversation_id, "agent_id": agent.remote_id,
                       "provider": "google"}).encode()
    one = _wsgi_post("/api/v1/platform/token-refresh", body,
                     {"HTTP_X_KEYWARD_WEBHOOK_SECRET": webhook.agent_secret(agent)})
    return _timed(one, count)


def _serve_emulator(ports: multiprocessing.Queue) -> None:
    from project.platform.emulator import Emulator
    from project.platform.emulator.server import _Handler

    # The emulator's stdlib server writes headers and body separately; with Nagle on, each response then waits for
    # the client's delayed ACK (~40 ms on Linux loopback), which would measure the kernel, not a platform call.
    _Handler.disable_nagle_algorithm = True
    server = Emulator(api_key=BENCH_PLATFORM_KEY).serve()  # loopback, a free port
    ports.put(server.url)
    threading.Event().wait()


def _start_emulator() -> tuple[multiprocessing.Process, str]:
    """The emulator in its own process, as the platform would be (no shared interpreter lock)."""
    context = multiprocessing.get_context("fork")
    ports: multiprocessing.Queue = context.Queue()
    process = context.Process(target=_serve_emulator, args=(ports,), daemon=True)
    process.start()
    return process, ports.get(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", type=int, default=5000, help="verifications to time (default 5000)")
    parser.add_argument("--sessions", type=int, default=300, help="session requests to time (default 300)")
    parser.add_argument("--tokens", type=int, default=300,
                        help="single-use token mints and token refreshes to time (default 300 each)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the timed session requests to FILE")
    args = parser.parse_args()

    from project.platform.client import PlatformClient, set_client

    started = time.perf_counter()
    description, teardown = _database()
    emulator, base_url = _start_emulator()
    platform_client = PlatformClient(base_url, BENCH_PLATFORM_KEY)
    timed = _TimedClient(platform_client)
    settings.PLATFORM_API_KEY = BENCH_PLATFORM_KEY
    try:
        agent, secret, key = _fixtures(platform_client)
        set_client(timed)  # type: ignore[arg-type]
        print(f"database: {description}", flush=True)
        print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
        verify_p50, verify_rate = bench_verify(secret, args.verify)
        print(f"verify p50: {verify_p50:.0f} us", flush=True)
        print(f"verify: {verify_rate:.0f}/s", flush=True)
        print(f"password-hasher verify: {bench_password_hasher(secret):.1f}/s", flush=True)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        session_p50, platform_p50, overhead_p50 = bench_sessions(agent, secret, timed, args.sessions)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        print(f"session p50: {session_p50:.2f} ms", flush=True)
        print(f"platform call p50: {platform_p50:.2f} ms", flush=True)
        print(f"session overhead p50: {overhead_p50:.2f} ms", flush=True)
        print(f"database commit p50: {bench_commit(key):.2f} ms (a granted session commits twice)", flush=True)
        print(f"single-use token p50: {bench_single_use_tokens(key, args.tokens):.2f} ms", flush=True)
        print(f"token refresh p50: {bench_token_refresh(agent, secret, platform_client, args.tokens):.2f} ms",
              flush=True)
    finally:
        set_client(None)
        platform_client.close()
        emulator.terminate()
        emulator.join(timeout=10)
        connection.close()
        teardown()
        if _tmpdir:
            shutil.rmtree(_tmpdir, ignore_errors=True)
    print(f"run time: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
