"""An in-memory emulator of the platform's HTTP contract, for development and tests (no Django).

Use it in-process as ``httpx.MockTransport(Emulator().handle)`` or on loopback via ``Emulator().serve()``.
Assumptions where the platform's behaviour is UNCONFIRMED are marked at the code that makes them.
"""

from __future__ import annotations

import copy
from typing import Any

from .accounts import AccountRoutes
from .auth_connections import AuthConnectionRoutes
from .common import PERMISSION_TYPES
from .conversations import ConversationError, ConversationRoutes
from .core import hash_key
from .hub import EmulatorHub
from .server import EmulatorServer, is_loopback_host
from .speech import SpeechTokenRoutes
from .workspace import WorkspaceRoutes

__all__ = ["PERMISSION_TYPES", "ConversationError", "Emulator", "EmulatorHub", "EmulatorServer", "hash_key",
           "is_loopback_host"]


class Emulator(ConversationRoutes, SpeechTokenRoutes, AuthConnectionRoutes, WorkspaceRoutes, AccountRoutes):
    """Agents, conversation credentials, single-use speech tokens, secrets, tools, auth connections, service
    accounts, keys and usage, in memory."""

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        """Run this emulator on loopback in a daemon thread; ``port=0`` picks a free port."""
        return EmulatorServer(self, host, port)

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Objects "built elsewhere" (in the platform's dashboard, CLI or API), from a fixture like
        ``demo_seed.json``: secrets, tools referencing them by name, agents (prompt, voice, tools by name, tags,
        auth, shareable token), service accounts with keys, auth connections and the workspace-wide initiation
        webhook. Goes through the account's own HTTP routes (so the platform's validation applies), with its
        admin key. Returns counts."""
        import secrets as random_secrets

        import httpx

        counts: dict[str, int] = {}
        http = httpx.Client(base_url="http://emulator.seed", transport=httpx.MockTransport(self.handle),
                            headers={"xi-api-key": self.api_key})
        with http:
            secret_ids: dict[str, str] = {}
            for secret in fixture.get("secrets", []):
                value = secret.get("value") or random_secrets.token_hex(16)
                made = http.post("/v1/convai/secrets", json={"type": "new", "name": secret["name"], "value": value})
                secret_ids[secret["name"]] = made.json()["secret_id"]
            tool_ids: dict[str, str] = {}
            for tool in fixture.get("tools", []):
                headers = {k: ({"secret_id": secret_ids[v["secret"]]} if isinstance(v, dict) else v)
                           for k, v in (tool.get("headers") or {}).items()}
                config = {"type": "webhook", "name": tool["name"], "description": tool.get("description", ""),
                          "api_schema": {"url": tool["url"], "method": tool.get("method", "POST"),
                                         "request_headers": headers}}
                tool_ids[tool["name"]] = http.post("/v1/convai/tools", json={"tool_config": config}).json()["id"]
            for agent in fixture.get("agents", []):
                self.seed_agent(name=agent["name"], prompt=agent.get("prompt", ""), voice_id=agent.get("voice_id", ""),
                                tool_ids=[tool_ids[n] for n in agent.get("tools", [])], tags=agent.get("tags"),
                                auth=agent.get("auth"), max_duration_seconds=agent.get("max_duration_seconds"),
                                archived=agent.get("archived", False))
            for account in fixture.get("service_accounts", []):
                sa = http.post("/v1/service-accounts", json={"name": account["name"]}).json()["service-account-user-id"]
                for key in account.get("keys", []):
                    body = {"name": key["name"], "permissions": key.get("permissions", "all")}
                    for optional in ("character_limit", "allowed_ips"):
                        if key.get(optional) is not None:
                            body[optional] = key[optional]
                    http.post(f"/v1/service-accounts/{sa}/api-keys", json=body)
                    counts["api_keys"] = counts.get("api_keys", 0) + 1
            for connection in fixture.get("auth_connections", []):
                http.post("/v1/workspace/auth-connections", json=connection)
            hook = fixture.get("workspace_webhook")
            if hook:
                self.set_workspace_webhook(hook["url"], hook.get("request_headers"))
        counts.update({kind: len(fixture.get(kind, [])) for kind in
                       ("secrets", "tools", "agents", "service_accounts", "auth_connections")})
        return counts

    def state_snapshot(self) -> dict[str, Any]:
        """Deep copies of every object; secrets without their values, keys as the list endpoint shows them."""
        with self._lock:
            return {
                "agents": [self._agent_view(a) for a in sorted(self._agents.values(), key=lambda a: a["seq"])],
                "secrets": [
                    {"secret_id": s["secret_id"], "name": s["name"]}
                    for s in sorted(self._secrets.values(), key=lambda s: s["seq"])
                ],
                "tools": [self._tool_view(t) for t in sorted(self._tools.values(), key=lambda t: t["seq"])],
                "auth_connections": self.auth_connections_snapshot(),
                "service_accounts": [
                    {k: v for k, v in a.items() if k != "seq"}
                    for a in sorted(self._service_accounts.values(), key=lambda a: a["seq"])
                ],
                "api_keys": [self._key_view(k) for k in sorted(self._keys.values(), key=lambda k: k["seq"])],
                "usage": copy.deepcopy(self._usage),
            }
