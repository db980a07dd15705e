"""``manage.py run_emulator``: the platform emulator on loopback, for development and `make run`."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.platform.emulator import Emulator, is_loopback_host


class Command(BaseCommand):
    help = "Run the in-memory platform emulator on a loopback address until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="Port to bind (default 8765; 0 picks one).")
        parser.add_argument(
            "--api-key",
            dest="api_key",
            default=None,
            help="Admin key the emulator accepts (default: settings.PLATFORM_API_KEY).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"]
        # Control routes (/_emulator/*) need no key, so the emulator must never be reachable off-host.
        if not is_loopback_host(host):
            raise CommandError(f"refusing to bind {host!r}: the emulator only listens on loopback addresses")
        api_key = options["api_key"] or getattr(settings, "PLATFORM_API_KEY", None) or "emulator-dev-key"
        try:
            server = Emulator(api_key=api_key).serve(host=host, port=options["port"])
        except OSError as exc:
            raise CommandError(f"cannot bind {host}:{options['port']}: {exc.strerror or exc}") from None
        self.stdout.write(f"Platform emulator listening on {server.url} (Ctrl-C to stop)")
        try:
            self._wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            self.stdout.write("Platform emulator stopped")

    def _wait(self) -> None:
        """Block the main thread until Ctrl-C or SIGTERM; the server runs in its own daemon thread."""
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        # SIGTERM (process managers, `make run` teardown) gets the same clean shutdown as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)
