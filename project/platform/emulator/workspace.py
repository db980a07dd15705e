"""Workspace secrets and tools, and the references between them (``used_by``, in-use refusals)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from .agents import AgentRoutes
from .common import (
    ACCESS_INFO,
    NO_BODY,
    TOOL_NAME,
    ApiError,
    Call,
    check_literal,
    check_str,
    invalid,
    not_found,
    paginate,
    parse_bool,
    parse_page_size,
    platform_error,
    random_id,
    require_object,
)
from .core import CONVAI_READ, CONVAI_WRITE, Reply, route

TOOL_TYPES = ("webhook", "client", "system", "mcp")
HEADER_LOCATORS = ("secret_id", "variable_name", "env_var_label")


class WorkspaceRoutes(AgentRoutes):
    """Secrets (values stored, never returned) and tools (whose headers may reference secrets)."""

    def _reset_resources(self) -> None:
        super()._reset_resources()
        self._secrets: dict[str, dict[str, Any]] = {}
        self._tools: dict[str, dict[str, Any]] = {}

    def _object_counts(self) -> dict[str, int]:
        return {**super()._object_counts(), "secrets": len(self._secrets), "tools": len(self._tools)}

    def secret_value(self, secret_id: str) -> str:
        """The stored value, for tests asserting that a value arrived; no HTTP route exposes it."""
        with self._lock:
            return str(self._secrets[secret_id]["value"])

    # --- references ------------------------------------------------------------------------------

    @staticmethod
    def _locator_secret_ids(headers: Any) -> set[str]:
        """The secret ids that request headers reference ({"secret_id": …} values)."""
        if not isinstance(headers, dict):
            return set()
        return {v["secret_id"] for v in headers.values() if isinstance(v, dict) and isinstance(v.get("secret_id"), str)}

    def _header_secret_ids(self, tool_config: dict[str, Any]) -> set[str]:
        api_schema = tool_config.get("api_schema")
        return self._locator_secret_ids(api_schema.get("request_headers") if isinstance(api_schema, dict) else None)

    @staticmethod
    def _initiation_webhook(platform_settings: Any) -> Any:
        overrides = platform_settings.get("workspace_overrides") if isinstance(platform_settings, dict) else None
        return overrides.get("conversation_initiation_client_data_webhook") if isinstance(overrides, dict) else None

    def _webhook_secret_ids(self, agent: dict[str, Any]) -> set[str]:
        hook = self._initiation_webhook(agent["platform_settings"])
        return self._locator_secret_ids(hook.get("request_headers") if isinstance(hook, dict) else None)

    def _agents_with_webhook_secret(self, secret_id: str) -> list[dict[str, Any]]:
        agents = [a for a in self._agents.values() if secret_id in self._webhook_secret_ids(a)]
        return sorted(agents, key=lambda a: a["seq"])

    def _check_agent_references(self, body: dict[str, Any]) -> None:
        # ConversationInitiationClientDataWebhook: {url, request_headers: {name: str | {secret_id}}}, or null.
        loc: tuple[str | int, ...] = ("body", "platform_settings", "workspace_overrides",
                                      "conversation_initiation_client_data_webhook")
        hook = self._initiation_webhook(body.get("platform_settings"))
        if hook is None:
            return
        hook = require_object(hook, loc)
        check_str(hook, "url", loc, required=True)
        headers = hook.get("request_headers")
        if not isinstance(headers, dict):
            raise invalid((*loc, "request_headers"), "Input should be a valid dictionary", "dict_type", headers)
        for header, value in headers.items():
            if isinstance(value, str):
                continue
            if not isinstance(value, dict) or not isinstance(value.get("secret_id"), str):
                raise invalid((*loc, "request_headers", header), "Input should be a string or a secret locator",
                              "union_error", value)
            if value["secret_id"] not in self._secrets:
                # UNCONFIRMED, as for tools: a dangling reference is refused here.
                raise invalid((*loc, "request_headers", header, "secret_id"), "Secret not found", "value_error")

    def _tools_using_secret(self, secret_id: str) -> list[dict[str, Any]]:
        tools = [t for t in self._tools.values() if secret_id in self._header_secret_ids(t["tool_config"])]
        return sorted(tools, key=lambda t: t["seq"])

    def _agents_using_tool(self, tool_id: str) -> list[dict[str, Any]]:
        agents = [a for a in self._agents.values() if tool_id in self._agent_tool_ids(a)]
        return sorted(agents, key=lambda a: a["seq"])

    def _used_by(self, secret_id: str, limit: int | None) -> dict[str, Any]:
        tools = self._tools_using_secret(secret_id)
        tool_ids = {t["id"] for t in tools}
        agents = [a for a in self._agents.values() if tool_ids & set(self._agent_tool_ids(a))] if tool_ids else []
        shown_tools = tools if limit is None else tools[:limit]
        shown_agents = agents if limit is None else agents[:limit]
        return {
            "tools": [
                {
                    "type": "available",
                    "id": t["id"],
                    "name": t["tool_config"].get("name", ""),
                    "created_at_unix_secs": t["created"],
                    "access_level": "admin",
                }
                for t in shown_tools
            ],
            "tools_has_more": len(shown_tools) < len(tools),
            # Agents depend on the secret transitively, through the tools they list in tool_ids.
            "agents": [
                {
                    "type": "available",
                    "id": a["agent_id"],
                    "name": a["name"],
                    "created_at_unix_secs": a["created"],
                    "access_level": "admin",
                    "referenced_resource_ids": sorted(tool_ids & set(self._agent_tool_ids(a))),
                }
                for a in shown_agents
            ],
            "agents_has_more": len(shown_agents) < len(agents),
            "phone_numbers": [],
            "phone_numbers_has_more": False,
            "mcp_servers": [],
            "others": ["conversation_initiation_webhook"] if self._agents_with_webhook_secret(secret_id) else [],
        }

    # --- secrets ---------------------------------------------------------------------------------

    def _secret(self, secret_id: str) -> dict[str, Any]:
        secret = self._secrets.get(secret_id)
        if secret is None:
            raise not_found("secret", "Secret not found")
        return secret

    def _secret_view(self, secret: dict[str, Any], limit: int | None = None) -> dict[str, Any]:
        return {
            "type": "stored",
            "secret_id": secret["secret_id"],
            "name": secret["name"],
            "used_by": self._used_by(secret["secret_id"], limit),
        }

    def _check_secret_body(self, body: Any, literal: str) -> dict[str, Any]:
        body = require_object(body)
        check_literal(body, "type", literal, ("body",))
        check_str(body, "name", ("body",), required=True)
        check_str(body, "value", ("body",), required=True)
        return body

    #: How refusals whose shape the platform does not document look: "coded" (409 already_exists, 400
    #: secret_in_use) or "plain" (a 400 with a generic code and only the message saying why). Keyward must handle both.
    refusal_style = "coded"

    def _refuse_duplicate_secret(self, name: str, exclude: str | None = None) -> None:
        # UNCONFIRMED: the platform's answer to a duplicate name; emulated per refusal_style.
        if any(s["name"] == name and s["secret_id"] != exclude for s in self._secrets.values()):
            if self.refusal_style == "plain":
                raise ApiError(400, {"detail": {"status": "invalid_request",
                                                "message": f"A secret with the name {name!r} already exists."}})
            raise platform_error(409, "conflict_error", "already_exists", f"A secret named {name!r} already exists.")

    @route("POST", "/v1/convai/secrets", scopes=CONVAI_WRITE, create=True)
    def _secret_create(self, call: Call) -> Reply:
        body = self._check_secret_body(call.body, "new")
        self._refuse_duplicate_secret(body["name"])
        secret_id = str(uuid.uuid4())
        self._secrets[secret_id] = {
            "secret_id": secret_id,
            "name": body["name"],
            "value": body["value"],
            "created": self._now(),
            "seq": self._next_seq(),
        }
        return 200, {"type": "stored", "secret_id": secret_id, "name": body["name"]}

    @route("GET", "/v1/convai/secrets", scopes=CONVAI_READ)
    def _secret_list(self, call: Call) -> Reply:
        page_size = parse_page_size(call.query, None)  # omitted means every secret
        limit = None
        if call.query.get("dependency_limit"):
            limit = int(call.query["dependency_limit"]) if call.query["dependency_limit"].isdigit() else None
            if limit is None or not 1 <= limit <= 100:
                raise invalid(("query", "dependency_limit"), "Input should be between 1 and 100", "value_error")
        prefix = call.query.get("search") or ""
        matching = [s for s in self._secrets.values() if s["name"].startswith(prefix)]
        page, next_cursor = paginate(
            matching,
            lambda s: (s["name"], s["seq"]),
            descending=False,
            page_size=page_size,
            cursor=call.query.get("cursor"),
        )
        return 200, {"secrets": [self._secret_view(s, limit) for s in page], "next_cursor": next_cursor}

    @route("GET", "/v1/convai/secrets/{secret_id}", scopes=CONVAI_READ)
    def _secret_get(self, call: Call) -> Reply:
        return 200, self._secret_view(self._secret(call.args["secret_id"]))

    @route("PATCH", "/v1/convai/secrets/{secret_id}", scopes=CONVAI_WRITE)
    def _secret_update(self, call: Call) -> Reply:
        secret = self._secret(call.args["secret_id"])
        body = self._check_secret_body(call.body, "update")
        self._refuse_duplicate_secret(body["name"], exclude=secret["secret_id"])
        secret["name"], secret["value"] = body["name"], body["value"]
        return 200, {"type": "stored", "secret_id": secret["secret_id"], "name": secret["name"]}

    @route("DELETE", "/v1/convai/secrets/{secret_id}", scopes=CONVAI_WRITE)
    def _secret_delete(self, call: Call) -> Reply:
        secret = self._secret(call.args["secret_id"])
        users = self._tools_using_secret(secret["secret_id"])
        hooks = self._agents_with_webhook_secret(secret["secret_id"])
        if users or hooks:
            # UNCONFIRMED status/body: emulated as 400 secret_in_use naming the referencing tools and agents.
            names = ", ".join([*(t["tool_config"].get("name", t["id"]) for t in users),
                               *(f"the conversation initiation webhook of agent {a['agent_id']}" for a in hooks)])
            if self.refusal_style == "plain":
                raise ApiError(400, {"detail": {"status": "invalid_request",
                                                "message": f"Cannot delete: the secret is in use by {names}."}})
            raise platform_error(400, "validation_error", "secret_in_use", f"Secret is used by: {names}")
        del self._secrets[secret["secret_id"]]
        return 204, NO_BODY

    # --- tools -----------------------------------------------------------------------------------

    def _tool(self, tool_id: str) -> dict[str, Any]:
        tool = self._tools.get(tool_id)
        if tool is None:
            raise not_found("tool", "Tool not found")
        return tool

    def _tool_view(self, tool: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": tool["id"],
            "tool_config": copy.deepcopy(tool["tool_config"]),
            "access_info": dict(ACCESS_INFO),
            "usage_stats": {"total_calls": 0, "avg_latency_secs": 0.0},
            "response_mocks": copy.deepcopy(tool["response_mocks"]),
        }

    def _check_tool_body(self, body: Any) -> dict[str, Any]:
        body = require_object(body)
        loc: tuple[str | int, ...] = ("body", "tool_config")
        config = require_object(body.get("tool_config"), loc)
        kind = config.get("type")
        if kind not in TOOL_TYPES:
            raise invalid(
                (*loc, "type"),
                "Input tag does not match any of the expected tags: 'webhook', 'client', 'system', 'mcp'",
                "union_tag_invalid",
                kind,
            )
        check_str(config, "name", loc, required=True)
        if kind in ("webhook", "client"):
            if not TOOL_NAME.match(config["name"]):
                raise invalid(
                    (*loc, "name"),
                    "String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
                    "string_pattern_mismatch",
                    config["name"],
                )
            check_str(config, "description", loc, required=True)
        if kind == "webhook":
            self._check_api_schema(config.get("api_schema"), (*loc, "api_schema"))
        mocks = body.get("response_mocks")
        if mocks is not None and not isinstance(mocks, list):
            raise invalid(("body", "response_mocks"), "Input should be a valid list", "list_type", mocks)
        return body

    def _check_api_schema(self, api_schema: Any, loc: tuple[str | int, ...]) -> None:
        api_schema = require_object(api_schema, loc)
        check_str(api_schema, "url", loc, required=True)
        headers = api_schema.get("request_headers")
        if headers is None:
            return
        if not isinstance(headers, dict):
            raise invalid((*loc, "request_headers"), "Input should be a valid dictionary", "dict_type", headers)
        for header, value in headers.items():
            if isinstance(value, str):
                continue
            if not isinstance(value, dict) or not any(isinstance(value.get(k), str) for k in HEADER_LOCATORS):
                raise invalid(
                    (*loc, "request_headers", header),
                    "Input should be a string or a locator",
                    "union_error",
                    value,
                )
            secret_id = value.get("secret_id")
            if secret_id is not None and secret_id not in self._secrets:
                # UNCONFIRMED: the platform must resolve the secret at call time; refusing a dangling
                # reference here surfaces ordering bugs (tool synced before its secret) early.
                raise invalid((*loc, "request_headers", header, "secret_id"), "Secret not found", "value_error")

    @route("POST", "/v1/convai/tools", scopes=CONVAI_WRITE, create=True)
    def _tool_create(self, call: Call) -> Reply:
        body = self._check_tool_body(call.body)
        tool_id = random_id("tool_")
        config = {"type": body["tool_config"]["type"], **body["tool_config"]}
        self._tools[tool_id] = {
            "id": tool_id,
            "tool_config": config,
            "response_mocks": body.get("response_mocks"),
            "created": self._now(),
            "seq": self._next_seq(),
        }
        return 200, self._tool_view(self._tools[tool_id])

    @route("GET", "/v1/convai/tools", scopes=CONVAI_READ)
    def _tool_list(self, call: Call) -> Reply:
        page_size = parse_page_size(call.query, 30)
        prefix = call.query.get("search") or ""
        matching = [t for t in self._tools.values() if str(t["tool_config"].get("name", "")).startswith(prefix)]
        descending = call.query.get("sort_direction", "desc") != "asc"
        page, next_cursor = paginate(
            matching,
            lambda t: (t["created"], t["seq"]),
            descending=descending,
            page_size=page_size,
            cursor=call.query.get("cursor"),
        )
        return 200, {
            "tools": [self._tool_view(t) for t in page],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }

    @route("GET", "/v1/convai/tools/{tool_id}", scopes=CONVAI_READ)
    def _tool_get(self, call: Call) -> Reply:
        return 200, self._tool_view(self._tool(call.args["tool_id"]))

    @route("PATCH", "/v1/convai/tools/{tool_id}", scopes=CONVAI_WRITE)
    def _tool_update(self, call: Call) -> Reply:
        tool = self._tool(call.args["tool_id"])
        body = self._check_tool_body(call.body)
        # The body is a whole ToolRequestModel, so the config is replaced rather than merged.
        tool["tool_config"] = {"type": body["tool_config"]["type"], **body["tool_config"]}
        if "response_mocks" in body:
            tool["response_mocks"] = body["response_mocks"]
        return 200, self._tool_view(tool)

    @route("DELETE", "/v1/convai/tools/{tool_id}", scopes=CONVAI_WRITE)
    def _tool_delete(self, call: Call) -> Reply:
        tool = self._tool(call.args["tool_id"])
        force = parse_bool(call.query, "force", False)
        dependents = self._agents_using_tool(tool["id"])
        if dependents and not force:
            # UNCONFIRMED status/body; mirrors secret_in_use.
            names = ", ".join(a["name"] or a["agent_id"] for a in dependents)
            raise platform_error(400, "validation_error", "tool_in_use", f"Tool is used by agents: {names}")
        for agent in dependents:
            # force=true removes the tool from the dependent agents, as the spec describes.
            prompt = agent["conversation_config"]["agent"]["prompt"]
            prompt["tool_ids"] = [t for t in prompt["tool_ids"] if t != tool["id"]]
            agent["updated"] = self._now()
        del self._tools[tool["id"]]
        return 200, {}
