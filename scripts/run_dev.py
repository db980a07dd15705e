#!/usr/bin/env python
"""`make run`: migrate, seed the demo, start the platform emulator, a worker with its beat, and the admin.

Everything runs on embedded defaults (SQLite in var/, a filesystem broker in var/broker, the emulator on
loopback). Ctrl-C stops all of it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


DEMO_SECOND_ACCOUNT_KEY = "sk_emulator_globex_demo_key_000000000000000000002"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--emulator-port", type=int, default=8765)
    args = parser.parse_args()

    for port, what in ((args.port, "the admin"), (args.emulator_port, "the platform emulator")):
        if not port_free(args.host, port):
            print(f"Port {port} on {args.host} is taken; {what} needs it. Stop whatever uses it, or pass "
                  f"PORT=... / EMULATOR_PORT=... to make run.", file=sys.stderr)
            return 1

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    env.setdefault("PLATFORM_API_URL", f"http://127.0.0.1:{args.emulator_port}")
    env.setdefault("PLATFORM_API_KEY", "emulator-dev-key")
    # The demo runs two platform accounts side by side: Acme on the default one, Globex on its own.
    env.setdefault("KEYWARD_DEMO_SECOND_ACCOUNT_KEY", DEMO_SECOND_ACCOUNT_KEY)
    (ROOT / "var").mkdir(exist_ok=True)

    def manage(*argv: str) -> None:
        subprocess.run([PY, "manage.py", *argv], cwd=ROOT, env=env, check=True)

    manage("migrate", "--no-input", "-v", "0")

    children: list[subprocess.Popen] = []

    def spawn(argv: list[str], name: str) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        children.append(proc)
        print(f"started {name} (pid {proc.pid})")
        return proc

    def stop(*_: object) -> None:
        for proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        # The emulator keeps its accounts' objects in var/emulator/, so a restart finds what Keyward made there.
        spawn([PY, "manage.py", "run_emulator", "--host", "127.0.0.1", "--port", str(args.emulator_port),
               "--account", f"default={env['PLATFORM_API_KEY']}",
               "--account", f"globex={env['KEYWARD_DEMO_SECOND_ACCOUNT_KEY']}",
               # Globex's account already holds agents, secrets, tools and keys its team built on the platform
               # (seeded once): the tour's Discover and Adopt take them over.
               "--seed", f"globex={ROOT / 'project' / 'platform' / 'emulator' / 'demo_seed.json'}",
               "--state-dir", str(ROOT / "var" / "emulator")], "the platform emulator")
        if not wait_for_port("127.0.0.1", args.emulator_port):
            print("The emulator did not start; see the output above.", file=sys.stderr)
            return 1
        # The demo issues keys on the platform, so it runs once the emulator answers.
        seeded = subprocess.run([PY, "manage.py", "seed_demo", "--quiet"], cwd=ROOT, env=env,
                                capture_output=True, text=True)
        print(seeded.stdout, end="")
        if seeded.returncode != 0:
            print(seeded.stderr, file=sys.stderr)
            print("Creating the demo data failed; see above.", file=sys.stderr)
            return 1
        # Compare what Keyward holds with what the platform holds before anyone looks (a restarted platform,
        # objects changed on it meanwhile): the drift page is current from the first minute.
        subprocess.run([PY, "manage.py", "reconcile"], cwd=ROOT, env=env, capture_output=True, text=True)
        # One worker process with its beat: SQLite serialises writers, and the beat drains the outbox
        # every few seconds even if a nudge was lost.
        spawn([PY, "-m", "celery", "-A", "project", "worker", "-B", "--concurrency", "1", "--loglevel", "WARNING",
               "--schedule", str(ROOT / "var" / "celerybeat-schedule")], "the sync worker (with beat)")
        spawn([PY, "manage.py", "runserver", f"{args.host}:{args.port}", "--noreload"], "the admin")
        if not wait_for_port(args.host, args.port):
            print("The web server did not start; see the output above.", file=sys.stderr)
            return 1
        print()
        print(f"Keyward is running: http://{args.host}:{args.port}/admin/")
        print(seeded.stdout, end="")
        print("Press Ctrl-C to stop.")
        while all(proc.poll() is None for proc in children):
            time.sleep(1)
        print("A process stopped; shutting down the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
