"""The only code in Keyward that speaks HTTP to the platform.

One pooled ``httpx.Client`` per PlatformClient, no retries here (the outbox owns retry policy), every
non-2xx mapped to ``project.platform.errors``. Logs carry method, path, status and elapsed time only:
headers hold the ``xi-api-key`` and bodies hold secret values.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .errors import PlatformError, Unavailable, error_for_response

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=5.0)

JSON = dict[str, Any]


class _Unset:
    """Marks a PATCH field the caller did not give, as distinct from an explicit None."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _seg(value: str) -> str:
    # Ids go into the path; quoting stops an id like "../x" or "a/b" from reaching another route.
    return quote(str(value), safe="")


def _timeout(value: httpx.Timeout | float | None) -> httpx.Timeout:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, httpx.Timeout):
        return value
    # A bare number (PLATFORM_TIMEOUT) bounds reads and writes; connecting and pool waits stay short.
    return httpx.Timeout(connect=min(3.0, float(value)), read=float(value), write=float(value), pool=5.0)


class PlatformClient:
    """Typed methods over the platform's management API. Methods return plain dicts and strings."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.last_concurrency: tuple[int, int] | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"xi-api-key": api_key, "accept": "application/json"},
            timeout=_timeout(timeout),
            transport=transport,
            # Redirects could carry the key header to another host; the platform API does not redirect.
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PlatformClient(base_url={self.base_url!r})"

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        clean_params = {k: v for k, v in (params or {}).items() if v is not None} or None
        started = time.monotonic()
        failure: PlatformError | None = None
        try:
            response = self._http.request(method, path, params=clean_params, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            failure = Unavailable(f"{type(exc).__name__} on {method} {path}", code="timeout")
        except httpx.RequestError as exc:
            failure = Unavailable(f"{type(exc).__name__} on {method} {path}", code="connection_error")
        elapsed_ms = (time.monotonic() - started) * 1000
        if failure is not None:
            logger.debug("platform %s %s -> %s in %.0f ms", method, path, failure.code, elapsed_ms)
            # Raised outside the except block on purpose: the httpx exception holds the request,
            # headers included, and must not ride along as __context__ into error reporters.
            raise failure
        logger.debug("platform %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed_ms)
        self.last_concurrency = _concurrency(response.headers)
        if not response.is_success:
            raise error_for_response(response.status_code, response.headers, response.content)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            # A 2xx that is not JSON came from something in between (proxy page); retrying is right,
            # and creates are safe to retry because they carry an idempotency key.
            raise Unavailable(
                f"non-JSON 2xx response to {method} {path}",
                status=response.status_code,
                code="invalid_response",
            ) from None

    # --- agents ----------------------------------------------------------------------------------

    def create_agent(
        self,
        *,
        name: str,
        conversation_config: JSON,
        platform_settings: JSON | None,
        tags: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        body: JSON = {
            "name": name,
            "conversation_config": conversation_config,
            "platform_settings": platform_settings,
        }
        if tags is not None:
            body["tags"] = tags
        data = self._json("POST", "/v1/convai/agents/create", json=body, idempotency_key=idempotency_key)
        return str(data["agent_id"])

    def get_agent(self, agent_id: str) -> JSON:
        return self._json("GET", f"/v1/convai/agents/{_seg(agent_id)}")

    def list_agents(self, *, search: str | None = None, page_size: int = 100, cursor: str | None = None) -> JSON:
        params = {"search": search, "page_size": page_size, "cursor": cursor}
        return self._json("GET", "/v1/convai/agents", params=params)

    def iter_agents(self, *, search: str | None = None, page_size: int = 100) -> Iterator[JSON]:
        """Every agent summary, following ``next_cursor`` until ``has_more`` is false."""
        cursor: str | None = None
        while True:
            page = self.list_agents(search=search, page_size=page_size, cursor=cursor)
            yield from page.get("agents", [])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    def update_agent(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        conversation_config: JSON | None = None,
        platform_settings: JSON | None = None,
        tags: list[str] | None = None,
    ) -> JSON:
        fields = {
            "name": name,
            "conversation_config": conversation_config,
            "platform_settings": platform_settings,
            "tags": tags,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        return self._json("PATCH", f"/v1/convai/agents/{_seg(agent_id)}", json=body)

    def delete_agent(self, agent_id: str) -> None:
        self._request("DELETE", f"/v1/convai/agents/{_seg(agent_id)}")

    # --- conversation credentials ----------------------------------------------------------------

    def get_signed_url(
        self, agent_id: str, *, environment: str | None = None, include_conversation_id: bool = False
    ) -> str:
        params: JSON = {"agent_id": agent_id, "environment": environment}
        if include_conversation_id:
            params["include_conversation_id"] = "true"
        data = self._json("GET", "/v1/convai/conversation/get-signed-url", params=params)
        return str(data["signed_url"])

    def get_conversation_token(
        self, agent_id: str, *, environment: str | None = None, participant_name: str | None = None
    ) -> JSON:
        params = {"agent_id": agent_id, "environment": environment, "participant_name": participant_name}
        return self._json("GET", "/v1/convai/conversation/token", params=params)

    # --- secrets ---------------------------------------------------------------------------------

    def create_secret(self, *, name: str, value: str, idempotency_key: str | None = None) -> JSON:
        body = {"type": "new", "name": name, "value": value}
        return self._json("POST", "/v1/convai/secrets", json=body, idempotency_key=idempotency_key)

    def update_secret(self, secret_id: str, *, name: str, value: str) -> JSON:
        body = {"type": "update", "name": name, "value": value}
        return self._json("PATCH", f"/v1/convai/secrets/{_seg(secret_id)}", json=body)

    def delete_secret(self, secret_id: str) -> None:
        self._request("DELETE", f"/v1/convai/secrets/{_seg(secret_id)}")

    def get_secret(self, secret_id: str) -> JSON:
        return self._json("GET", f"/v1/convai/secrets/{_seg(secret_id)}")

    def list_secrets(self) -> list[JSON]:
        # Without page_size the platform returns every secret; follow next_cursor anyway in case it pages.
        secrets: list[JSON] = []
        cursor: str | None = None
        while True:
            page = self._json("GET", "/v1/convai/secrets", params={"cursor": cursor})
            secrets.extend(page.get("secrets", []))
            cursor = page.get("next_cursor")
            if not cursor:
                return secrets

    def secret_id_named(self, name: str) -> str | None:
        """The id of the workspace secret called `name`, or None: how a create whose answer was lost is found."""
        if not name:
            return None
        return next((str(s["secret_id"]) for s in self.list_secrets() if s.get("name") == name), None)

    # --- tools -----------------------------------------------------------------------------------

    def create_tool(self, *, tool_config: JSON, idempotency_key: str | None = None) -> JSON:
        return self._json(
            "POST", "/v1/convai/tools", json={"tool_config": tool_config}, idempotency_key=idempotency_key
        )

    def get_tool(self, tool_id: str) -> JSON:
        return self._json("GET", f"/v1/convai/tools/{_seg(tool_id)}")

    def update_tool(self, tool_id: str, *, tool_config: JSON) -> JSON:
        return self._json("PATCH", f"/v1/convai/tools/{_seg(tool_id)}", json={"tool_config": tool_config})

    def delete_tool(self, tool_id: str, *, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self._request("DELETE", f"/v1/convai/tools/{_seg(tool_id)}", params=params)

    def list_tools(self) -> list[JSON]:
        tools: list[JSON] = []
        cursor: str | None = None
        while True:
            page = self._json("GET", "/v1/convai/tools", params={"page_size": 100, "cursor": cursor})
            tools.extend(page.get("tools", []))
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return tools

    # --- workspace auth connections --------------------------------------------------------------

    def create_auth_connection(self, *, body: JSON, idempotency_key: str | None = None) -> JSON:
        """Create one of the Create*Request bodies (discriminated on ``auth_type``); the answer never holds the
        credential."""
        return self._json("POST", "/v1/workspace/auth-connections", json=body, idempotency_key=idempotency_key)

    def update_auth_connection(self, auth_connection_id: str, *, body: JSON) -> JSON:
        """PATCH with an Update*Request body: fields left out (or None) stay as they are on the platform."""
        return self._json("PATCH", f"/v1/workspace/auth-connections/{_seg(auth_connection_id)}", json=body)

    def delete_auth_connection(self, auth_connection_id: str) -> None:
        self._request("DELETE", f"/v1/workspace/auth-connections/{_seg(auth_connection_id)}")

    def list_auth_connections(self) -> list[JSON]:
        return list(self._json("GET", "/v1/workspace/auth-connections").get("auth_connections", []))

    # --- service accounts and their keys ---------------------------------------------------------

    def list_service_accounts(self) -> list[JSON]:
        return list(self._json("GET", "/v1/service-accounts")["service-accounts"])

    def create_service_account(self, *, name: str, idempotency_key: str | None = None) -> str:
        data = self._json("POST", "/v1/service-accounts", json={"name": name}, idempotency_key=idempotency_key)
        return str(data["service-account-user-id"])

    def list_api_keys(self, sa_id: str) -> list[JSON]:
        return list(self._json("GET", f"/v1/service-accounts/{_seg(sa_id)}/api-keys")["api-keys"])

    def create_api_key(
        self,
        sa_id: str,
        *,
        name: str,
        permissions: list[str] | str,
        character_limit: int | None = None,
        allowed_ips: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        """Issue a key. The returned ``xi-api-key`` is the only time the platform reveals the secret."""
        body: JSON = {"name": name, "permissions": permissions}
        if character_limit is not None:
            body["character_limit"] = character_limit
        if allowed_ips is not None:
            body["allowed_ips"] = allowed_ips
        return self._json(
            "POST", f"/v1/service-accounts/{_seg(sa_id)}/api-keys", json=body, idempotency_key=idempotency_key
        )

    def update_api_key(
        self,
        sa_id: str,
        key_id: str,
        *,
        is_enabled: bool = UNSET,
        name: str = UNSET,
        permissions: list[str] | Literal["all"] = UNSET,
        character_limit: int | Literal["clear"] | None = UNSET,
        allowed_ips: list[str] | Literal["clear"] = UNSET,
    ) -> None:
        """Send only the fields given; the platform leaves the rest at its "no_update" default."""
        fields = {
            "is_enabled": is_enabled,
            "name": name,
            "permissions": permissions,
            "character_limit": character_limit,
            "allowed_ips": allowed_ips,
        }
        body = {k: v for k, v in fields.items() if v is not UNSET}
        self._request("PATCH", f"/v1/service-accounts/{_seg(sa_id)}/api-keys/{_seg(key_id)}", json=body)

    def delete_api_key(self, sa_id: str, key_id: str) -> None:
        self._request("DELETE", f"/v1/service-accounts/{_seg(sa_id)}/api-keys/{_seg(key_id)}")

    # --- usage -----------------------------------------------------------------------------------

    def usage_by_api_key(self, *, start_ms: int, end_ms: int, interval_seconds: int = 86400) -> JSON:
        """Tabular usage ``{columns, column_types, rows, column_units}`` grouped by hashed key."""
        body = {
            "start_time": start_ms,
            "end_time": end_ms,
            "interval_seconds": interval_seconds,
            "group_by": ["hashed_xi_api_key"],
        }
        return self._json("POST", "/v1/workspace/analytics/query/usage-by-product-over-time", json=body)

    def live_count(self, agent_id: str) -> int:
        return int(self._json("GET", "/v1/convai/analytics/live-count", params={"agent_id": agent_id})["count"])


def _concurrency(headers: httpx.Headers) -> tuple[int, int] | None:
    try:
        return int(headers["current-concurrent-requests"]), int(headers["maximum-concurrent-requests"])
    except (KeyError, ValueError):
        return None


# --- process-wide client -------------------------------------------------------------------------

_client: PlatformClient | None = None
_client_lock = threading.Lock()


def get_client() -> PlatformClient:
    """The process's one client, built on first use from Django settings (read lazily, not at import)."""
    global _client
    client = _client
    if client is not None:
        return client
    with _client_lock:
        if _client is None:
            from django.conf import settings

            _client = PlatformClient(
                settings.PLATFORM_API_URL,
                settings.PLATFORM_API_KEY,
                timeout=float(getattr(settings, "PLATFORM_TIMEOUT", 10.0)),
            )
        return _client


def set_client(client: PlatformClient | None) -> None:
    """Install a client (tests: one over the emulator) or None to rebuild from settings on next use."""
    global _client
    with _client_lock:
        _client = client


def _reset_after_fork() -> None:
    # A forked worker must not share the parent's pooled sockets; drop (not close) the inherited client
    # so closing cannot disturb the parent's connections, and take a fresh lock in case one was held.
    global _client, _client_lock
    _client = None
    _client_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
