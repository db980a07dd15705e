"""Requests to addresses people typed in never reach an internal address (project.outbound)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from django.core.exceptions import ValidationError

from project.outbound import GuardedTransport, OutboundRefused, address_problem, validate_outbound_url


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                                     "fd00:ec2::254", "fe80::1", "::ffff:10.0.0.1", "0.0.0.0", "224.0.0.1"])
def test_internal_addresses_are_refused(address):
    import ipaddress

    assert address_problem(ipaddress.ip_address(address)) is not None
    with pytest.raises(ValidationError):
        validate_outbound_url(f"https://[{address}]/token" if ":" in address else f"https://{address}/token")


def test_public_https_urls_pass_and_plain_http_does_not():
    assert validate_outbound_url("https://oauth2.googleapis.com/token")
    with pytest.raises(ValidationError, match="https"):
        validate_outbound_url("http://oauth2.example.com/token")
    with pytest.raises(ValidationError, match="user name"):
        validate_outbound_url("https://user:pw@oauth2.example.com/token")


def test_loopback_is_allowed_in_debug_only(settings):
    assert validate_outbound_url("http://127.0.0.1:8765/_emulator/oauth/token")
    settings.PRODUCTION = True
    with pytest.raises(ValidationError, match="https"):
        validate_outbound_url("http://127.0.0.1:8765/_emulator/oauth/token")
    with pytest.raises(ValidationError, match="loopback"):
        validate_outbound_url("https://127.0.0.1:8765/token")
    with pytest.raises(ValidationError, match="internal host"):
        validate_outbound_url("https://localhost/token")


def test_a_public_name_resolving_inside_is_refused_when_the_request_is_made():
    transport = GuardedTransport(resolver=lambda host, port: ["10.0.0.7"])
    with httpx.Client(transport=transport) as client, pytest.raises(OutboundRefused, match="private"):
        client.get("https://rebinding.example/token")


def test_the_request_goes_to_the_checked_address_with_the_original_host(echo):
    seen: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"]  # loopback: allowed outside production

    with httpx.Client(transport=GuardedTransport(resolver=resolver)) as client:
        response = client.get(f"http://provider.example:{echo}/token")
    assert response.status_code == 200 and response.text == f"provider.example:{echo}"
    assert seen == ["provider.example"]  # resolved once, by the guard; the connection used that answer


def test_in_production_loopback_is_refused_at_request_time_too(settings, echo):
    settings.PRODUCTION = True
    with httpx.Client(transport=GuardedTransport(resolver=lambda h, p: ["127.0.0.1"])) as client:
        with pytest.raises(OutboundRefused, match="loopback"):
            client.get(f"http://provider.example:{echo}/token")
