"""Several isolated platform accounts behind one address, as a team with several platform workspaces has.

Each account is a whole ``Emulator`` (its own agents, secrets, tools, service accounts, keys and usage). A request
goes to the account whose admin key, or one of whose issued keys, it presents; a key no account knows gets the
platform's 401. Control routes (``/_emulator/...``) act on the first account, or on a named one under
``/_emulator/accounts/<name>/...``; ``GET /_emulator/accounts`` lists them.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from .core import DEMO_OAUTH_TOKEN_PATH, _invalid_key, _json_bytes
from .server import EmulatorServer


class EmulatorHub:
    def __init__(self) -> None:
        from . import Emulator

        self._emulator_class = Emulator
        self._accounts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add_account(self, name: str, api_key: str, **options: Any) -> Any:
        """A new isolated account answering to `api_key` (its admin key)."""
        with self._lock:
            if name in self._accounts:
                raise ValueError(f"the emulator already has an account named {name!r}")
            if any(account.owns_key(api_key) for account in self._accounts.values()):
                raise ValueError("another emulated account already answers to this key")
            account = self._emulator_class(api_key=api_key, **options)
            self._accounts[name] = account
            return account

    def account(self, name: str) -> Any:
        return self._accounts[name]

    @property
    def accounts(self) -> dict[str, Any]:
        return dict(self._accounts)

    def _first(self) -> Any:
        return next(iter(self._accounts.values()))

    def account_for_key(self, presented: str | None) -> Any | None:
        if not presented:
            return None
        return next((a for a in list(self._accounts.values()) if a.owns_key(presented)), None)

    def handle(self, request: httpx.Request, client_ip: str | None = None) -> httpx.Response:
        path = request.url.path
        if path == "/_emulator/accounts" and request.method == "GET":
            return _json(200, {"accounts": sorted(self._accounts)})
        if path.startswith("/_emulator/accounts/"):
            name, _, rest = path.removeprefix("/_emulator/accounts/").partition("/")
            account = self._accounts.get(name)
            if account is None:
                return _json(404, {"detail": f"no emulated account named {name!r}"})
            return account.handle(_rerouted(request, f"/_emulator/{rest}"), client_ip)
        if path.startswith("/_emulator/") or path == DEMO_OAUTH_TOKEN_PATH:
            return self._first().handle(request, client_ip)
        account = self.account_for_key(request.headers.get("xi-api-key"))
        if account is None:
            error = _invalid_key()
            return _json(error.status, error.body)
        return account.handle(request, client_ip)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        return EmulatorServer(self, host, port)  # type: ignore[arg-type]


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json"}, content=_json_bytes(body))


def _rerouted(request: httpx.Request, path: str) -> httpx.Request:
    return httpx.Request(request.method, request.url.copy_with(path=path), headers=request.headers,
                         content=request.content)
