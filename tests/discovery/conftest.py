"""Two platform accounts, each with a workspace alone on it, behind one emulator hub: "acme" and "globex". Objects
"built elsewhere" are seeded on the emulators directly, as a team would make them in the platform's dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from project.actors import SYSTEM
from project.platform import client as platform_client
from project.platform.emulator import Emulator, EmulatorHub
from workspaces.models import PlatformAccount, Workspace
from workspaces.services import platform_accounts as accounts
from workspaces.services import workspace_create

URL = "http://127.0.0.1:9"  # never dialled: every account's client goes through the hub's transport
KEYS = {"acme": "sk_acme_admin_key_0000000000000000000000000000000001",
        "globex": "sk_globex_admin_key_000000000000000000000000000000002"}


@dataclass
class Tenant:
    account: PlatformAccount
    workspace: Workspace
    emulator: Emulator


@pytest.fixture
def hub(settings) -> Iterator[EmulatorHub]:
    hub = EmulatorHub()
    # The default account (made from the settings) is there too, empty: a reconcile reads every account.
    hub.add_account("default", api_key=settings.PLATFORM_API_KEY)
    for name, key in KEYS.items():
        hub.add_account(name, api_key=f"root-{name}-unused-0000000000").install_key(key, service_account="keyward")
    platform_client.set_client(None)
    platform_client.set_transport(httpx.MockTransport(hub.handle))
    yield hub
    platform_client.set_transport(None)


def _tenant(hub: EmulatorHub, name: str) -> Tenant:
    account = accounts.platform_account_create(actor=SYSTEM, name=f"{name.title()} production", base_url=URL,
                                               api_key=KEYS[name])
    workspace = workspace_create(actor=SYSTEM, name=name.title(), slug=name, platform_account=account)
    return Tenant(account, workspace, hub.account(name))


@pytest.fixture
def acme(db: None, hub: EmulatorHub) -> Tenant:
    return _tenant(hub, "acme")


@pytest.fixture
def globex(db: None, hub: EmulatorHub) -> Tenant:
    return _tenant(hub, "globex")
