"""The fixtures every app's tests share: the emulated platform, the Acme and Globex workspaces, people in the
built-in roles, the API-key fixtures (a synced service account, the clock) and the checks tests import
(`login`, `key_works`, `SECRET_SHAPE`, `drain`). Objects are built by tests/factories.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from project.platform import errors
from project.platform.client import PlatformClient, set_client
from project.platform.emulator import Emulator
from project.sync.services import outbox_drain
from tests.factories import UserFactory, WorkspaceFactory, make_person, make_synced_service_account
from workspaces.models import ServiceAccount

EMULATOR_KEY = "test-platform-key-7f3a9c"
#: An API key's secret as the pages show it once.
SECRET_SHAPE = re.compile(r"sk_[0-9a-f]{48}")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=EMULATOR_KEY)


@pytest.fixture
def platform(emulator: Emulator, settings: object) -> Iterator[PlatformClient]:
    """The process-wide platform client, wired to an in-process emulator."""
    settings.PLATFORM_API_KEY = EMULATOR_KEY  # type: ignore[attr-defined]
    client = PlatformClient(base_url="http://emulator.test", api_key=EMULATOR_KEY,
                            transport=httpx.MockTransport(emulator.handle))
    set_client(client)
    yield client
    set_client(None)
    client.close()


# Kinds served only by handlers the sync tests register themselves; job_enqueue refuses kinds outside the catalogue.
SYNC_TEST_KINDS = frozenset({"test_thing", "claim_test", "recon_test", "test_request_id"})


@pytest.fixture
def sync_test_kinds(monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """Let a test enqueue jobs of the sync tests' own kinds, beside the catalogue's."""
    from project.sync import kinds

    monkeypatch.setattr(kinds, "CATALOGUE", kinds.CATALOGUE | SYNC_TEST_KINDS)
    return SYNC_TEST_KINDS


@pytest.fixture
def workspace(db: None):
    return WorkspaceFactory(name="Acme", slug="acme")


@pytest.fixture
def other_workspace(db: None):
    return WorkspaceFactory(name="Globex", slug="globex")


@pytest.fixture
def superuser(db: None):
    return UserFactory(username="root", is_superuser=True)


@pytest.fixture
def owner(workspace):
    return make_person("owner", "Admin", workspace)


@pytest.fixture
def member(workspace):
    return make_person("member", "Developer", workspace)


@pytest.fixture
def viewer(workspace):
    return make_person("viewer", "Viewer", workspace)


@pytest.fixture
def security_admin(workspace):
    return make_person("security", "Security admin", workspace)


@pytest.fixture
def outsider(other_workspace):
    return make_person("outsider", "Admin", other_workspace)


def login(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return login(owner)


@pytest.fixture
def member_client(member) -> Client:
    return login(member)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return login(outsider)


# --- API keys on the platform -----------------------------------------------------------------------------
@pytest.fixture
def account(workspace, platform: PlatformClient) -> ServiceAccount:
    """A service account of the Acme workspace that exists on the (emulated) platform."""
    return make_synced_service_account(workspace, "billing-backend")


@pytest.fixture
def globex_account(other_workspace, platform: PlatformClient) -> ServiceAccount:
    return make_synced_service_account(other_workspace, "globex-backend")


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


def key_works(emulator: Emulator, secret: str, ip: str = "127.0.0.1") -> bool:
    """Does the platform accept this key (for a call its workspace_read scope allows)?"""
    transport = httpx.MockTransport(lambda request: emulator.handle(request, client_ip=ip))
    with PlatformClient("http://emulator.test", secret, transport=transport) as client:
        try:
            client.usage_by_api_key(start_ms=1_600_000_000_000, end_ms=1_600_000_001_000)
        except errors.AuthenticationFailed:
            return False
    return True


def drain() -> int:
    """Run every due outbox job now, against the process-wide platform client."""
    return outbox_drain(time_budget=30)


@pytest.fixture(autouse=True)
def _fresh_platform_clients() -> Iterator[None]:
    """Each test starts with no pooled platform client and no cached workspace-to-account binding: a rolled-back
    test's ids are reused by the next one."""
    from project.platform import client as platform_client
    from project.sync.services import drain
    from workspaces.directory import directory

    platform_client.forget_all()
    directory.forget()
    drain._pauses = drain._AccountPauses()
    yield
    platform_client.forget_all()
    directory.forget()


@pytest.fixture(autouse=True)
def _eager_celery() -> Iterator[None]:
    """Tasks run in-process in tests; the real-broker tests switch this off."""
    from project.celery import app

    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture(autouse=True)
def _builtin_roles_after_flush(request: pytest.FixtureRequest) -> None:
    """Transactional tests flush the database, data migrations' rows included; the built-in roles (which
    fixtures such as ``owner`` grant) are put back the way their migration made them."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("transactional_db")
    from workspaces.models import Role
    from workspaces.permissions import builtin_roles_ensure

    builtin_roles_ensure(Role)
