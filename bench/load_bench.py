#!/usr/bin/env python
"""The session API under concurrent load, on the production server (gunicorn, as the Dockerfile runs it), against
the platform emulator on loopback; and the platform call it wraps, hit directly under the same load. Prints:

    server: gunicorn, W workers x T threads                the configuration measured
    session API: N sessions/s (p50 X ms, p99 Y ms)          C concurrent clients for S seconds, keep-alive
    platform call alone: N calls/s (p50 X ms, p99 Y ms)     the same clients on the emulator's signed-URL call
    session / platform call: R× per request                 time per request under the same load (goal <= 2.5x)
    CPU per session: server X ms, database Y ms, ...        where each phase's CPU time went, per request (from
                                                            /proc: the server's workers, PostgreSQL's processes,
                                                            the emulator, the clients)
    limits exact: granted G of N (limit L)                  a key with a session quota of L, driven past it

Loopback only, bounded in time (default 8 s per phase, under a minute in all). Needs PostgreSQL: DATABASE_URL
names a server (default postgres://postgres@127.0.0.1:5432/postgres); a throwaway database is made and dropped.

Usage: .venv/bin/python bench/load_bench.py [--clients 8] [--seconds 8] [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cpu_split  # bench/cpu_split.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_KEY = "load-bench-platform-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_emulator(ports: multiprocessing.Queue) -> None:
    sys.path.insert(0, str(ROOT))
    from project.platform.emulator import Emulator
    from project.platform.emulator.server import _Handler

    _Handler.disable_nagle_algorithm = True  # see broker_bench: measure the call, not the delayed ACK
    ports.put(Emulator(api_key=PLATFORM_KEY).serve().url)
    threading.Event().wait()


def _client(url: str, headers: dict, body: bytes | None, deadline: float, out: multiprocessing.Queue) -> None:
    import httpx

    timings, codes = [], {}
    with httpx.Client(headers=headers, timeout=10) as http:
        begun = os.times()  # the loop's CPU, not the import's
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            response = http.post(url, content=body) if body is not None else http.get(url)
            timings.append((time.perf_counter() - t0) * 1000)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
        usage = os.times()
    out.put((timings, codes, usage.user + usage.system - begun.user - begun.system))


def _drive(url: str, headers: dict, body: bytes | None, clients: int,
           seconds: float) -> tuple[float, list, dict, float]:
    """``clients`` processes hitting ``url`` for ``seconds``: (requests per second, latencies, status counts, the
    clients' CPU seconds)."""
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = context.Queue()
    started = time.monotonic()
    procs = [context.Process(target=_client, args=(url, headers, body, started + seconds, out))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    timings, codes, cpu = [], {}, 0.0
    for _ in procs:
        t, c, used = out.get(timeout=seconds + 60)
        timings += t
        cpu += used
        for code, n in c.items():
            codes[code] = codes.get(code, 0) + n
    for proc in procs:
        proc.join()
    return len(timings) / (time.monotonic() - started), timings, codes, cpu


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _seed(platform_url: str, limit: int) -> tuple[str, str, str]:
    """A workspace, a signed agent on the emulator, a key with (practically) no limit and one with ``limit``
    sessions: (agent remote id, unlimited key, limited key)."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db.models import F

    from agents import services as agent_services
    from broker import services
    from project.actors import SYSTEM
    from project.sync.services import outbox_drain
    from workspaces.models import PlatformAccount, Role, RoleAssignment, ServiceAccount
    from workspaces.services import workspace_create
    from workspaces.services.platform_accounts import default_account

    call_command("migrate", verbosity=0, interactive=False)
    account = default_account()
    PlatformAccount.objects.filter(pk=account.pk).update(base_url=platform_url, api_key=settings.PLATFORM_API_KEY,
                                                         key_version=F("key_version") + 1)
    workspace = workspace_create(actor=SYSTEM, name="Load", slug="load")
    agent = agent_services.agent_create(actor=SYSTEM, workspace=workspace, name="Support", auth_mode="signed")
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id, "the agent did not reach the emulator"
    backend = ServiceAccount.objects.create(workspace=workspace, name="web-backend")
    RoleAssignment.objects.create(service_account=backend, workspace=workspace,
                                  role=Role.objects.get(workspace=None, name="Developer"))
    keys = [services.broker_key_issue(actor=SYSTEM, workspace=workspace, service_account=backend,
                                      environment=workspace.environments.get(name="prod"), name=name, agents=[agent],
                                      rate_limit_per_minute=1_000_000, session_quota=quota).secret
            for name, quota in (("load", 100_000_000), ("limited", limit))]
    return agent.remote_id, keys[0], keys[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: gunicorn.conf.py's)")
    parser.add_argument("--limit", type=int, default=20, help="session quota of the key driven past its limit")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not server.startswith(("postgres://", "postgresql://")):
        print("load_bench needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    import psycopg

    base = server.rsplit("/", 1)[0]
    name = f"kw_load_bench_{os.getpid()}"
    admin = base.replace("postgres://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    context = multiprocessing.get_context("fork")
    ports: multiprocessing.Queue = context.Queue()
    emulator = context.Process(target=_serve_emulator, args=(ports,), daemon=True)
    emulator.start()
    platform_url = ports.get(timeout=30)
    # Production settings (DEBUG off), generated for this run only.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"{base}/{name}", "DEBUG": "false",
           "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "127.0.0.1",
           "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
           "PLATFORM_API_URL": platform_url, "PLATFORM_API_KEY": PLATFORM_KEY, "LOG_LEVEL": "WARNING",
           "CELERY_TASK_ALWAYS_EAGER": "true", "DJANGO_SETTINGS_MODULE": "project.settings"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    gunicorn = None
    try:
        agent_id, secret, limited = _seed(platform_url, args.limit)
        from django.db import connections

        connections.close_all()
        port = _free_port()
        # The production configuration (gunicorn.conf.py), on loopback; its access log is not what is measured.
        config: dict = {}
        exec((ROOT / "gunicorn.conf.py").read_text(), config)  # noqa: S102 (the project's own file)
        workers, threads = args.workers or config["workers"], args.threads or config["threads"]
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "project.wsgi:application", "-c", str(ROOT / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
             "--log-level", "warning"], cwd=ROOT,
            # its access log and the 429 warnings of the limits phase are not what is measured
            env={**env, "WEB_ACCESS_LOG": "/dev/null", "LOG_LEVEL": "ERROR"},
            stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/api/v1/agents/{agent_id}/session"
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
                   "X-Forwarded-Proto": "https"}  # as behind the TLS-terminating proxy production runs behind
        body = b'{"end_user_id": "load-user"}'
        import httpx

        deadline = time.monotonic() + 60
        while True:  # up, and every worker warmed (its connections, the first request's imports)
            try:
                if httpx.post(url, headers=headers, content=body, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or gunicorn.poll() is not None:
                raise SystemExit("gunicorn did not serve the session API")
            time.sleep(0.2)
        _drive(url, headers, body, args.clients, 1.0)
        print(f"server: gunicorn, {workers} workers x {threads} threads; load average "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
        split = cpu_split.Split({"server": lambda: cpu_split.tree(gunicorn.pid),
                                 "database": lambda: cpu_split.processes("postgres"),
                                 "emulator": lambda: [emulator.pid]})
        split.start()
        rate, timings, codes, client_cpu = _drive(url, headers, body, args.clients, args.seconds)
        if set(codes) != {200}:
            raise SystemExit(f"session API answered {codes}")
        print(f"session API: {rate:.0f} sessions/s (p50 {_pct(timings, 0.5):.1f} ms, p99 {_pct(timings, 0.99):.1f} "
              f"ms) with {args.clients} clients", flush=True)
        session_cpu = split.line(len(timings), unit="session", seconds=len(timings) / rate,
                                 extra={"clients": client_cpu})
        platform = f"{platform_url}/v1/convai/conversation/get-signed-url?agent_id={agent_id}"
        split.start()
        p_rate, p_timings, p_codes, p_client_cpu = _drive(platform, {"xi-api-key": PLATFORM_KEY}, None, args.clients,
                                                         args.seconds)
        if set(p_codes) != {200}:
            raise SystemExit(f"the emulator answered {p_codes}")
        print(f"platform call alone: {p_rate:.0f} calls/s (p50 {_pct(p_timings, 0.5):.1f} ms, p99 "
              f"{_pct(p_timings, 0.99):.1f} ms) with {args.clients} clients", flush=True)
        platform_cpu = split.line(len(p_timings), unit="call", seconds=len(p_timings) / p_rate,
                                  extra={"clients": p_client_cpu})
        print(f"session / platform call: {p_rate / rate:.2f}× per request (goal <= 2.5×)", flush=True)
        if session_cpu:
            print(f"CPU per session: {session_cpu}", flush=True)
            print(f"CPU per platform call alone: {platform_cpu}", flush=True)
        limited_headers = {**headers, "Authorization": f"Bearer {limited}"}
        _, l_timings, l_codes, _ = _drive(url, limited_headers, body, args.clients, max(2.0, args.seconds / 4))
        granted = l_codes.get(200, 0)
        exact = granted == min(len(l_timings), args.limit)
        print(f"limits exact: granted {granted} of {len(l_timings)} (limit {args.limit}): "
              f"{'yes' if exact else 'NO'}; others {dict(sorted((k, v) for k, v in l_codes.items() if k != 200))}",
              flush=True)
        print(f"load average: {os.getloadavg()[0]:.2f}", flush=True)
        return 0 if exact else 1
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        emulator.kill()
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
