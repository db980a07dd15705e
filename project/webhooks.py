"""Webhooks Keyward sends (alert notifications, the audit stream): the Standard Webhooks signature and one guarded
POST.

Signature (https://www.standardwebhooks.com, "Signature scheme"): the secret is ``whsec_`` + base64 of random
bytes; the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; ``webhook-signature`` is ``v1,`` + base64
of its HMAC-SHA256. The id stays the same across retries of one message, so a receiver can drop duplicates.

``post(url, body, headers)`` goes through ``project.outbound.GuardedTransport`` (resolved and checked when
connecting) and turns every failure into a ``project.platform.errors`` exception the outbox understands (transient:
retried with backoff; others: failed). Messages never carry the URL (a Slack webhook's path is its secret), a header
or the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

import httpx

from project.outbound import GuardedTransport, OutboundRefused
from project.platform import errors

SECRET_PREFIX = "whsec_"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def new_secret() -> str:
    """A fresh signing secret (24 random bytes), in the Standard Webhooks form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, msg_id, timestamp, body)}


_client: httpx.Client | None = None
_lock = threading.Lock()


def client() -> httpx.Client:
    """One pooled client per process (httpx clients are thread-safe), refusing internal addresses."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(transport=GuardedTransport(), timeout=TIMEOUT, follow_redirects=False)
        return _client


def post(url: str, body: bytes, headers: dict[str, str] | None = None, *, what: str = "the receiver") -> int:
    """POST `body` (JSON) to `url`; the status on 2xx. Raises Unavailable (no answer, 408, 5xx), RateLimited (429),
    ValidationFailed (any other answer)."""
    try:
        response = client().post(url, content=body, headers={"content-type": "application/json",
                                                              "user-agent": "Keyward", **(headers or {})})
    except OutboundRefused:
        raise errors.ValidationFailed(f"{what} resolves to an internal address; Keyward does not call it",
                                      code="receiver_refused") from None
    except httpx.HTTPError as exc:
        raise errors.Unavailable(f"could not reach {what} ({type(exc).__name__})",
                                 code="receiver_unavailable") from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status == 429:
        after = response.headers.get("retry-after", "")
        raise errors.RateLimited(f"{what} asked to slow down", status=status, code="receiver_rate_limited",
                                 retry_after=float(after) if after.isdigit() else None)
    if status == 408 or status >= 500:
        raise errors.Unavailable(f"{what} answered HTTP {status}", status=status, code="receiver_unavailable")
    raise errors.ValidationFailed(f"{what} refused the message (HTTP {status})", status=status,
                                  code="receiver_refused")
