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
from .core import hash_key
from .hub import EmulatorHub
from .server import EmulatorServer, is_loopback_host
from .workspace import WorkspaceRoutes

__all__ = ["PERMISSION_TYPES", "Emulator", "EmulatorHub", "EmulatorServer", "hash_key", "is_loopback_host"]


class Emulator(AuthConnectionRoutes, WorkspaceRoutes, AccountRoutes):
    """Agents, conversation credentials, secrets, tools, auth connections, service accounts, keys and usage,
    in memory."""

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        """Run this emulator on loopback in a daemon thread; ``port=0`` picks a free port."""
        return EmulatorServer(self, host, port)

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
