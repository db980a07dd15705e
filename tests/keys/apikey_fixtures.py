"""Fixtures and helpers of the API-key tests: `from tests.keys.apikey_fixtures import *` in each module.

(tests/keys/conftest.py belongs to the roles tests; these names do not clash with its fixtures.)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from keys import services
from keys.models import ApiKey, key_digest
from project.actors import SYSTEM, Actor
from project.platform import errors
from project.platform.client import PlatformClient
from project.platform.emulator import Emulator
from project.sync.services import outbox_drain
from tests.factories import ServiceAccountFactory
from workspaces import services as workspace_services
from workspaces.models import ServiceAccount

__all__ = ["SECRET_SHAPE", "Clock", "account", "clock", "drain", "env", "globex_account", "issue", "key_works",
           "usage_row"]

SECRET_SHAPE = re.compile(r"sk_[0-9a-f]{48}")


class Clock:
    """The time Django (timezone.now) and the emulator see; moved forward by tests, never slept through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
        self.now = timezone.now().replace(microsecond=0)
        monkeypatch.setattr(timezone, "now", lambda: self.now)
        emulator.clock = lambda: self.now.timestamp()

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Clock:
    return Clock(monkeypatch, emulator)


def _synced_account(workspace: Any, name: str) -> ServiceAccount:
    sa = ServiceAccountFactory(workspace=workspace, name=name)
    workspace_services.service_account_ensure_remote(actor=SYSTEM, service_account=sa)
    sa.refresh_from_db()
    return sa


@pytest.fixture
def account(workspace: Any, platform: PlatformClient) -> ServiceAccount:
    """A service account of the Acme workspace that exists on the (emulated) platform."""
    return _synced_account(workspace, "billing-backend")


@pytest.fixture
def globex_account(other_workspace: Any, platform: PlatformClient) -> ServiceAccount:
    return _synced_account(other_workspace, "globex-backend")


def env(workspace: Any, name: str = "prod") -> Any:
    return workspace.environments.get(name=name)


def issue(actor: Actor, account: ServiceAccount, env_name: str = "prod", **fields: Any) -> services.IssuedKey:
    """Issue a key with sensible defaults (a scope that lets the key call the usage endpoint)."""
    values: dict[str, Any] = {"name": "billing", "scopes": ["workspace_read"], "credit_quota": 1000}
    values.update(fields)
    return services.api_key_issue(actor=actor, service_account=account,
                                  environment=env(account.workspace, env_name), **values)


def key_works(emulator: Emulator, secret: str, ip: str = "127.0.0.1") -> bool:
    """Does the platform accept this key (for a call its workspace_read scope allows)?"""
    transport = httpx.MockTransport(lambda request: emulator.handle(request, client_ip=ip))
    with PlatformClient("http://emulator.test", secret, transport=transport) as client:
        try:
            client.usage_by_api_key(start_ms=1_600_000_000_000, end_ms=1_600_000_001_000)
        except errors.AuthenticationFailed:
            return False
    return True


def usage_row(key: ApiKey | str, when: datetime, credits: float = 10, requests: int = 1) -> dict[str, Any]:
    """A platform usage row for a key (or a secret), as the emulator's /_emulator/usage takes it."""
    hashed = key.digest if isinstance(key, ApiKey) else key_digest(key)
    return {"hashed_xi_api_key": hashed, "time_ms": int(when.timestamp() * 1000), "credits": credits,
            "requests": requests}


def drain() -> int:
    return outbox_drain(time_budget=30)

