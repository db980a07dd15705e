from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.test import Client

from project.platform.client import PlatformClient, set_client
from project.platform.emulator import Emulator
from tests.factories import UserFactory, WorkspaceFactory, grant

EMULATOR_KEY = "test-platform-key-7f3a9c"


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
    user = UserFactory(username="owner")
    grant(user, "Admin", workspace)
    return user


@pytest.fixture
def member(workspace):
    user = UserFactory(username="member")
    grant(user, "Developer", workspace)
    return user


@pytest.fixture
def viewer(workspace):
    user = UserFactory(username="viewer")
    grant(user, "Viewer", workspace)
    return user


@pytest.fixture
def outsider(other_workspace):
    user = UserFactory(username="outsider")
    grant(user, "Admin", other_workspace)
    return user


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
