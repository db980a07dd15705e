"""An incident on Keyward's own platform key (issue 16): "Keyward's platform key exposed" — revoke (Keyward switches
to a successor with no overlap and deletes the exposed key on the platform), rotate (done with it), blast radius
= everything on that account."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agents.models import Agent
from detection import incidents
from detection.models import Incident, IncidentStep
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync.services import discovery
from tests.conftest import login
from tests.factories import UserFactory, grant, make_secret, make_tool
from tests.workspaces.test_platform_accounts import ACME_KEY, GLOBEX_KEY, _account, _workspace, hub  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(hub):  # noqa: F811
    account = _account("Acme production", ACME_KEY)
    return account, _workspace("acme", account), hub.account("acme")


def test_revoke_switches_keyward_to_a_new_key_and_deletes_the_exposed_one_at_once(acme):
    account, workspace, emulator = acme
    exposed = account.api_key
    incident, created = incidents.incident_open(actor=SYSTEM, platform_account=account, workspace=workspace)
    assert created and incident.severity == "critical" and incident.subject_kind == "platform_account"
    assert "…" + ACME_KEY[-4:] in incident.subject_repr and ACME_KEY not in str(incident.steps.get().figures)
    again, created = incidents.incident_open(actor=SYSTEM, platform_account=account, workspace=workspace)
    assert again == incident and not created
    incidents.incident_revoke(actor=SYSTEM, incident=incident, reason="found in a CI log")
    account.refresh_from_db()
    incident.refresh_from_db()
    assert account.api_key != exposed and not account.previous_api_key and account.overlap_until is None
    assert not emulator.owns_key(exposed)  # deleted on the platform, no overlap
    assert emulator.owns_key(account.api_key)
    assert incident.state == "contained" and incident.exposure_end is not None
    kinds = list(incident.steps.values_list("kind", flat=True))
    assert kinds == [IncidentStep.Kind.OPENED, IncidentStep.Kind.REVOKE, IncidentStep.Kind.REPLACE]
    revoke = incident.steps.get(kind=IncidentStep.Kind.REVOKE)
    assert revoke.figures["deleted_on_platform"] is True and revoke.figures["exposed_key_hint"] == ACME_KEY[-4:]
    everything = str(list(AuditEvent.objects.values_list("changes", flat=True))) + str(
        list(IncidentStep.objects.values_list("figures", "notes")))
    assert exposed not in everything and account.api_key not in everything
    with pytest.raises(ValidationError, match="replacement is already recorded"):
        incidents.incident_replace(actor=SYSTEM, incident=incident)


def test_the_blast_radius_is_everything_on_the_account(acme):
    account, workspace, emulator = acme
    emulator.seed_agent(name="Built elsewhere", auth={"enable_auth": True})
    Agent.objects.create(workspace=workspace, name="Keyward's own")
    secret = make_secret(workspace, "crm_token")
    make_tool(workspace, "lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=account.pk, enqueue=False))
    incident, _ = incidents.incident_open(actor=SYSTEM, platform_account=account, workspace=workspace)
    step = incidents.incident_assess(actor=SYSTEM, incident=incident, exposure_start=incident.exposure_start)
    figures = step.figures
    assert figures["subject"] == "platform_account" and figures["workspaces"] == ["Acme"]
    assert figures["keyward_objects"]["agents"] == 1 and figures["keyward_objects"]["secrets"] == 1
    assert figures["on_platform"]["agent"] == 1  # the agent built elsewhere counts too
    assert any("point a tool at their own server" in line for line in figures["reach"])
    from detection.selectors import related_candidates

    candidates = related_candidates(incident)
    assert [(c["kind"], c["id"]) for c in candidates][:1] == [("secret", secret.pk)]


def test_refusals_say_why_and_change_nothing(acme, hub):  # noqa: F811
    account, workspace, _ = acme
    other = _workspace("globex", _account("Globex production", GLOBEX_KEY))
    with pytest.raises(ValidationError) as refused:
        incidents.incident_open(actor=SYSTEM, platform_account=account, workspace=other)
    assert "workspace" in refused.value.message_dict
    lead = UserFactory(username="lea")
    grant(lead, "Admin", workspace)
    grant(UserFactory(username="second"), "Admin", other)
    incident, _ = incidents.incident_open(actor=lead, platform_account=account, workspace=workspace)
    key_before = account.api_key
    other.platform_account = account  # a second workspace on the account: the lead is not Admin there
    other.save(update_fields=["platform_account"])
    with pytest.raises(ValidationError, match="Only superusers and Admins of every workspace"):
        incidents.incident_revoke(actor=lead, incident=incident)
    account.refresh_from_db()
    assert account.api_key == key_before and Incident.objects.get(pk=incident.pk).state == "open"


def test_the_admin_walk_for_an_exposed_account_key(acme):
    account, workspace, emulator = acme
    root = UserFactory(username="root", is_superuser=True)
    client = login(root)
    change = client.get(reverse("admin:workspaces_platformaccount_change", args=[account.pk]))
    assert b'id="incident-link"' in change.content
    opened = client.post(reverse("admin:detection_incident_open") + f"?platform_account={account.pk}",
                         {"platform_account": account.pk, "workspace": workspace.pk, "title": "", "summary": "pasted",
                          "severity": ""})
    incident = Incident.objects.get(platform_account=account)
    assert opened.status_code == 302 and opened.url.endswith(f"/{incident.pk}/change/")
    page = client.get(opened.url).content.decode()
    assert "Keyward switches to a new key and deletes the exposed one at once" in page
    exposed = account.api_key
    done = client.post(reverse("admin:detection_incident_revoke", args=[incident.pk]), {"reason": "leak"},
                       follow=True)
    assert "Keyward now uses a new key" in done.content.decode()
    assert not emulator.owns_key(exposed)
