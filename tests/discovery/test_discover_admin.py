"""Discover and Adopt in the admin (issue 17): the account's Discover page, the review list, Adopt per object and
for all, and the drift page's Adopt."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from agents.models import Agent
from project.actors import SYSTEM
from project.sync.models import DiscoveryRun, Drift, Observation
from project.sync.services import reconcile_execute
from tests.conftest import login
from tests.factories import UserFactory, grant

pytestmark = pytest.mark.django_db


def _seed(tenant) -> None:
    tenant.emulator.seed_agent(name="Concierge", auth={"enable_auth": False,
                                                       "allowlist": [{"hostname": "hotel.example"}]})
    tenant.emulator.seed_agent(name="Kiosk", auth={"enable_auth": True})


def _admin_of(tenant):
    person = UserFactory(username="ada")
    grant(person, "Admin", tenant.workspace)
    return login(person)


def test_discover_page_runs_a_discovery_and_shows_what_is_not_managed(acme, django_capture_on_commit_callbacks):
    _seed(acme)
    client = _admin_of(acme)
    change = client.get(reverse("admin:workspaces_platformaccount_change", args=[acme.account.pk]))
    assert b'id="discover-link"' in change.content
    url = reverse("admin:workspaces_platformaccount_discover", args=[acme.account.pk])
    assert b"has not been discovered yet" in client.get(url).content
    with django_capture_on_commit_callbacks(execute=True):  # the worker (eager in tests) runs it after commit
        response = client.post(url, {"do": "discover"})
    assert response.status_code == 302
    run = DiscoveryRun.objects.get(account_id=acme.account.pk)
    assert run.state == "done" and run.requested_by == "ada"
    page = client.get(url).content.decode()
    assert "<td>Agents</td><td>2</td><td>2</td>" in page and 'id="adopt-all"' in page
    listing = client.get(reverse("admin:sync_observation_changelist"),
                         {"account": acme.account.pk, "kind": "agent", "managed": "no"}).content.decode()
    assert "Concierge" in listing and "allowlist: hotel.example" in listing and "would go to Acme" in listing


def test_adopt_all_from_the_discover_page(acme, django_capture_on_commit_callbacks):
    _seed(acme)
    client = _admin_of(acme)
    url = reverse("admin:workspaces_platformaccount_discover", args=[acme.account.pk])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"do": "discover"})
    response = client.post(url, {"do": "adopt", "workspace": acme.workspace.pk}, follow=True)
    assert "Adopted 2 agent(s)" in response.content.decode()
    assert set(Agent.objects.values_list("name", "origin")) == {("Concierge", "adopted"), ("Kiosk", "adopted")}


def test_adopt_selected_objects_through_the_list_action(acme):
    from project.sync.services import discovery

    _seed(acme)
    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False))
    client = _admin_of(acme)
    kiosk = Observation.objects.get(label="Kiosk")
    listing = reverse("admin:sync_observation_changelist")
    asked = client.post(listing, {"action": "adopt_selected", ACTION_CHECKBOX_NAME: [kiosk.pk]})
    assert asked.status_code == 200 and b"Adopt 1 object(s)" in asked.content
    done = client.post(listing, {"action": "adopt_selected", ACTION_CHECKBOX_NAME: [kiosk.pk], "apply": "1",
                                 "workspace": acme.workspace.pk}, follow=True)
    assert "Adopted 1 agent(s)" in done.content.decode()
    assert list(Agent.objects.values_list("name", flat=True)) == ["Kiosk"]
    again = client.post(listing, {"action": "adopt_selected", ACTION_CHECKBOX_NAME: [kiosk.pk], "apply": "1",
                                  "workspace": acme.workspace.pk}, follow=True)
    assert "Already adopted" in again.content.decode() and Agent.objects.count() == 1


def test_people_of_another_workspace_cannot_discover_or_see_the_list(acme, globex):
    _seed(acme)
    outsider = UserFactory(username="otto")
    grant(outsider, "Admin", globex.workspace)
    client = login(outsider)
    url = reverse("admin:workspaces_platformaccount_discover", args=[acme.account.pk])
    assert client.get(url).status_code == 404
    from project.sync.services import discovery

    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False))
    listing = client.get(reverse("admin:sync_observation_changelist")).content.decode()
    assert "Concierge" not in listing


def test_the_drift_page_adopts_an_agent_unknown_to_keyward(acme):
    from project.sync.services import discovery

    _seed(acme)
    reconcile_execute(kind="agent")
    drift = Drift.objects.get(kind="agent", problem="unknown_locally", object_repr="Kiosk")
    client = _admin_of(acme)
    changelist = reverse("admin:sync_drift_changelist")
    refused = client.post(changelist, {"action": "adopt_agent", ACTION_CHECKBOX_NAME: [drift.pk]}, follow=True)
    assert "has not discovered this object yet" in refused.content.decode()
    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False))
    done = client.post(changelist, {"action": "adopt_agent", ACTION_CHECKBOX_NAME: [drift.pk]}, follow=True)
    assert "Adopted 1 agent(s)" in done.content.decode()
    assert Agent.objects.get(name="Kiosk").remote_id == drift.remote_id


def test_an_adopted_agents_page_shows_its_live_state_and_closes_its_shareable_link(
        acme, django_capture_on_commit_callbacks):
    from project.sync.services import discovery, outbox_drain

    remote_id = acme.emulator.seed_agent(name="Concierge", prompt="Front desk.", auth={
        "enable_auth": True, "shareable_token": "share_tok_123"})
    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False))
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    agent = Agent.objects.get(remote_id=remote_id)
    assert agent.allow_shareable_link is True  # adoption keeps what the platform holds
    client = _admin_of(acme)
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    page = client.get(url).content.decode()
    assert "Built on the platform, adopted" in page and "shareable link open" in page
    assert 'name="first_message"' not in page and "share_tok_123" not in page
    form = {"workspace": acme.workspace.pk, "name": "Concierge", "auth_mode": "signed", "allowlist": "",
            "require_origin_header": "on", "max_duration_seconds": "600"}  # allow_shareable_link unticked
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(url, form)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    outbox_drain()
    remote = acme.emulator.state_snapshot()["agents"][0]
    assert remote["platform_settings"]["auth"]["shareable_token"] is None
    assert remote["conversation_config"]["agent"]["prompt"]["prompt"] == "Front desk."
