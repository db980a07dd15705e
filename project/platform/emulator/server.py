"""Serve an Emulator on loopback with the standard library's ThreadingHTTPServer."""

from __future__ import annotations

import ipaddress
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .core import EmulatorCore

logger = logging.getLogger("project.platform.emulator")

# Hop-by-hop and framing headers are the HTTP server's business, not the emulator's.
_SKIP_RESPONSE_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding"}


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses: the emulator's control routes need no key."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: EmulatorCore) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out (latency fault) closes first and the late write breaks the pipe: expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away before the response was written", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections open, so a pooled httpx client behaves as it would against the platform.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm each loopback call would wait ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host, port = self.server.server_address[:2]
        request = httpx.Request(
            self.command,
            f"http://{host}:{port}{self.path}",
            headers=[(k, v) for k, v in self.headers.items() if k.lower() != "content-length"],
            content=body,
        )
        # Emulator only: X-Forwarded-For is honoured so key IP allowlists can be exercised on loopback.
        forwarded = self.headers.get("X-Forwarded-For")
        client_ip = forwarded.split(",")[0].strip() if forwarded else self.client_address[0]
        response = self.server.emulator.handle(request, client_ip=client_ip)
        payload = response.content
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in _SKIP_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        # The request line holds method, path and query (ids only, never the key header); DEBUG, not stderr.
        logger.debug("%s %s", self.address_string(), format % args)


class EmulatorServer:
    """A running loopback server for one Emulator. ``url`` is the base URL for a PlatformClient."""

    def __init__(self, emulator: EmulatorCore, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"the emulator only binds loopback addresses, not {host!r}")
        self.emulator = emulator
        self._server = _Server((host, port), emulator)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="platform-emulator", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
