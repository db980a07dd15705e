"""The emulator's engine: routing, authentication, scopes, faults and response headers.

No route honours ``Idempotency-Key`` (the header is accepted and ignored), because no platform endpoint Keyward
uses does: a retried create makes a second object, and Keyward's own lookup of an earlier attempt must prevent it.

Resource handlers live in the mixins (agents.py, workspace.py, accounts.py); each is a method marked
with ``@route``. Everything that touches state runs under one lock, so the emulator is thread-safe
and a faulted call can be decided before any handler runs (a fault never changes state).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import logging
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx

from .common import NO_BODY, ApiError, Call, ip_allowed, platform_error

logger = logging.getLogger("project.platform.emulator")

Reply = tuple[int, Any]
Handler = Callable[[Any, Call], Reply]

CONVAI_READ = ("convai_read",)
CONVAI_WRITE = ("convai_write",)
# Key management: the brief's service_account_write, or workspace_write as platform-api.md also allows.
SERVICE_ACCOUNTS = ("service_account_write", "workspace_write")
WORKSPACE_READ = ("workspace_read",)

DEFAULT_FAULTS: dict[str, Any] = {
    "error_rate": 0.0,
    "error_status": 503,
    "rate_limit_rate": 0.0,
    "retry_after": 1,
    "latency": 0.0,
    "fail_next": [],
    "seed": None,
}


def route(method: str, template: str, *, scopes: tuple[str, ...], create: bool = False) -> Callable[[Handler], Handler]:
    """Mark a handler. ``create`` marks routes that make an object (none honours Idempotency-Key: the platform's
    endpoints do not)."""

    def mark(func: Handler) -> Handler:
        func._emulator_route = (method, template, scopes, create)  # type: ignore[attr-defined]
        return func

    return mark


# The platform's ``hashed_xi_api_key`` is not documented to be sha256(secret); the emulator makes it a keyed hash,
# so code that joins usage on a locally computed SHA-256 finds nothing here, as it might on the platform.
_KEY_HASH_PEPPER = b"keyward-emulator: hashed_xi_api_key is not sha256(secret)"


def hash_key(api_key: str) -> str:
    """The emulator's ``hashed_xi_api_key`` of a secret (how it also recognises a presented key)."""
    return hmac.new(_KEY_HASH_PEPPER, api_key.encode(), hashlib.sha256).hexdigest()


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class EmulatorCore:
    """Dispatch and cross-cutting behaviour; subclasses add the resource routes and their state."""

    def __init__(
        self,
        api_key: str = "emulator-dev-key",
        base_ws: str = "wss://127.0.0.1",
        *,
        max_concurrency: int = 10,
        max_service_accounts: int = 20,
    ) -> None:
        self.api_key = api_key
        self.tier = "enterprise"  # what /v1/user/subscription reports
        self.base_ws = base_ws.rstrip("/")
        self.max_service_accounts = max_service_accounts
        self._default_max_concurrency = max_concurrency
        self.clock: Callable[[], float] = time.time
        self._lock = threading.RLock()
        self._routes = self._collect_routes()
        self.faults: dict[str, Any] = {}
        self.reset()

    # --- state lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every object, call count, fault and usage row."""
        with self._lock:
            self.faults.clear()
            self.faults.update(copy.deepcopy(DEFAULT_FAULTS))
            self._rng = random.Random()  # noqa: S311 - fault injection, not security
            self._seeded_with: Any = None
            self._calls: dict[str, int] = {}
            self._seq = itertools.count(1)
            self._in_flight = 0
            self.concurrency_current: int | None = None
            self.concurrency_max = self._default_max_concurrency
            self._reset_resources()

    def _reset_resources(self) -> None:
        """Resource mixins extend this (cooperatively, via super()) to clear their own state."""

    #: The attributes that hold the account's objects (what a restart must keep); faults and call counts are not.
    STATE_ATTRIBUTES = ("_agents", "_live_counts", "_auth_connections", "_secrets", "_tools", "_service_accounts",
                        "_keys", "_key_ids_by_hash", "_usage", "_convai_settings")

    def state_dump(self) -> dict[str, Any]:
        """Everything the account holds, as JSON-able data (``run_emulator --state-dir`` writes it to disk)."""
        with self._lock:
            state = {name: copy.deepcopy(getattr(self, name)) for name in self.STATE_ATTRIBUTES
                     if hasattr(self, name)}
            next_seq = next(self._seq)
            self._seq = itertools.count(next_seq)
            state["next_seq"] = next_seq
            return state

    def state_load(self, state: dict[str, Any]) -> None:
        """Put back what ``state_dump`` gave (objects only: faults and call counts start afresh)."""
        with self._lock:
            for name in self.STATE_ATTRIBUTES:
                if name in state and hasattr(self, name):
                    setattr(self, name, copy.deepcopy(state[name]))
            self._seq = itertools.count(int(state.get("next_seq", 1)))
            self.changes += 1

    changes = 0  # grows with every request that may have changed state (the state writer watches it)

    def _now(self) -> int:
        return int(self.clock())

    def _next_seq(self) -> int:
        return next(self._seq)

    @property
    def call_counts(self) -> dict[str, int]:
        """Calls per route, keyed like ``"POST /v1/convai/agents/create"`` (faulted calls included)."""
        with self._lock:
            return dict(self._calls)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        unknown = set(faults) - set(DEFAULT_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        for name in ("error_rate", "rate_limit_rate"):
            if name in faults and not 0.0 <= float(faults[name]) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if "fail_next" in faults:
            faults["fail_next"] = [int(status) for status in faults["fail_next"]]
            if not all(400 <= status <= 599 for status in faults["fail_next"]):
                raise ValueError("fail_next holds HTTP error statuses (400-599)")
        with self._lock:
            self.faults.update(faults)
            return copy.deepcopy(self.faults)

    def set_concurrency(self, *, current: int | None = None, maximum: int | None = None) -> None:
        """Pin the reported concurrency headers (``current=None`` reports the real in-flight count)."""
        with self._lock:
            self.concurrency_current = current
            if maximum is not None:
                self.concurrency_max = maximum

    # --- dispatch --------------------------------------------------------------------------------

    def _collect_routes(self) -> list[tuple[str, re.Pattern[str], str, tuple[str, ...], bool, Handler]]:
        routes = []
        for name in dir(type(self)):
            func = getattr(type(self), name)
            spec = getattr(func, "_emulator_route", None)
            if spec:
                method, template, scopes, create = spec
                pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
                routes.append((method, pattern, template, scopes, create, func))
        # Literal paths before templated ones, so /agents/create never matches /agents/{agent_id}.
        routes.sort(key=lambda r: r[2].count("{"))
        return routes

    def handle(self, request: httpx.Request, client_ip: str | None = None) -> httpx.Response:
        """Answer one request; usable directly as ``httpx.MockTransport(emulator.handle)``."""
        request_id = uuid.uuid4().hex
        with self._lock:
            self._in_flight += 1
            if request.method != "GET":
                self.changes += 1
        try:
            status, body, headers = self._handle(request, client_ip, request_id)
        except Exception:  # a bug in a handler answers 500 like a real server, and stays visible in logs
            logger.exception("emulator error on %s %s", request.method, request.url.path)
            status, body, headers = 500, {"detail": "Internal Server Error"}, {}
        finally:
            with self._lock:
                current = self.concurrency_current if self.concurrency_current is not None else self._in_flight
                maximum = self.concurrency_max
                self._in_flight -= 1
        headers = {
            **headers,
            "current-concurrent-requests": str(current),
            "maximum-concurrent-requests": str(maximum),
            "x-request-id": request_id,
        }
        if body is NO_BODY:
            return httpx.Response(status, headers=headers)
        headers["content-type"] = "application/json"
        return httpx.Response(status, headers=headers, content=_json_bytes(body))

    def _handle(
        self, request: httpx.Request, client_ip: str | None, request_id: str
    ) -> tuple[int, Any, dict[str, str]]:
        # Match on the still-encoded path so an id holding "%2F" stays one segment, as on a real server.
        raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
        path = unquote(raw_path)
        if path == DEMO_OAUTH_TOKEN_PATH:
            return self._demo_oauth_token(request)
        if path.startswith("/_emulator/"):
            try:
                status, body = self._control(request.method, path, _load_json(request.content))
            except ApiError as exc:
                return exc.status, exc.body, exc.headers
            return status, body, {}
        matched = self._match(request.method, raw_path)
        if isinstance(matched, ApiError):
            return matched.status, matched.body, matched.headers
        template, scopes, create, handler, args = matched
        with self._lock:
            key = f"{request.method} {template}"
            self._calls[key] = self._calls.get(key, 0) + 1
            latency = float(self.faults.get("latency") or 0.0)
        if latency > 0:
            time.sleep(latency)  # outside the lock: a slow call must not stall the others
        if client_ip is None:
            forwarded = request.headers.get("x-forwarded-for")
            client_ip = forwarded.split(",")[0].strip() if forwarded else "127.0.0.1"
        call = Call(
            method=request.method,
            path=path,
            query=dict(request.url.params.items()),
            headers=request.headers,
            body=None,
            client_ip=client_ip,
            args=args,
        )
        with self._lock:
            try:
                # Decide the fault before anything else so a faulted call changes nothing.
                fault = self._decide_fault()
                if fault is not None:
                    raise self._fault_error(fault, request_id)
                self._authorise(call, scopes)
                call.body = _load_json(request.content)
                # Idempotency-Key is accepted and ignored, as on the platform: a repeated create makes another object.
                status, body = handler(self, call)
                return status, body, {}
            except ApiError as exc:
                return exc.status, exc.body, exc.headers

    def _match(self, method: str, path: str) -> tuple[str, tuple[str, ...], bool, Handler, dict[str, str]] | ApiError:
        path_matched = False
        for route_method, pattern, template, scopes, create, handler in self._routes:
            found = pattern.match(path)
            if not found:
                continue
            path_matched = True
            if route_method == method:
                return template, scopes, create, handler, {k: unquote(v) for k, v in found.groupdict().items()}
        if path_matched:
            return ApiError(405, {"detail": "Method Not Allowed"})
        return ApiError(404, {"detail": "Not Found"})

    # --- faults ----------------------------------------------------------------------------------

    def _decide_fault(self) -> int | None:
        seed = self.faults.get("seed")
        if seed != self._seeded_with:
            # Reseed whenever the seed setting changes, however it was changed (set_faults or faults.update).
            self._rng.seed(seed)
            self._seeded_with = seed
        pending = self.faults.get("fail_next") or []
        if pending:
            return int(pending.pop(0))
        rate_limit_rate = float(self.faults.get("rate_limit_rate") or 0.0)
        if rate_limit_rate and self._rng.random() < rate_limit_rate:
            return 429
        error_rate = float(self.faults.get("error_rate") or 0.0)
        if error_rate and self._rng.random() < error_rate:
            return int(self.faults.get("error_status") or 503)
        return None

    def _fault_error(self, status: int, request_id: str) -> ApiError:
        if status == 429:
            headers = {}
            retry_after = self.faults.get("retry_after")
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            error = platform_error(
                429,
                "rate_limit_error",
                "concurrent_limit_exceeded",
                "Too many concurrent requests. Your current subscription is associated with a maximum of "
                f"{self.concurrency_max} concurrent requests.",
                request_id=request_id,
            )
            # The legacy status differs from the code here, as the docs describe.
            error.body["detail"]["status"] = "too_many_concurrent_requests"
            error.headers = headers
            return error
        if status >= 500:
            return platform_error(
                status,
                "service_error",
                "service_unavailable",
                "The service is temporarily unavailable.",
                request_id=request_id,
            )
        return platform_error(status, "emulated_fault", f"http_{status}", "Injected fault.", request_id=request_id)

    # --- authentication and scopes ---------------------------------------------------------------

    def _authorise(self, call: Call, scopes: tuple[str, ...]) -> None:
        presented = call.headers.get("xi-api-key")
        if not presented:
            raise _invalid_key()
        if presented == self.api_key:
            return  # the workspace admin's key may do everything
        key = self._key_for_hash(hash_key(presented))
        if key is None:
            raise _invalid_key()
        if key["is_disabled"]:
            raise platform_error(401, "authentication_error", "invalid_api_key", "This API key is disabled.")
        if key.get("expires_at_unix") is not None and key["expires_at_unix"] <= self._now():
            raise platform_error(401, "authentication_error", "invalid_api_key", "This API key has expired.")
        if key["allowed_ips"] and not ip_allowed(call.client_ip, key["allowed_ips"]):
            raise platform_error(
                403,
                "authorization_error",
                "ip_not_allowed",
                "Requests from this IP address are not allowed for this API key.",
            )
        permissions = key["permissions"]
        if permissions != "all" and not any(scope in permissions for scope in scopes):
            error = platform_error(
                401,
                "authentication_error",
                "unauthorized",
                f"The API key you used is missing the permission {scopes[0]} to execute this operation.",
            )
            # As observed live: code "unauthorized", legacy status "missing_permissions".
            error.body["detail"]["status"] = "missing_permissions"
            raise error

    def _key_for_hash(self, hashed: str) -> dict[str, Any] | None:
        raise NotImplementedError

    # --- the demo OAuth provider (not the platform's API) -------------------------------------------

    def _demo_oauth_token(self, request: httpx.Request) -> tuple[int, Any, dict[str, str]]:
        """An OAuth 2.0 token endpoint (RFC 6749 section 6, refresh grant) for `make run`'s demo provider, so
        "Force refresh" in the vault works without a real provider. Any client id and any non-empty refresh
        token are accepted; a refresh token starting with "revoked" is refused as invalid_grant, to try the
        failure path. Every answer is a fresh random access token valid for an hour."""
        form = dict(parse_qsl(request.content.decode("utf-8", "replace")))
        basic = request.headers.get("authorization", "").lower().startswith("basic ")
        if request.method != "POST":
            return 405, {"error": "invalid_request", "error_description": "POST only"}, {}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}, {}
        if not (form.get("client_id") or basic):
            return 401, {"error": "invalid_client"}, {}
        refresh = form.get("refresh_token", "")
        if not refresh or refresh.startswith("revoked"):
            return 400, {"error": "invalid_grant", "error_description": "The refresh token is invalid or revoked."}, {}
        counter = "POST " + DEMO_OAUTH_TOKEN_PATH
        with self._lock:
            self._calls[counter] = self._calls.get(counter, 0) + 1
        return 200, {"access_token": "ya29.demo_" + secrets.token_urlsafe(24), "token_type": "Bearer",
                     "expires_in": 3600}, {"cache-control": "no-store"}

    # --- control routes (no key needed; the server only binds loopback) --------------------------

    def _control(self, method: str, path: str, body: Any) -> Reply:
        name = path.removeprefix("/_emulator/").strip("/")
        try:
            if name == "faults" and method == "GET":
                with self._lock:
                    return 200, copy.deepcopy(self.faults)
            if name == "faults" and method == "POST":
                return 200, self.set_faults(**(body or {}))
            if name == "reset" and method == "POST":
                self.reset()
                return 200, {"reset": True}
            if name == "state" and method == "GET":
                return 200, {"objects": self._object_counts(), "calls": self.call_counts}
            if name == "usage" and method == "POST":
                rows = body.get("rows", []) if isinstance(body, dict) else body
                return 200, {"rows": self.add_usage(rows or [])}
            if name == "concurrency" and method == "POST":
                body = body or {}
                self.set_concurrency(current=body.get("current"), maximum=body.get("maximum"))
                return 200, {"current": self.concurrency_current, "maximum": self.concurrency_max}
            if name == "live-count" and method == "POST":
                self.set_live_count(str(body["agent_id"]), int(body["count"]))
                return 200, {"agent_id": body["agent_id"], "count": int(body["count"])}
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ApiError(400, {"detail": f"bad emulator control request: {exc}"}) from None
        raise ApiError(404, {"detail": "Not Found"})

    def _object_counts(self) -> dict[str, int]:
        return {}

    def add_usage(self, rows: list[dict[str, Any]]) -> int:
        raise NotImplementedError

    def set_live_count(self, agent_id: str, count: int) -> None:
        raise NotImplementedError


# Where the emulator plays the demo OAuth provider's token endpoint (secrets_app.demo points its provider here).
DEMO_OAUTH_TOKEN_PATH = "/_emulator/oauth/token"


def _invalid_key() -> ApiError:
    return platform_error(401, "authentication_error", "invalid_api_key", "Invalid API key")


def _load_json(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        raise ApiError(
            422, {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}
        ) from None
