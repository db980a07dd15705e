"""Platform accounts in the admin: added with a write-only key verified on save, rotated from their page, seen
only by the people of their workspaces, and the key never shown again anywhere (issue 16)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from django.urls import reverse

from project.audit.models import AuditEvent
from project.platform import client as platform_client
from project.platform.emulator import EmulatorHub
from project.sync.models import SyncJob
from tests.conftest import login
from tests.factories import UserFactory, grant
from workspaces.models import PlatformAccount, Workspace

pytestmark = pytest.mark.django_db

CANARY = "sk_kwcanary_Zq8Lm2Vx7Rt4Nw9Pb3Hy6Gd1Ks5Jf0Ac"
URL = "http://127.0.0.1:9"
ADD = "admin:workspaces_platformaccount_add"
LIST = "admin:workspaces_platformaccount_changelist"


@pytest.fixture
def hub() -> Iterator[EmulatorHub]:
    hub = EmulatorHub()
    hub.add_account("acme", api_key="root-acme-unused-000000000000").install_key(CANARY, service_account="keyward")
    platform_client.set_client(None)
    platform_client.set_transport(httpx.MockTransport(hub.handle))
    yield hub
    platform_client.set_transport(None)


def _absent(where: str, text: str) -> None:
    assert CANARY not in text, f"the key is in {where}"
    assert CANARY[3:20] not in text and CANARY[-20:-4] not in text, f"part of the key is in {where}"


def test_a_superuser_adds_an_account_and_its_key_appears_nowhere_afterwards(hub, superuser, workspace, caplog):
    caplog.set_level(logging.DEBUG)
    client = login(superuser)
    response = client.post(reverse(ADD), {"name": "Acme production", "base_url": URL, "api_key": CANARY,
                                          "workspace": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    account = PlatformAccount.objects.get(name="Acme production")
    assert account.state == "verified" and account.key_hint == CANARY[-4:]
    pages = {
        "list": client.get(reverse(LIST)),
        "change": client.get(reverse("admin:workspaces_platformaccount_change", args=[account.pk])),
        "rotate": client.get(reverse("admin:workspaces_platformaccount_rotate", args=[account.pk])),
        "audit": client.get(reverse("admin:audit_auditevent_changelist")),
        "health": client.get("/healthz"),
    }
    for name, page in pages.items():
        assert page.status_code in (200, 503), name
        _absent(name, page.content.decode())
    assert f"…{CANARY[-4:]}" in pages["change"].content.decode()
    _absent("the audit table", str(list(AuditEvent.objects.values())))
    _absent("the sync job table", str(list(SyncJob.objects.values())))
    _absent("the logs", caplog.text)


def test_a_wrong_key_is_an_error_on_its_field_and_nothing_is_saved(hub, superuser):
    response = login(superuser).post(reverse(ADD), {"name": "Bogus", "base_url": URL,
                                                    "api_key": "sk_unknown_0000000000000000000000000000000"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "refused this key" in str(errors["api_key"])
    assert not PlatformAccount.objects.filter(name="Bogus").exists()
    assert "sk_unknown_00000000000" not in response.content.decode()  # the field never renders what was typed


def test_an_admin_must_bind_a_new_account_to_a_workspace_they_manage(hub, owner, workspace, other_workspace):
    client = login(owner)
    refused = client.post(reverse(ADD), {"name": "Mine", "base_url": URL, "api_key": CANARY, "workspace": ""})
    assert refused.status_code == 200 and not PlatformAccount.objects.filter(name="Mine").exists()
    assert "workspace" in refused.context["adminform"].form.errors
    foreign = client.post(reverse(ADD), {"name": "Mine", "base_url": URL, "api_key": CANARY,
                                         "workspace": other_workspace.pk})
    assert foreign.status_code == 200 and not PlatformAccount.objects.filter(name="Mine").exists()
    made = client.post(reverse(ADD), {"name": "Mine", "base_url": URL, "api_key": CANARY, "workspace": workspace.pk})
    assert made.status_code == 302
    account = PlatformAccount.objects.get(name="Mine")
    assert Workspace.objects.get(pk=workspace.pk).platform_account == account


def test_people_of_other_workspaces_neither_see_nor_manage_an_account(hub, superuser, owner, workspace,
                                                                      other_workspace, outsider):
    login(superuser).post(reverse(ADD), {"name": "Acme only", "base_url": URL, "api_key": CANARY,
                                         "workspace": workspace.pk})
    account = PlatformAccount.objects.get(name="Acme only")
    change = reverse("admin:workspaces_platformaccount_change", args=[account.pk])
    rotate = reverse("admin:workspaces_platformaccount_rotate", args=[account.pk])
    assert "Acme only" not in login(outsider).get(reverse(LIST)).content.decode()
    assert login(outsider).get(change).status_code == 404
    assert login(outsider).post(rotate, {"overlap_hours": 1}).status_code == 404
    lead = UserFactory(username="lead")
    grant(lead, "Team lead", workspace)
    assert login(lead).get(change).status_code == 200  # sees it: it serves their workspace
    assert login(lead).post(rotate, {"overlap_hours": 1}).status_code == 403  # no workspace.manage
    assert "Acme only" in login(owner).get(reverse(LIST)).content.decode()


def test_the_key_is_rotated_from_the_accounts_page(hub, owner, superuser, workspace):
    login(superuser).post(reverse(ADD), {"name": "Acme", "base_url": URL, "api_key": CANARY,
                                         "workspace": workspace.pk})
    account = PlatformAccount.objects.get(name="Acme")
    client = login(owner)
    page = client.get(reverse("admin:workspaces_platformaccount_change", args=[account.pk])).content.decode()
    assert 'id="rotate-link"' in page and 'id="verify-link"' in page
    response = client.post(reverse("admin:workspaces_platformaccount_rotate", args=[account.pk]),
                           {"successor": "", "overlap_hours": 2}, follow=True)
    assert response.status_code == 200
    rotated = PlatformAccount.objects.get(pk=account.pk)
    assert rotated.key_version == account.key_version + 1 and rotated.previous_key_hint == CANARY[-4:]
    assert "now uses a new key" in response.content.decode()
    _absent("the rotation's answer", response.content.decode())
    assert rotated.api_key not in response.content.decode()
    assert AuditEvent.objects.filter(action="platform_account.key_rotate", actor_user=owner).exists()
