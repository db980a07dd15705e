"""Requests Keyward makes to addresses people typed in (OAuth token URLs, notification webhooks): never to an
internal address.

Two gates, one rule:

- ``validate_outbound_url(url)`` when the URL is saved: https only (plain http to loopback in debug, for the
  emulator's demo provider), no credentials in the URL, and a host that is not an address Keyward must never
  call (a literal private, loopback, link-local, shared, multicast, reserved or metadata address, or a name
  such as ``localhost``). A ValidationError the form shows on the URL's field.
- ``GuardedTransport`` when the request is made: it resolves the host itself, refuses if any resolved address is
  one of those (so a public name pointing inside is refused), and connects to the address it checked, sending
  the original name in the Host header and as TLS SNI, so the certificate is still checked against the name.
  No second lookup happens, so there is no DNS-rebinding window between the check and the connection.

In production (``settings.PRODUCTION``) loopback is refused like the rest; in debug it is allowed so ``make run``'s
demo provider (the emulator on 127.0.0.1) works. Refusals carry a reason for the log; what a person sees is a
generic "could not reach" chosen by the caller, so the refusal cannot be used to map the internal network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges Python's is_private / is_reserved flags do not all cover, named for the log.
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (shared address space)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS's IPv6 metadata endpoint (inside fc00::/7 anyway)
)
_BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata.google.internal", "metadata"}


class OutboundRefused(httpx.TransportError):
    """The request was not sent: its host is, or resolves to, an address Keyward must not call."""


def _loopback_allowed() -> bool:
    return not getattr(settings, "PRODUCTION", False)


def address_problem(address: Address) -> str | None:
    """Why Keyward must not call this address, or None."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return address_problem(mapped)
    if address.is_loopback:
        return None if _loopback_allowed() else "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if any(address in network for network in _EXTRA_BLOCKED):
        return "a shared or reserved range"
    return None


def validate_outbound_url(url: str, *, field: str = "url", what: str = "The URL") -> str:
    """The URL, or a ValidationError on `field` when Keyward would refuse to call it."""
    parts = urlsplit(url or "")
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationError({field: f"{what} must be an https:// address."})
    if parts.username or parts.password:
        raise ValidationError({field: f"{what} must not carry a user name or password."})
    try:
        literal: Address | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    loopback = (literal is not None and literal.is_loopback) or host == "localhost"
    if parts.scheme == "http" and not (loopback and _loopback_allowed()):
        raise ValidationError({field: f"{what} must use https:// (plain http would send credentials in clear "
                                      "text)."})
    if literal is not None:
        problem = address_problem(literal)
        if problem:
            raise ValidationError({field: f"{what} points at {problem}: Keyward does not call internal "
                                          "addresses."})
    elif host in _BLOCKED_NAMES and not (host == "localhost" and _loopback_allowed()):
        raise ValidationError({field: f"{what} names an internal host: Keyward does not call internal addresses."})
    return url


Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that refuses internal addresses and connects to the address it checked."""

    def __init__(self, *, resolver: Resolver | None = None, inner: httpx.BaseTransport | None = None,
                 **transport_options: Any) -> None:
        self._resolve = resolver or _resolve
        self._inner = inner or httpx.HTTPTransport(**transport_options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            if host.rstrip(".").lower() in _BLOCKED_NAMES and not (host == "localhost" and _loopback_allowed()):
                raise OutboundRefused(f"refused {host}: an internal host name", request=request)
            try:
                addresses = self._resolve(host, port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {type(exc).__name__}", request=request) from None
        if not addresses:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request)
        for text in addresses:
            problem = address_problem(ipaddress.ip_address(text))
            if problem:
                raise OutboundRefused(f"refused {host}: it resolves to {problem}", request=request)
        if literal is not None:
            return self._inner.handle_request(request)
        target = addresses[0]
        pinned = request.url.copy_with(host=target)
        headers = httpx.Headers(request.headers)
        headers["host"] = request.url.netloc.decode("ascii")
        extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(httpx.Request(request.method, pinned, headers=headers,
                                                        stream=request.stream, extensions=extensions))

    def close(self) -> None:
        self._inner.close()
