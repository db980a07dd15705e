"""Conversations as the platform runs them, far enough to test what Keyward serves during one: the
conversation-initiation webhook at the start, and webhook tool calls with their headers, body and response
assignments.

Tests (and the bench) drive them from Python: ``conversation_start`` then ``conversation_call_tool`` as the model
would decide to call a tool. The emulator makes the HTTP calls itself, through ``outbound`` (an httpx transport;
the real network when None), so Keyward is called exactly as the platform would call it.

What the emulator does, as the platform documents it (exact runtime details UNCONFIRMED):
- system variables ``system__conversation_id`` and ``system__agent_id`` exist from the start;
- the initiation webhook (the agent's ``workspace_overrides`` when ``overrides.enable_conversation_initiation_
  client_data_from_webhook`` is on) gets ``{agent_id, conversation_id}`` and its answer's ``dynamic_variables``
  join the conversation's;
- a tool's ``request_headers`` resolve a ``{"secret_id"}`` to the workspace secret's value, a
  ``{"variable_name"}`` to a dynamic variable, and ``{{name}}`` inside a string to a dynamic variable;
- a body property with ``dynamic_variable`` takes that variable, ``constant_value`` its constant, otherwise the
  value the model chose (``parameters``);
- ``assignments`` put the value at ``value_path`` of a JSON answer into a dynamic variable; ``sanitize`` removes it
  from what the model sees.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx

from .common import ApiError, invalid, random_id
from .core import EmulatorCore

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class ConversationError(Exception):
    """The conversation cannot go on as asked (unknown conversation, a tool the agent does not have)."""


def _path_get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _path_drop(data: Any, path: str) -> None:
    *head, last = path.split(".")
    for part in head:
        data = data.get(part) if isinstance(data, dict) else None
    if isinstance(data, dict):
        data.pop(last, None)


class ConversationRoutes(EmulatorCore):
    #: Where the emulator's own outgoing calls go (webhooks, tools): an httpx transport, or the network.
    outbound: httpx.BaseTransport | None = None

    def _reset_resources(self) -> None:
        super()._reset_resources()
        self._conversations: dict[str, dict[str, Any]] = {}

    def _check_tool_body(self, body: Any) -> dict[str, Any]:
        """Tools may carry response ``assignments`` (DynamicVariableAssignment): each needs a variable and a path."""
        body = super()._check_tool_body(body)  # type: ignore[misc]
        assignments = body["tool_config"].get("assignments")
        if assignments is None:
            return body
        loc = ("body", "tool_config", "assignments")
        if not isinstance(assignments, list):
            raise invalid(loc, "Input should be a valid list", "list_type", assignments)
        for index, item in enumerate(assignments):
            for name in ("dynamic_variable", "value_path"):
                if not isinstance(item, dict) or not isinstance(item.get(name), str) or not item[name]:
                    raise invalid((*loc, index, name), "Field required", "missing")
            if item.get("source", "response") != "response":
                raise invalid((*loc, index, "source"), "Input should be 'response'", "literal_error", item["source"])
        return body

    def _http(self) -> httpx.Client:
        return httpx.Client(transport=self.outbound, timeout=30.0) if self.outbound else httpx.Client(timeout=30.0)

    def _resolve_header(self, value: Any, variables: dict[str, Any]) -> str | None:
        if isinstance(value, str):
            return _TEMPLATE.sub(lambda m: str(variables.get(m.group(1), "")), value)
        if isinstance(value, dict):
            if isinstance(value.get("secret_id"), str):
                secret = self._secrets.get(value["secret_id"])  # type: ignore[attr-defined]
                return secret["value"] if secret else None
            if isinstance(value.get("variable_name"), str):
                found = variables.get(value["variable_name"])
                return None if found is None else str(found)
        return None

    def _headers(self, headers: dict[str, Any], variables: dict[str, Any]) -> dict[str, str]:
        resolved = {}
        for name, value in (headers or {}).items():
            text = self._resolve_header(value, variables)
            if text is not None:
                resolved[name] = text
        return resolved

    def conversation_start(self, agent_id: str, *, conversation_id: str | None = None,
                           dynamic_variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a conversation with `agent_id` (e.g. with the id of a signed URL): calls the agent's initiation
        webhook when it is on. Returns the conversation (a copy): id, agent, status, dynamic variables, the
        webhook's HTTP status."""
        with self._lock:
            agent = copy.deepcopy(self._agent(agent_id))  # type: ignore[attr-defined]
            conversation_id = conversation_id or random_id("conv_")
            variables = {**(dynamic_variables or {}), "system__conversation_id": conversation_id,
                         "system__agent_id": agent_id}
            settings = agent["platform_settings"]
            hook = (settings.get("workspace_overrides") or {}).get("conversation_initiation_client_data_webhook")
            enabled = (settings.get("overrides") or {}).get("enable_conversation_initiation_client_data_from_webhook")
            request = None
            if enabled and isinstance(hook, dict) and hook.get("url"):
                request = (hook["url"], self._headers(hook.get("request_headers") or {}, variables))
        webhook_status = None
        if request is not None:
            with self._http() as http:
                answer = http.post(request[0], headers=request[1],
                                   json={"agent_id": agent_id, "conversation_id": conversation_id,
                                         "caller_id": None, "called_number": None})
            webhook_status = answer.status_code
            if answer.is_success:
                variables.update((answer.json() or {}).get("dynamic_variables") or {})
        with self._lock:
            conversation = {"conversation_id": conversation_id, "agent_id": agent_id, "status": "in-progress",
                            "dynamic_variables": variables, "webhook_status": webhook_status, "tool_calls": []}
            self._conversations[conversation_id] = conversation
            return copy.deepcopy(conversation)

    def conversation_end(self, conversation_id: str) -> None:
        with self._lock:
            self._conversation(conversation_id)["status"] = "done"

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._conversation(conversation_id))

    def _conversation(self, conversation_id: str) -> dict[str, Any]:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ConversationError(f"no conversation {conversation_id}")
        return conversation

    def conversation_call_tool(self, conversation_id: str, tool_name: str,
                               parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the agent's webhook tool named `tool_name` the way the platform does when the model decides to:
        returns ``{"status", "response" (what the model sees), "request": {"url", "headers", "body"}}`` and applies
        the tool's assignments to the conversation's dynamic variables."""
        with self._lock:
            conversation = self._conversation(conversation_id)
            if conversation["status"] != "in-progress":
                raise ConversationError(f"conversation {conversation_id} has ended")
            agent = self._agent(conversation["agent_id"])  # type: ignore[attr-defined]
            tool = next((t for t in self._tools.values()  # type: ignore[attr-defined]
                         if t["id"] in self._agent_tool_ids(agent)  # type: ignore[attr-defined]
                         and t["tool_config"].get("name") == tool_name), None)
            if tool is None or tool["tool_config"].get("type") != "webhook":
                raise ConversationError(f"the agent has no webhook tool {tool_name}")
            config = copy.deepcopy(tool["tool_config"])
            variables = dict(conversation["dynamic_variables"])
            schema = config.get("api_schema") or {}
            headers = self._headers(schema.get("request_headers") or {}, variables)
            body: dict[str, Any] = {}
            for name, prop in ((schema.get("request_body_schema") or {}).get("properties") or {}).items():
                if prop.get("dynamic_variable"):
                    body[name] = variables.get(prop["dynamic_variable"])
                elif prop.get("constant_value") not in (None, ""):
                    body[name] = prop["constant_value"]
                elif parameters and name in parameters:
                    body[name] = parameters[name]
            url = _TEMPLATE.sub(lambda m: str(variables.get(m.group(1), "")), schema.get("url", ""))
            method = schema.get("method") or "GET"
        with self._http() as http:
            answer = http.request(method, url, headers=headers, json=body if method != "GET" else None)
        try:
            payload = answer.json()
        except ValueError:
            payload = answer.text
        seen = copy.deepcopy(payload)
        with self._lock:
            conversation = self._conversation(conversation_id)
            if answer.is_success and isinstance(payload, dict | list):
                for assignment in config.get("assignments") or []:
                    value = _path_get(payload, assignment.get("value_path", ""))
                    if value is not None:
                        conversation["dynamic_variables"][assignment["dynamic_variable"]] = value
                    if assignment.get("sanitize"):
                        _path_drop(seen, assignment.get("value_path", ""))
            record = {"tool": tool_name, "status": answer.status_code, "response": seen,
                      "request": {"url": url, "method": method, "headers": headers, "body": body}}
            conversation["tool_calls"].append(record)
            return copy.deepcopy(record)

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        name = path.removeprefix("/_emulator/").strip("/")
        if name.startswith("conversations") and method == "POST":
            body = body if isinstance(body, dict) else {}
            try:
                if name == "conversations":
                    return 200, self.conversation_start(str(body["agent_id"]),
                                                        conversation_id=body.get("conversation_id"),
                                                        dynamic_variables=body.get("dynamic_variables"))
                parts = name.split("/")
                if len(parts) == 4 and parts[2] == "tools":
                    return 200, self.conversation_call_tool(parts[1], parts[3], body.get("parameters"))
                if len(parts) == 3 and parts[2] == "end":
                    self.conversation_end(parts[1])
                    return 200, {"ended": True}
            except (ConversationError, KeyError) as exc:
                raise ApiError(400, {"detail": f"bad emulator control request: {exc}"}) from None
        return super()._control(method, path, body)
