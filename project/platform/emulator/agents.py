"""Agents, conversation credentials (signed URL, WebRTC token) and the live conversation count."""

from __future__ import annotations

import copy
import secrets
from typing import Any
from urllib.parse import urlencode

from .common import (
    ACCESS_INFO,
    NO_BODY,
    Call,
    check_str,
    deep_merge,
    invalid,
    not_found,
    paginate,
    parse_bool,
    parse_page_size,
    random_id,
    require_object,
)
from .core import CONVAI_READ, CONVAI_WRITE, EmulatorCore, Reply, route

# The platform documents "up to 10 unique hostnames"; the spec itself sets no maxItems.
MAX_ALLOWLIST = 10

# Defaults the platform fills in (AuthSettings, AgentCallLimits, ConversationConfig) so reads look real.
PLATFORM_SETTINGS_DEFAULTS: dict[str, Any] = {
    "auth": {"enable_auth": False, "allowlist": [], "require_origin_header": False, "shareable_token": None},
    "call_limits": {"agent_concurrency_limit": -1, "daily_limit": 100000, "bursting_enabled": True},
    "archived": False,
}
CONVERSATION_CONFIG_DEFAULTS: dict[str, Any] = {"conversation": {"max_duration_seconds": 600}}
DEFAULT_VOICE_ID = "cjVigY5qzO86Huf0OWal"  # the voice an agent gets when its config names none


def _check_platform_settings(settings: Any, loc: tuple[str | int, ...]) -> None:
    if settings is None:
        return
    if not isinstance(settings, dict):
        raise invalid(loc, "Input should be a valid dictionary", "dict_type", settings)
    auth = settings.get("auth")
    if auth is None:
        return
    if not isinstance(auth, dict):
        raise invalid((*loc, "auth"), "Input should be a valid dictionary", "dict_type", auth)
    for flag in ("enable_auth", "require_origin_header"):
        if flag in auth and not isinstance(auth[flag], bool):
            raise invalid((*loc, "auth", flag), "Input should be a valid boolean", "bool_type", auth[flag])
    if "allowlist" not in auth:
        return
    allowlist = auth["allowlist"]
    if not isinstance(allowlist, list):
        raise invalid((*loc, "auth", "allowlist"), "Input should be a valid list", "list_type", allowlist)
    for index, item in enumerate(allowlist):
        if not isinstance(item, dict) or not isinstance(item.get("hostname"), str):
            raise invalid((*loc, "auth", "allowlist", index, "hostname"), "Field required", "missing", item)
    if len(allowlist) > MAX_ALLOWLIST:
        # UNCONFIRMED status/body: emulated as pydantic's too_long error on the list.
        raise invalid(
            (*loc, "auth", "allowlist"),
            f"List should have at most {MAX_ALLOWLIST} items after validation, not {len(allowlist)}",
            "too_long",
        )
    # enable_auth together with an allowlist is accepted on purpose: the platform does not refuse it.


def _check_agent_fields(body: dict[str, Any], *, creating: bool) -> None:
    loc = ("body",)
    if creating and "conversation_config" not in body:
        raise invalid((*loc, "conversation_config"), "Field required", "missing")
    config = body.get("conversation_config")
    if config is not None and not isinstance(config, dict):
        raise invalid((*loc, "conversation_config"), "Input should be a valid dictionary", "dict_type", config)
    if creating and config is None:
        raise invalid((*loc, "conversation_config"), "Input should be a valid dictionary", "dict_type")
    _check_platform_settings(body.get("platform_settings"), (*loc, "platform_settings"))
    check_str(body, "name", loc, required=False, nullable=True)
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise invalid((*loc, "tags"), "Input should be a valid list of strings", "list_type", tags)


class AgentRoutes(EmulatorCore):
    """Agent CRUD and everything that starts a conversation with an agent."""

    #: How PATCH treats nested objects, which the platform leaves UNCONFIRMED: "merge" deep-merges dicts (lists
    #: replace); "replace" swaps each top-level object sent (conversation_config, platform_settings) for the one in
    #: the body, with the platform's defaults filled in. Keyward's push must be right under both.
    patch_mode = "merge"
    #: Where a signed URL's conversation id goes with include_conversation_id, which the platform leaves UNCONFIRMED:
    #: "field" (a top-level conversation_id beside signed_url, as the SDK's wording suggests), "query" (in the
    #: URL) or "none" (not given at all). Keyward must read the first two and say so plainly for the third.
    signed_url_conversation_id = "field"

    def _reset_resources(self) -> None:
        super()._reset_resources()
        self._agents: dict[str, dict[str, Any]] = {}
        self._live_counts: dict[str, int] = {}
        self._convai_settings: dict[str, Any] = {"conversation_initiation_client_data_webhook": None,
                                                 "webhooks": None, "can_use_mcp_servers": True,
                                                 "rag_retention_period_days": None,
                                                 "conversation_embedding_retention_days": None}

    def _object_counts(self) -> dict[str, int]:
        return {**super()._object_counts(), "agents": len(self._agents)}

    def _agent(self, agent_id: str) -> dict[str, Any]:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise not_found("agent", "Agent not found")
        return agent

    def _agent_view(self, agent: dict[str, Any]) -> dict[str, Any]:
        return {
            "agent_id": agent["agent_id"],
            "name": agent["name"],
            "conversation_config": copy.deepcopy(agent["conversation_config"]),
            "metadata": {"created_at_unix_secs": agent["created"], "updated_at_unix_secs": agent["updated"]},
            "platform_settings": copy.deepcopy(agent["platform_settings"]),
            "phone_numbers": [],
            "whatsapp_accounts": [],
            "access_info": dict(ACCESS_INFO),
            "tags": list(agent["tags"]),
            "version_id": None,
            "branch_id": None,
            "main_branch_id": None,
        }

    def _agent_summary(self, agent: dict[str, Any]) -> dict[str, Any]:
        # AgentSummaryResponseModel: voice_id and updated_at_unix_secs are required by the SDK.
        tts = agent["conversation_config"].get("tts")
        return {
            "agent_id": agent["agent_id"],
            "name": agent["name"],
            "voice_id": str((tts or {}).get("voice_id") or DEFAULT_VOICE_ID) if isinstance(tts, dict | None)
            else DEFAULT_VOICE_ID,
            "tags": list(agent["tags"]),
            "created_at_unix_secs": agent["created"],
            "updated_at_unix_secs": agent["updated"],
            "access_info": dict(ACCESS_INFO),
            "last_call_time_unix_secs": None,
            "archived": bool(agent["platform_settings"].get("archived", False)),
        }

    def _agent_tool_ids(self, agent: dict[str, Any]) -> list[str]:
        prompt = agent["conversation_config"].get("agent", {}).get("prompt", {})
        tool_ids = prompt.get("tool_ids") if isinstance(prompt, dict) else None
        return [t for t in tool_ids if isinstance(t, str)] if isinstance(tool_ids, list) else []

    def _check_agent_references(self, body: dict[str, Any]) -> None:
        """References from an agent body to other objects (the workspace routes check secrets)."""

    @route("POST", "/v1/convai/agents/create", scopes=CONVAI_WRITE, create=True)
    def _agent_create(self, call: Call) -> Reply:
        body = require_object(call.body)
        _check_agent_fields(body, creating=True)
        self._check_agent_references(body)
        now = self._now()
        agent_id = random_id("agent_")
        self._agents[agent_id] = {
            "agent_id": agent_id,
            "name": body.get("name") or "",
            "conversation_config": deep_merge(CONVERSATION_CONFIG_DEFAULTS, body["conversation_config"]),
            "platform_settings": deep_merge(PLATFORM_SETTINGS_DEFAULTS, body.get("platform_settings") or {}),
            "tags": list(body.get("tags") or []),
            "created": now,
            "updated": now,
            "seq": self._next_seq(),
        }
        return 200, {"agent_id": agent_id}

    @route("GET", "/v1/convai/agents/{agent_id}", scopes=CONVAI_READ)
    def _agent_get(self, call: Call) -> Reply:
        return 200, self._agent_view(self._agent(call.args["agent_id"]))

    @route("GET", "/v1/convai/agents", scopes=CONVAI_READ)
    def _agent_list(self, call: Call) -> Reply:
        page_size = parse_page_size(call.query, 30)
        archived = parse_bool(call.query, "archived", False)
        search = (call.query.get("search") or "").lower()
        descending = call.query.get("sort_direction", "desc") != "asc"
        sort_by = call.query.get("sort_by") or "created_at"
        if sort_by not in ("name", "created_at", "call_count_7d"):
            raise invalid(
                ("query", "sort_by"),
                "Input should be 'name', 'created_at' or 'call_count_7d'",
                "enum",
                sort_by,
            )
        matching = [
            a
            for a in self._agents.values()
            if bool(a["platform_settings"].get("archived", False)) == archived and search in a["name"].lower()
        ]

        def key(a: dict[str, Any]) -> tuple[Any, ...]:
            # call_count_7d is always 0 here, so it orders like created_at.
            return (a["name"], a["seq"]) if sort_by == "name" else (a["created"], a["seq"])

        page, next_cursor = paginate(
            matching, key, descending=descending, page_size=page_size, cursor=call.query.get("cursor")
        )
        agents = [self._agent_summary(a) for a in page]
        return 200, {"agents": agents, "next_cursor": next_cursor, "has_more": next_cursor is not None}

    @route("PATCH", "/v1/convai/agents/{agent_id}", scopes=CONVAI_WRITE)
    def _agent_update(self, call: Call) -> Reply:
        agent = self._agent(call.args["agent_id"])
        body = require_object(call.body)
        _check_agent_fields(body, creating=False)
        self._check_agent_references(body)
        # UNCONFIRMED merge semantics (see patch_mode): by default dicts deep-merge, lists (the allowlist, tool_ids)
        # replace.
        replace = self.patch_mode == "replace"
        if body.get("conversation_config") is not None:
            base = CONVERSATION_CONFIG_DEFAULTS if replace else agent["conversation_config"]
            agent["conversation_config"] = deep_merge(base, body["conversation_config"])
        if body.get("platform_settings") is not None:
            base = PLATFORM_SETTINGS_DEFAULTS if replace else agent["platform_settings"]
            agent["platform_settings"] = deep_merge(base, body["platform_settings"])
        if body.get("name") is not None:
            agent["name"] = body["name"]
        if body.get("tags") is not None:
            agent["tags"] = list(body["tags"])
        agent["updated"] = self._now()
        return 200, self._agent_view(agent)

    @route("DELETE", "/v1/convai/agents/{agent_id}", scopes=CONVAI_WRITE)
    def _agent_delete(self, call: Call) -> Reply:
        self._agent(call.args["agent_id"])
        del self._agents[call.args["agent_id"]]
        self._live_counts.pop(call.args["agent_id"], None)
        return 204, NO_BODY

    # --- conversation credentials ----------------------------------------------------------------

    def _conversation_agent(self, call: Call) -> dict[str, Any]:
        agent_id = call.query.get("agent_id")
        if not agent_id:
            raise invalid(("query", "agent_id"), "Field required", "missing")
        parse_bool(call.query, "include_conversation_id", False)
        return self._agent(agent_id)

    @route("GET", "/v1/convai/conversation/get-signed-url", scopes=CONVAI_READ)
    def _signed_url(self, call: Call) -> Reply:
        agent = self._conversation_agent(call)
        params = {"agent_id": agent["agent_id"], "conversation_signature": secrets.token_urlsafe(32)}
        conversation_id = None
        if parse_bool(call.query, "include_conversation_id", False) and self.signed_url_conversation_id != "none":
            conversation_id = random_id("conv_")
            if self.signed_url_conversation_id == "query":
                params["conversation_id"] = conversation_id
        answer = {"signed_url": f"{self.base_ws}/v1/convai/conversation?{urlencode(params)}"}
        if conversation_id and self.signed_url_conversation_id == "field":
            answer["conversation_id"] = conversation_id
        return 200, answer

    @route("GET", "/v1/convai/conversation/token", scopes=CONVAI_READ)
    def _conversation_token(self, call: Call) -> Reply:
        self._conversation_agent(call)
        return 200, {"token": secrets.token_urlsafe(48), "conversation_id": random_id("conv_")}

    @route("GET", "/v1/convai/analytics/live-count", scopes=CONVAI_READ)
    def _live_count(self, call: Call) -> Reply:
        wanted = [a for a in (call.query.get("agent_ids") or "").split(",") if a]
        if call.query.get("agent_id"):
            wanted.append(call.query["agent_id"])
        if len(wanted) > 25:
            raise invalid(("query", "agent_ids"), "At most 25 agent ids", "too_long")
        # A filter naming an unknown agent simply counts nothing (no 404), like other list filters.
        ids = wanted or list(self._live_counts)
        return 200, {"count": sum(self._live_counts.get(a, 0) for a in ids)}

    # --- the workspace's convai settings (its workspace-wide conversation-initiation webhook) ----------------

    @route("GET", "/v1/convai/settings", scopes=CONVAI_READ)
    def _convai_settings_get(self, call: Call) -> Reply:
        return 200, copy.deepcopy(self._convai_settings)

    @route("PATCH", "/v1/convai/settings", scopes=CONVAI_WRITE)
    def _convai_settings_update(self, call: Call) -> Reply:
        body = require_object(call.body)
        hook = body.get("conversation_initiation_client_data_webhook", "absent")
        if hook != "absent":
            if hook is not None and (not isinstance(hook, dict) or not isinstance(hook.get("url"), str)):
                raise invalid(("body", "conversation_initiation_client_data_webhook", "url"), "Field required",
                              "missing", hook)
            self._convai_settings["conversation_initiation_client_data_webhook"] = (
                {"url": hook["url"], "request_headers": dict(hook.get("request_headers") or {})} if hook else None)
        return 200, copy.deepcopy(self._convai_settings)

    # --- objects "built elsewhere" (tests, make run's demo, run_emulator --seed) ---------------------------------

    def seed_agent(self, *, name: str, prompt: str = "", voice_id: str = "", tool_ids: list[str] | None = None,
                   tags: list[str] | None = None, auth: dict[str, Any] | None = None,
                   max_duration_seconds: int | None = None, archived: bool = False) -> str:
        """An agent as a team builds it in the platform's dashboard: prompt, voice, tools, its own tags and auth."""
        with self._lock:
            agent_id = random_id("agent_")
            config: dict[str, Any] = {"agent": {"first_message": f"Hi, this is {name}.",
                                                "prompt": {"prompt": prompt, "tool_ids": list(tool_ids or [])}},
                                      "tts": {"voice_id": voice_id or "cgSgspJ2msm6clMCkdW9"}}
            if max_duration_seconds is not None:
                config["conversation"] = {"max_duration_seconds": max_duration_seconds}
            now = self._now()
            self._agents[agent_id] = {
                "agent_id": agent_id, "name": name,
                "conversation_config": deep_merge(CONVERSATION_CONFIG_DEFAULTS, config),
                "platform_settings": deep_merge(PLATFORM_SETTINGS_DEFAULTS, {"auth": auth or {},
                                                                             "archived": archived}),
                "tags": list(tags or []), "created": now, "updated": now, "seq": self._next_seq(),
            }
            self.changes += 1
            return agent_id

    def set_workspace_webhook(self, url: str | None, headers: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._convai_settings["conversation_initiation_client_data_webhook"] = (
                {"url": url, "request_headers": dict(headers or {})} if url else None)

    def set_live_count(self, agent_id: str, count: int) -> None:
        """Tests and the control route set how many conversations an agent has running."""
        with self._lock:
            self._live_counts[agent_id] = count
