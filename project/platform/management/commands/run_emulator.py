"""``manage.py run_emulator``: the platform emulator on loopback, for development and `make run`.

One or more isolated platform accounts (``--account NAME=KEY``, repeatable; by default one account answering to
PLATFORM_API_KEY). With ``--state-dir`` each account's objects are kept in ``<dir>/<name>.json`` across restarts
(written a moment after every change and on shutdown), so agents, secrets and keys Keyward made are still there
when `make run` starts again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.platform.emulator import EmulatorHub, is_loopback_host

SAVE_EVERY = 1.0  # seconds between checks for changes to write


class Command(BaseCommand):
    help = "Run the platform emulator (one or more accounts) on a loopback address until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="Port to bind (default 8765; 0 picks one).")
        parser.add_argument(
            "--api-key", dest="api_key", default=None,
            help="Admin key of the one account when --account is not given (default: settings.PLATFORM_API_KEY).")
        parser.add_argument("--account", action="append", default=[], metavar="NAME=KEY",
                            help="An isolated account answering to KEY (repeatable).")
        parser.add_argument("--state-dir", default=None, help="Keep each account's objects in DIR across restarts.")
        parser.add_argument("--seed", action="append", default=[], metavar="[NAME=]FILE",
                            help="Fill an account (the first one without NAME=) with objects \"built elsewhere\" "
                                 "from a JSON fixture, once: an account whose state was loaded is not seeded "
                                 "(repeatable).")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"]
        # Control routes (/_emulator/*) need no key, so the emulator must never be reachable off-host.
        if not is_loopback_host(host):
            raise CommandError(f"refusing to bind {host!r}: the emulator only listens on loopback addresses")
        accounts = self._accounts(options)
        seeds = self._seeds(options, [name for name, _ in accounts])
        hub = EmulatorHub()
        for name, key in accounts:
            hub.add_account(name, api_key=key)
        state_dir = Path(options["state_dir"]) if options.get("state_dir") else None
        loaded = self._load(hub, state_dir) if state_dir is not None else set()
        for name, fixture in seeds:
            if name not in loaded:
                counts = hub.account(name).seed(fixture)
                self.stdout.write(f"Account {name!r}: seeded with objects built elsewhere "
                                  f"({', '.join(f'{v} {k}' for k, v in counts.items() if v)})")
        try:
            server = hub.serve(host=host, port=options["port"])
        except OSError as exc:
            raise CommandError(f"cannot bind {host}:{options['port']}: {exc.strerror or exc}") from None
        names = ", ".join(name for name, _ in accounts)
        self.stdout.write(f"Platform emulator listening on {server.url} (accounts: {names}; Ctrl-C to stop)")
        stop = threading.Event()
        writer = None
        if state_dir is not None:
            writer = threading.Thread(target=self._keep_saving, args=(hub, state_dir, stop), daemon=True)
            writer.start()
        try:
            self._wait(stop)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            server.shutdown()
            if state_dir is not None:
                self._save(hub, state_dir, force=True)
            self.stdout.write("Platform emulator stopped")

    def _seeds(self, options: dict[str, Any], names: list[str]) -> list[tuple[str, dict[str, Any]]]:
        seeds = []
        for spec in options.get("seed") or []:
            name, sep, path = spec.partition("=")
            name, path = (name.strip(), path.strip()) if sep else (names[0], spec)
            if name not in names:
                raise CommandError(f"--seed names account {name!r}, which is not one of {', '.join(names)}")
            try:
                fixture = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the seed fixture {path}: {exc}") from None
            if not isinstance(fixture, dict):
                raise CommandError(f"the seed fixture {path} must hold a JSON object")
            seeds.append((name, fixture))
        return seeds

    def _accounts(self, options: dict[str, Any]) -> list[tuple[str, str]]:
        accounts = []
        for spec in options.get("account") or []:
            name, sep, key = spec.partition("=")
            if not sep or not name.strip() or not key.strip():
                raise CommandError(f"--account takes NAME=KEY, not {spec!r}")
            accounts.append((name.strip(), key.strip()))
        if not accounts:
            key = options.get("api_key") or getattr(settings, "PLATFORM_API_KEY", None) or "emulator-dev-key"
            accounts.append(("default", key))
        return accounts

    def _load(self, hub: EmulatorHub, state_dir: Path) -> set[str]:
        loaded = set()
        for name, account in hub.accounts.items():
            path = state_dir / f"{name}.json"
            if path.exists():
                try:
                    account.state_load(json.loads(path.read_text()))
                except (OSError, ValueError) as exc:
                    raise CommandError(f"cannot read the saved state of account {name!r} ({path}): {exc}") from None
                self.stdout.write(f"Account {name!r}: state loaded from {path}")
                loaded.add(name)
        return loaded

    _saved: dict[str, int] = {}

    def _save(self, hub: EmulatorHub, state_dir: Path, *, force: bool = False) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        for name, account in hub.accounts.items():
            if not force and self._saved.get(name) == account.changes:
                continue
            changes = account.changes
            path = state_dir / f"{name}.json"
            temporary = path.with_suffix(".json.tmp")
            # The emulator's own fake keys and secret values: readable by this user only.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(account.state_dump(), out)
            temporary.replace(path)
            self._saved[name] = changes

    def _keep_saving(self, hub: EmulatorHub, state_dir: Path, stop: threading.Event) -> None:
        while not stop.wait(SAVE_EVERY):
            self._save(hub, state_dir)

    def _wait(self, stop: threading.Event) -> None:
        """Block the main thread until Ctrl-C or SIGTERM; the server runs in its own daemon thread."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        # SIGTERM (process managers, `make run` teardown) gets the same clean shutdown as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)
