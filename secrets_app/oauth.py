"""The one pooled HTTP client Keyward uses to refresh end users' tokens at OAuth providers' token URLs.

Requests and responses carry tokens, so logs get method, host, status and elapsed time only, errors carry
the provider's error *code* only (``error_description`` and bodies may echo what was sent), and transport
exceptions are re-raised outside their ``except`` block so the request (and its form body) never rides
along as ``__context__``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from project.outbound import GuardedTransport, OutboundRefused

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=5.0)
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")
REFUSED = "the provider refused the refresh"
UNREACHABLE = "could not reach the provider"


@dataclass(frozen=True)
class TokenGrant:
    """What a token endpoint answered. repr shows no token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    scopes: list[str] | None = None


class RefreshFailed(Exception):
    """The provider refused or could not be reached. The message holds no token and no response body."""

    def __init__(self, reason: str, *, status: int | None = None, code: str = "refresh_failed",
                 transient: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.status, self.code, self.transient = reason, status, code, transient

    @property
    def category(self) -> str:
        """What a person may be told: "unreachable" (nothing answered) or "refused" (something answered, but
        not with a token). Nothing finer, or the refresh result would scan whatever the token URL points at."""
        return "unreachable" if self.code in ("timeout", "connection_error", "refused_address") else "refused"

    @property
    def public_reason(self) -> str:
        return UNREACHABLE if self.category == "unreachable" else REFUSED

    def __str__(self) -> str:
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}: {self.reason}{status}"


_client: httpx.Client | None = None
_lock = threading.Lock()


def get_client() -> httpx.Client:
    """The process's one pooled client (built on first use; reset in forked children)."""
    global _client
    if _client is not None:
        return _client
    with _lock:
        if _client is None:
            from django.conf import settings

            timeout = float(getattr(settings, "OAUTH_HTTP_TIMEOUT", 10.0))
            _client = httpx.Client(
                # Resolves the token URL's host itself, refuses internal addresses (loopback only outside
                # production) and connects to the address it checked: no DNS-rebinding window.
                transport=GuardedTransport(),
                timeout=httpx.Timeout(connect=min(3.0, timeout), read=timeout, write=timeout, pool=5.0),
                # A redirect could carry the client secret to another host.
                follow_redirects=False,
                headers={"accept": "application/json", "user-agent": "keyward-vault"},
            )
        return _client


def set_client(client: httpx.Client | None) -> None:
    """Install a client (tests: one over httpx.MockTransport) or None to rebuild from settings on next use."""
    global _client
    with _lock:
        _client = client


if hasattr(os, "register_at_fork"):
    def _reset_after_fork() -> None:
        global _client, _lock
        _client, _lock = None, threading.Lock()

    os.register_at_fork(after_in_child=_reset_after_fork)


def _grant_from(payload: Any) -> TokenGrant:
    if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str) \
            or not payload["access_token"]:
        raise RefreshFailed("the token endpoint answered without an access_token", code="invalid_response")
    expires_in = payload.get("expires_in")
    try:
        expires_in = int(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        expires_in = None
    refresh = payload.get("refresh_token")
    scope = payload.get("scope")
    return TokenGrant(
        access_token=payload["access_token"],
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=expires_in if expires_in is None or expires_in >= 0 else None,
        scopes=scope.split() if isinstance(scope, str) and scope.strip() else None,
    )


def _error_code(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return f"http_{response.status_code}"
    code = payload.get("error") if isinstance(payload, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else f"http_{response.status_code}"


def refresh_access_token(*, token_url: str, client_id: str, client_secret: str, refresh_token: str,
                         scopes: list[str] | None = None, basic_auth: bool = False,
                         client: httpx.Client | None = None) -> TokenGrant:
    """RFC 6749 §6: exchange a refresh token for a new access token (and maybe a new refresh token)."""
    http = client or get_client()
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scopes:
        data["scope"] = " ".join(scopes)
    auth = None
    if basic_auth:
        auth = httpx.BasicAuth(client_id, client_secret)
    else:
        data["client_id"] = client_id
        if client_secret:
            data["client_secret"] = client_secret
    host = httpx.URL(token_url).host
    started = time.monotonic()
    failure: RefreshFailed | None = None
    try:
        response = http.post(token_url, data=data, auth=auth)
    except OutboundRefused as exc:
        failure = RefreshFailed(str(exc), code="refused_address")
    except httpx.TimeoutException as exc:
        failure = RefreshFailed(f"{type(exc).__name__} calling {host}", code="timeout", transient=True)
    except httpx.RequestError as exc:
        failure = RefreshFailed(f"{type(exc).__name__} calling {host}", code="connection_error", transient=True)
    elapsed_ms = (time.monotonic() - started) * 1000
    if failure is not None:
        logger.info("oauth refresh at %s -> %s in %.0f ms", host, failure.code, elapsed_ms)
        raise failure
    logger.info("oauth refresh at %s -> %s in %.0f ms", host, response.status_code, elapsed_ms)
    if not response.is_success:
        code = _error_code(response)
        transient = response.status_code >= 500 or response.status_code in (408, 429)
        raise RefreshFailed(f"the provider refused the refresh ({code})", status=response.status_code, code=code,
                            transient=transient)
    try:
        payload = response.json()
    except ValueError:
        raise RefreshFailed("the token endpoint answered with something other than JSON",
                            status=response.status_code, code="invalid_response") from None
    return _grant_from(payload)
