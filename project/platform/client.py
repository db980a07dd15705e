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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from .errors import AuthenticationFailed, PlatformError, Unavailable, error_for_response, is_cost_billing_refusal

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
        #: Calls made so far (a discovery run reports how many it took); counted under the GIL, so exact enough.
        self.calls = 0
        #: Told of every call's outcome that says something about the account: None for a success, the error for
        #: a refused key or an unavailable platform (the account's state on its admin page). Not per-object errors.
        self.outcome_listener: Callable[[PlatformError | None], None] | None = None
        #: Set once the platform said this workspace is billed by cost: usage then comes from the cost endpoint.
        self.cost_billed = False
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
        self.calls += 1
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
            self._tell(failure)
            # Raised outside the except block on purpose: the httpx exception holds the request,
            # headers included, and must not ride along as __context__ into error reporters.
            raise failure
        logger.debug("platform %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed_ms)
        self.last_concurrency = _concurrency(response.headers)
        if not response.is_success:
            error = error_for_response(response.status_code, response.headers, response.content)
            if isinstance(error, AuthenticationFailed | Unavailable):
                self._tell(error)
            raise error
        self._tell(None)
        return response

    def _tell(self, error: PlatformError | None) -> None:
        listener = self.outcome_listener
        if listener is None:
            return
        try:
            listener(error)
        except Exception:  # bookkeeping must never turn a platform answer into a failure
            logger.exception("platform outcome listener failed")

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

    def list_agents(self, *, search: str | None = None, page_size: int = 100, cursor: str | None = None,
                    archived: bool | None = None) -> JSON:
        params = {"search": search, "page_size": page_size, "cursor": cursor,
                  "archived": None if archived is None else str(archived).lower()}
        return self._json("GET", "/v1/convai/agents", params=params)

    def iter_agents(self, *, search: str | None = None, page_size: int = 100,
                    archived: bool | None = None) -> Iterator[JSON]:
        """Every agent summary, following ``next_cursor`` until ``has_more`` is false. The platform lists archived
        agents only when asked (``archived=True`` lists only those)."""
        cursor: str | None = None
        while True:
            page = self.list_agents(search=search, page_size=page_size, cursor=cursor, archived=archived)
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

    def get_signed_url_with_conversation(self, agent_id: str, *, environment: str | None = None) -> tuple[str, str]:
        """A single-use signed URL (``include_conversation_id``) and the conversation id the platform gave with it:
        a top-level ``conversation_id`` of the answer (the SDK: "include a conversation_id with the response"), else
        one in the URL's query, else "" (the platform's placement is undocumented: the caller must say so)."""
        params = {"agent_id": agent_id, "environment": environment, "include_conversation_id": "true"}
        data = self._json("GET", "/v1/convai/conversation/get-signed-url", params=params)
        url = str(data["signed_url"])
        conversation_id = data.get("conversation_id") if isinstance(data.get("conversation_id"), str) else ""
        if not conversation_id:
            conversation_id = (parse_qs(urlsplit(url).query).get("conversation_id") or [""])[0]
        return url, conversation_id[:128]

    def get_conversation_token(
        self, agent_id: str, *, environment: str | None = None, participant_name: str | None = None
    ) -> JSON:
        params = {"agent_id": agent_id, "environment": environment, "participant_name": participant_name}
        return self._json("GET", "/v1/convai/conversation/token", params=params)

    def create_single_use_token(self, token_type: str) -> str:
        """A single-use token for a speech client (``tts_websocket``, ``realtime_scribe``, ``batch_scribe``):
        valid 15 minutes, consumed on use. Never logged."""
        data = self._json("POST", f"/v1/single-use-token/{_seg(token_type)}")
        return str(data["token"])

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

    def iter_secrets(self, *, page_size: int = 100) -> Iterator[JSON]:
        """Every workspace secret, a page at a time (with ``page_size`` the platform pages; without, it answers
        with all of them at once)."""
        cursor: str | None = None
        while True:
            page = self._json("GET", "/v1/convai/secrets", params={"page_size": page_size, "cursor": cursor})
            yield from page.get("secrets", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    #: Pages a lookup by name reads at most (the platform's ``search`` narrows the list to names like it).
    LOOKUP_PAGES = 2

    def secret_id_named(self, name: str) -> str | None:
        """The id of the workspace secret called exactly `name`, or None: how a create whose answer was lost is
        found. Targeted and bounded: the platform's ``search`` for the name, at most LOOKUP_PAGES pages of 100."""
        if not name:
            return None
        cursor: str | None = None
        for _page in range(self.LOOKUP_PAGES):
            page = self._json("GET", "/v1/convai/secrets", params={"search": name, "page_size": 100,
                                                                     "cursor": cursor})
            found = next((str(s["secret_id"]) for s in page.get("secrets", []) if s.get("name") == name), None)
            if found is not None:
                return found
            cursor = page.get("next_cursor")
            if not cursor:
                return None
        return None

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
        return list(self.iter_tools())

    def iter_tools(self, *, page_size: int = 100) -> Iterator[JSON]:
        """Every tool, a page at a time."""
        cursor: str | None = None
        while True:
            page = self._json("GET", "/v1/convai/tools", params={"page_size": page_size, "cursor": cursor})
            yield from page.get("tools", [])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

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
        expires_at_unix: int | None = None,
        idempotency_key: str | None = None,
    ) -> JSON:
        """Issue a key. The returned ``xi-api-key`` is the only time the platform reveals the secret.
        ``expires_at_unix`` (seconds; 15 minutes to 90 days ahead) makes the platform itself end the key."""
        body: JSON = {"name": name, "permissions": permissions}
        if character_limit is not None:
            body["character_limit"] = character_limit
        if allowed_ips is not None:
            body["allowed_ips"] = allowed_ips
        if expires_at_unix is not None:
            body["expires_at_unix"] = expires_at_unix
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
        expires_at_unix: int | Literal["clear"] = UNSET,
    ) -> None:
        """Send only the fields given; the platform leaves the rest at its "no_update" default."""
        fields = {
            "is_enabled": is_enabled,
            "name": name,
            "permissions": permissions,
            "character_limit": character_limit,
            "allowed_ips": allowed_ips,
            "expires_at_unix": expires_at_unix,
        }
        body = {k: v for k, v in fields.items() if v is not UNSET}
        self._request("PATCH", f"/v1/service-accounts/{_seg(sa_id)}/api-keys/{_seg(key_id)}", json=body)

    def disable_api_key(self, sa_id: str, key_id: str) -> None:
        """Disable a key without touching its other settings (``POST …/api-keys/{id}/disable``): unlike PATCH
        is_enabled=false it stays available after the workspace downgrades off the plan with service accounts."""
        self._request("POST", f"/v1/service-accounts/{_seg(sa_id)}/api-keys/{_seg(key_id)}/disable")

    def delete_api_key(self, sa_id: str, key_id: str) -> None:
        self._request("DELETE", f"/v1/service-accounts/{_seg(sa_id)}/api-keys/{_seg(key_id)}")

    # --- usage -----------------------------------------------------------------------------------

    def usage_by_api_key(self, *, start_ms: int, end_ms: int, interval_seconds: int = 86400) -> JSON:
        """Tabular usage ``{columns, column_types, rows, column_units}`` grouped by hashed key.

        Credit-billed workspaces answer on ``usage-by-product-over-time``; a cost-billed one refuses it and must use
        ``POST /v1/workspace/analytics/usage`` (whole UTC days only, costs in its currency). The refusal is
        recognised (``is_cost_billing_refusal``), remembered for this client, and the answer then comes from the
        cost endpoint with ``"billing": "cost"`` added, so every caller keeps working."""
        if not self.cost_billed:
            body = {
                "start_time": start_ms,
                "end_time": end_ms,
                "interval_seconds": interval_seconds,
                "group_by": ["hashed_xi_api_key"],
            }
            try:
                data = self._json("POST", "/v1/workspace/analytics/query/usage-by-product-over-time", json=body)
            except PlatformError as exc:
                if not is_cost_billing_refusal(exc):
                    raise
                self.cost_billed = True
            else:
                return {**data, "billing": "credits"} if isinstance(data, dict) else data
        return {**self.cost_usage_by_api_key(start_ms=start_ms, end_ms=end_ms, interval_seconds=interval_seconds),
                "billing": "cost"}

    def cost_usage_by_api_key(self, *, start_ms: int, end_ms: int, interval_seconds: int = 86400) -> JSON:
        """Cost-billed workspaces' usage per hashed key (``POST /v1/workspace/analytics/usage``): buckets are whole
        UTC days, so the interval is rounded up to one and the start down to its midnight."""
        day = 86400
        interval = max(day, -(-int(interval_seconds) // day) * day)
        start = start_ms - start_ms % (day * 1000)
        body = {"start_time": start, "end_time": end_ms, "interval_seconds": interval,
                "group_by": ["hashed_xi_api_key"]}
        return self._json("POST", "/v1/workspace/analytics/usage", json=body)

    def get_convai_settings(self) -> JSON:
        """The workspace's convai settings: its workspace-wide conversation-initiation webhook among them."""
        return self._json("GET", "/v1/convai/settings")

    def get_subscription(self) -> JSON:
        """The account's plan (``tier``, credits used and allowed); needs ``user_read``."""
        return self._json("GET", "/v1/user/subscription")

    def live_count(self, agent_id: str) -> int:
        return int(self._json("GET", "/v1/convai/analytics/live-count", params={"agent_id": agent_id})["count"])


def _concurrency(headers: httpx.Headers) -> tuple[int, int] | None:
    try:
        return int(headers["current-concurrent-requests"]), int(headers["maximum-concurrent-requests"])
    except (KeyError, ValueError):
        return None


# --- one pooled client per platform account, per process --------------------------------------------

@dataclass(frozen=True)
class AccountCredentials:
    """What a client needs to reach one platform account. The key never appears in repr()."""

    account_id: int
    base_url: str
    api_key: str = field(repr=False)
    #: Changes whenever the account's key does (compared as a whole, never ordered): the key version and the
    #: row's creation time, so a new account that reuses a deleted one's id is never served its client.
    version: Any = 1


class AccountDirectory(Protocol):
    """Installed by the tenancy app (workspaces), which owns the platform accounts: the ground floor asks it."""

    def credentials(self, account_id: int | None) -> AccountCredentials:
        """The account's URL, key and key version; None names the default account."""

    def key_version(self, account_id: int) -> Any:
        """The account's current key version as AccountCredentials.version gives it, read cheaply (None: gone)."""

    def account_of_workspace(self, workspace_id: int | None) -> int | None:
        """The id of the account a workspace is bound to (None: the default account)."""

    def default_account_id(self) -> int:
        """The default account's id (made from PLATFORM_API_URL / PLATFORM_API_KEY when none exists)."""

    def accounts_with_workspaces(self) -> dict[int, set[int]]:
        """Every account's id with the ids of the workspaces bound to it."""

    def workspace_prefixes(self, account_id: int) -> dict[int, str]:
        """The ids of the workspaces bound to the account, each with the prefix of its objects' remote names."""

    def record_outcome(self, account_id: int, error: PlatformError | None) -> None:
        """Note a call's outcome on the account (throttled by the directory)."""

    def describe_accounts(self) -> list[dict[str, Any]]:
        """Each account's name, state, key age and whether its key is due for rotation (no key, no hint)."""


#: How long a cached client trusts its key version before asking the directory again. A rotation in this
#: process forgets the account's client at once; other processes (workers) see the new key within this time.
KEY_RECHECK_SECONDS = 5.0

_directory: AccountDirectory | None = None
_override: PlatformClient | None = None
_transport: httpx.BaseTransport | None = None
_clients: dict[int | None, tuple[Any, float, PlatformClient]] = {}
_client_lock = threading.Lock()


def install_accounts(directory: AccountDirectory | None) -> None:
    """Make `directory` the source of every account's URL and key (WorkspacesConfig.ready())."""
    global _directory
    _directory = directory
    forget_all()


def _timeout_setting() -> float:
    from django.conf import settings

    return float(getattr(settings, "PLATFORM_TIMEOUT", 10.0))


def _from_settings() -> AccountCredentials:
    from django.conf import settings

    return AccountCredentials(0, settings.PLATFORM_API_URL, settings.PLATFORM_API_KEY)


def client_for_account(account_id: int | None) -> PlatformClient:
    """The process's pooled client for one platform account (None: the default account), built on first use
    and rebuilt when the account's key changed (its version, checked at most every KEY_RECHECK_SECONDS)."""
    if _override is not None:
        return _override
    if account_id is None and _directory is not None:
        account_id = _directory.default_account_id()
    now = time.monotonic()
    cached = _clients.get(account_id)
    if cached is not None and now - cached[1] < KEY_RECHECK_SECONDS:
        return cached[2]
    with _client_lock:
        cached = _clients.get(account_id)
        if cached is not None:
            version, checked, client = cached
            if now - checked < KEY_RECHECK_SECONDS:
                return client
            current = _directory.key_version(account_id) if _directory is not None and account_id else version
            if current == version:
                _clients[account_id] = (version, now, client)
                return client
            client.close()
        credentials = _directory.credentials(account_id) if _directory is not None else _from_settings()
        client = PlatformClient(credentials.base_url, credentials.api_key, timeout=_timeout_setting(),
                                transport=_transport)
        if _directory is not None and credentials.account_id:
            directory, known = _directory, credentials.account_id
            client.outcome_listener = lambda error: directory.record_outcome(known, error)
        _clients[account_id] = (credentials.version, now, client)
        return client


def client_for_workspace(workspace_id: int | None) -> PlatformClient:
    """The client of the account a workspace is bound to: every call for an object goes through this."""
    account_id = _directory.account_of_workspace(workspace_id) if _directory is not None else None
    return client_for_account(account_id)


def account_of_workspace(workspace_id: int | None) -> int | None:
    """The account a workspace is bound to (None without a directory, or while tests answer every account)."""
    if _directory is None or _override is not None:
        return None
    return _directory.account_of_workspace(workspace_id)


def accounts_with_workspaces() -> dict[int | None, set[int] | None]:
    """Each account with its workspaces; without a directory, one account (None) holding every workspace."""
    if _directory is None or _override is not None:
        return {None: None}
    return dict(_directory.accounts_with_workspaces())


def workspace_prefixes(account_id: int | None) -> dict[int, str]:
    """The workspaces bound to an account with their remote-name prefixes ({} without a directory)."""
    if _directory is None or account_id is None:
        return {}
    return dict(_directory.workspace_prefixes(account_id))


def default_account_id() -> int | None:
    return _directory.default_account_id() if _directory is not None else None


def describe_accounts() -> list[dict[str, Any]]:
    return _directory.describe_accounts() if _directory is not None else []


def get_client() -> PlatformClient:
    """The default account's client (the account made from PLATFORM_API_URL / PLATFORM_API_KEY)."""
    return client_for_account(None)


def forget_account(account_id: int | None) -> None:
    """Drop (and close) a cached client, e.g. right after this process changed the account's key."""
    with _client_lock:
        cached = _clients.pop(account_id, None)
    if cached is not None:
        cached[2].close()


def forget_all() -> None:
    with _client_lock:
        dropped = list(_clients.values())
        _clients.clear()
    for _version, _checked, client in dropped:
        client.close()


def set_client(client: PlatformClient | None) -> None:
    """Tests: answer every account with this one client (or None to build clients per account again)."""
    global _override
    with _client_lock:
        _override = client


def set_transport(transport: httpx.BaseTransport | None) -> None:
    """Tests: build every account's client over this transport (an emulator hub's MockTransport)."""
    global _transport
    _transport = transport
    forget_all()


def _reset_after_fork() -> None:
    # A forked worker must not share the parent's pooled sockets; drop (not close) the inherited clients
    # so closing cannot disturb the parent's connections, and take a fresh lock in case one was held.
    global _client_lock
    _clients.clear()
    _client_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
