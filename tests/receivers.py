"""Real receivers on loopback for the notification and audit stream tests: an HTTP server thread that records
every request and answers the statuses a test queues, and syslog listeners over TCP (octet-counted frames, RFC 6587)
and UDP. They listen on 127.0.0.1 only and stop with the test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next queued status (then `default`), recording what arrived (2xx ones in `ok`)."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def ok(self) -> list[Received]:
        return [r for r in self.requests if getattr(r, "status", 200) < 300]

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default


def http_receiver() -> Iterator[HttpReceiver]:
    holder: dict[str, HttpReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status = receiver.next_status()
            entry = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            entry.status = status  # type: ignore[attr-defined]
            with receiver.lock:
                receiver.requests.append(entry)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = receiver = HttpReceiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SyslogListener:
    port: int
    messages: list[str] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)


def _tcp_frames(conn: socket.socket, sink: Callable[[str], None]) -> None:
    buffer = b""
    with conn:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                size = int(length)
                if len(rest) < size:
                    break
                sink(rest[:size].decode())
                buffer = rest[size:]


def syslog_listener(protocol: str) -> Iterator[SyslogListener]:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    listener = SyslogListener(sock.getsockname()[1])
    stop = threading.Event()
    sock.settimeout(0.2)

    def serve() -> None:
        if protocol == "tcp":
            sock.listen()
        while not stop.is_set():
            try:
                if protocol == "tcp":
                    conn, _ = sock.accept()
                    threading.Thread(target=_tcp_frames, args=(conn, listener.messages.append), daemon=True).start()
                else:
                    data, _ = sock.recvfrom(65536)
                    listener.messages.append(data.decode())
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
