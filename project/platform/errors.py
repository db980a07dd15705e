"""One error hierarchy for every platform failure, built from status, headers and body only.

Messages carry the platform's own human-readable text and never the request: no headers (the
``xi-api-key`` lives there) and no request body (secret values live there). For 422s we keep only
``loc`` and ``msg`` of each item, because FastAPI/pydantic also echo the offending ``input``, which
can be a secret value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any


class PlatformError(Exception):
    """A platform call failed. ``status`` is None when no HTTP response arrived."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "platform_error",
        retry_after: float | None = None,
        legacy_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # The platform's legacy ``detail.status`` string (e.g. "missing_permissions" next to code
        # "unauthorized"); kept apart because it is sometimes the more specific of the two.
        self.legacy_status = legacy_status

    def __str__(self) -> str:
        return f"{self.code}: {self.message} (HTTP {self.status if self.status is not None else 'none'})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def has_code(self, *codes: str) -> bool:
        """True when either the code or the legacy status is one of ``codes``."""
        return self.code in codes or (self.legacy_status is not None and self.legacy_status in codes)


class AuthenticationFailed(PlatformError):
    """401 (bad, disabled or under-scoped key) or 403 (e.g. caller IP outside the key's allowlist)."""


class NotFound(PlatformError):
    """404: the object does not exist on the platform."""


class Conflict(PlatformError):
    """409, or a 400 saying the object is in use or already exists."""


class ValidationFailed(PlatformError):
    """400/422: the platform refused the request body or parameters."""


class RateLimited(PlatformError):
    """429: too many concurrent requests; ``retry_after`` says when to try again, if the platform said."""


class Unavailable(PlatformError):
    """5xx, timeouts and transport failures: worth retrying later."""


# What the outbox retries with backoff; everything else is a permanent failure for that job.
TRANSIENT: tuple[type[PlatformError], ...] = (RateLimited, Unavailable)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive already; plain dicts (tests, other callers) may not be.
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` first (most precise), then ``Retry-After``.

    ``Retry-After`` may be delta-seconds or an HTTP date; a date in the past means "now" (0.0).
    Unparseable values are ignored rather than guessed.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _loc_text(loc: Any) -> str:
    if isinstance(loc, list | tuple):
        return ".".join(str(part) for part in loc)
    return str(loc)


def _parse_body(status: int, body: bytes) -> tuple[str, str, str | None]:
    """(code, message, legacy_status) from any of the platform's documented error shapes."""
    fallback_code = f"http_{status}"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unexpected status"
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        # Non-JSON bodies (proxy HTML pages) are not worth echoing; the status says enough.
        return fallback_code, phrase, None
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):
        # FastAPI 422: [{"loc": [...], "msg": "...", "type": "..."}]; "input" is deliberately dropped.
        parts = [
            f"{_loc_text(item.get('loc', []))}: {item.get('msg', '')}" for item in detail if isinstance(item, dict)
        ]
        return "validation_error", "; ".join(parts) or phrase, None
    if isinstance(detail, dict):
        legacy = detail.get("status") if isinstance(detail.get("status"), str) else None
        code = detail.get("code") if isinstance(detail.get("code"), str) else None
        message = detail.get("message") if isinstance(detail.get("message"), str) else None
        return code or legacy or fallback_code, message or phrase, legacy
    if isinstance(detail, str):
        return fallback_code, detail, None
    return fallback_code, phrase, None


def _is_conflict_code(*codes: str | None) -> bool:
    return any(c and (c.endswith("_in_use") or "already_exists" in c) for c in codes)


def error_for_response(status: int, headers: Mapping[str, str], body: bytes) -> PlatformError:
    """Map a non-2xx response to the matching PlatformError subclass."""
    code, message, legacy = _parse_body(status, body)
    retry_after = parse_retry_after(headers)
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "retry_after": retry_after,
        "legacy_status": legacy,
    }
    cls: type[PlatformError]
    if status in (401, 403):
        cls = AuthenticationFailed
    elif status == 400 and (code == "invalid_api_key" or legacy == "invalid_api_key"):
        # Legacy docs list invalid_api_key as 400 or 401; both mean the key is bad.
        cls = AuthenticationFailed
    elif status == 404:
        cls = NotFound
    elif status == 409 or (status == 400 and _is_conflict_code(code, legacy)):
        cls = Conflict
    elif status in (400, 422):
        cls = ValidationFailed
    elif status == 429:
        cls = RateLimited
    elif status >= 500 or status == 408:
        cls = Unavailable
    else:
        cls = PlatformError
    return cls(message, **kwargs)


def is_cost_billing_refusal(error: PlatformError) -> bool:
    """The platform's refusal of ``usage-by-product-over-time`` for a workspace billed by cost (its SDK: "ranges that
    reach the date the workspace moved to cost billing return an error; use /v1/workspace/analytics/usage"). The
    exact code is undocumented: any 4xx other than an authentication or not-found error whose code or message
    speaks of cost billing or names the other endpoint."""
    if error.status is None or not 400 <= error.status < 500 or isinstance(error, AuthenticationFailed | NotFound):
        return False
    text = f"{error.code} {error.legacy_status or ''} {error.message}".lower()
    return ("cost" in text and ("billing" in text or "billed" in text)) or "analytics/usage" in text


def _refusal_text(error: PlatformError) -> str | None:
    """The code, legacy status and message of a 4xx refusal (not authentication, not not-found), lower-cased."""
    if error.status is None or not 400 <= error.status < 500 or isinstance(error, AuthenticationFailed | NotFound):
        return None
    return f"{error.code} {error.legacy_status or ''} {error.message}".lower()


def is_in_use_refusal(error: PlatformError) -> bool:
    """A refusal to delete something still referenced (a secret a tool or webhook uses). The platform's status and
    code are undocumented (409, or 400 ``secret_in_use``, or a plain 400/422 message): any 4xx saying so."""
    text = _refusal_text(error)
    return text is not None and any(marker in text for marker in ("in_use", "in use", "used by", "referenced by",
                                                                   "still referenced", "dependent"))


def is_duplicate_name_refusal(error: PlatformError) -> bool:
    """A refusal to create something whose name is taken (undocumented shape): 409, or any 4xx whose code or
    message says it already exists or is a duplicate."""
    text = _refusal_text(error)
    if text is None:
        return False
    return error.status == 409 or any(marker in text for marker in ("already_exists", "already exists", "duplicate",
                                                                    "name is taken", "not unique"))
