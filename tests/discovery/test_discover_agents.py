"""Discover what an account holds and adopt it (issue 17): agents, the workspace-wide webhook, the refusals, the
gone objects, the command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from agents.models import Agent
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync.models import DiscoveryRun, Observation
from project.sync.services import discovery
from tests.factories import UserFactory, grant

pytestmark = pytest.mark.django_db


def _built_elsewhere(emulator) -> dict[str, str]:
    return {
        "concierge": emulator.seed_agent(
            name="Concierge", prompt="You are the front desk.", voice_id="voice-9", tags=["team:hotel"],
            auth={"enable_auth": False, "allowlist": [{"hostname": "hotel.example"}],
                  "shareable_token": "share_abc123secret"}, max_duration_seconds=900),
        "kiosk": emulator.seed_agent(name="Kiosk", auth={"enable_auth": True}),
        "lobby": emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0),
        "old": emulator.seed_agent(name="Old", auth={"enable_auth": True}, archived=True),
    }


def _discover(tenant) -> DiscoveryRun:
    run = discovery.discovery_start(actor=SYSTEM, account_id=tenant.account.pk, enqueue=False)
    return discovery.discovery_run(run=run)


def test_discovery_lists_every_agent_with_its_security_facts_and_no_credential(acme):
    ids = _built_elsewhere(acme.emulator)
    run = _discover(acme)
    assert run.state == "done" and run.counts["agent"] == 4 and run.unmanaged["agent"] == 4
    concierge = Observation.objects.get(account_id=acme.account.pk, kind="agent", remote_id=ids["concierge"])
    assert concierge.facts["allowlist"] == ["hotel.example"] and concierge.facts["shareable"] is True
    assert concierge.facts["max_duration_seconds"] == 900 and concierge.facts["tags"] == ["team:hotel"]
    assert concierge.workspace_id == acme.workspace.pk  # the account's only workspace: where it would go
    assert "share_abc123secret" not in str(Observation.objects.values_list("facts", flat=True)[::1])
    assert Observation.objects.get(remote_id=ids["old"]).facts["archived"] is True
    settings_row = Observation.objects.get(account_id=acme.account.pk, kind="convai_settings")
    assert settings_row.facts == {"webhook_url": ""}
    assert run.calls >= 4 + 2  # each agent read once, plus the lists


def test_adopting_creates_linked_rows_audits_each_and_changes_nothing_on_the_platform(acme):
    ids = _built_elsewhere(acme.emulator)
    _discover(acme)
    before = acme.emulator.state_snapshot()
    report = discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert report.adopted["agent"] == 4 and not report.refused
    assert acme.emulator.state_snapshot() == before
    concierge = Agent.objects.get(remote_id=ids["concierge"])
    assert (concierge.origin, concierge.auth_mode, concierge.allowlist) == ("adopted", "allowlist", ["hotel.example"])
    assert concierge.allow_shareable_link is True and concierge.max_duration_seconds == 900
    kiosk = Agent.objects.get(remote_id=ids["kiosk"])
    assert kiosk.auth_mode == "signed" and kiosk.allow_shareable_link is False
    lobby = Agent.objects.get(remote_id=ids["lobby"])  # public with no usable limit: Keyward's limit is the default
    assert lobby.auth_mode == "public" and lobby.max_duration_seconds == 600
    events = AuditEvent.objects.filter(action="platform.adopt", object_type="agents.agent")
    assert events.count() == 4 and {e.workspace_id for e in events} == {acme.workspace.pk}
    assert all(o.object_id for o in Observation.objects.filter(kind="agent"))


def test_rerunning_is_idempotent_and_reports_what_was_deleted_on_the_platform(acme):
    ids = _built_elsewhere(acme.emulator)
    _discover(acme)
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    acme.emulator.seed_agent(name="New one")
    with acme.emulator._lock:
        del acme.emulator._agents[ids["kiosk"]]
    run = _discover(acme)
    assert run.unmanaged["agent"] == 1 and run.gone_count == 1 and run.gone == ["agent Kiosk"]
    report = discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert report.adopted == {"agent": 1} and Agent.objects.filter(workspace=acme.workspace).count() == 5
    again = discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert again.total == 0 and not again.refused


def test_a_name_already_taken_in_the_workspace_gets_a_suffix(acme):
    Agent.objects.create(workspace=acme.workspace, name="Kiosk")
    acme.emulator.seed_agent(name="Kiosk", auth={"enable_auth": True})
    _discover(acme)
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert sorted(Agent.objects.values_list("name", flat=True)) == ["Kiosk", "Kiosk (2)"]


def test_adoption_refusals_are_clear_and_change_nothing(acme, globex):
    ids = _built_elsewhere(acme.emulator)
    _discover(acme)
    with pytest.raises(ValidationError, match="bound to another platform account") as refused:
        discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=globex.workspace.pk)
    assert "workspace" in refused.value.message_dict
    first = Observation.objects.get(remote_id=ids["kiosk"])
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk,
                    observation_ids=[first.pk])
    with pytest.raises(ValidationError, match="Already adopted"):
        discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk,
                        observation_ids=[first.pk])
    DiscoveryRun.objects.create(account_id=acme.account.pk, state="running")
    with pytest.raises(ValidationError, match="discovery of this platform account is running"):
        discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert Agent.objects.count() == 1
    assert AuditEvent.objects.filter(action="platform.adopt").count() == 1


def test_a_guardrail_only_kind_cannot_be_adopted(acme):
    _discover(acme)
    settings_row = Observation.objects.get(kind="convai_settings")
    with pytest.raises(ValidationError, match="guardrails only"):
        discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk,
                        observation_ids=[settings_row.pk])


def test_only_people_managing_sync_in_every_bound_workspace_discover_and_adopt(acme):
    _built_elsewhere(acme.emulator)
    viewer = UserFactory(username="vera")
    grant(viewer, "Viewer", acme.workspace)
    with pytest.raises(PermissionDenied):
        discovery.discovery_start(actor=viewer, account_id=acme.account.pk, enqueue=False)
    _discover(acme)
    with pytest.raises(PermissionDenied):
        discovery.adopt(actor=viewer, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    admin = UserFactory(username="ada")
    grant(admin, "Admin", acme.workspace)
    run = discovery.discovery_start(actor=admin, account_id=acme.account.pk, enqueue=False)
    assert AuditEvent.objects.filter(action="platform.discover", object_id=str(run.pk)).exists()


def test_an_agent_keyward_made_is_governed_not_offered(acme, django_capture_on_commit_callbacks):
    from agents import services
    from project.sync.services import outbox_drain

    with django_capture_on_commit_callbacks(execute=True):
        services.agent_create(actor=SYSTEM, workspace=acme.workspace, name="Support", auth_mode="signed")
    outbox_drain()
    run = _discover(acme)
    assert run.counts["agent"] == 1 and run.unmanaged["agent"] == 0
    assert Observation.objects.get(kind="agent").object_id == str(Agent.objects.get(name="Support").pk)


def test_the_command_reports_adopts_and_a_dry_run_writes_nothing(acme):
    _built_elsewhere(acme.emulator)
    out = StringIO()
    call_command("platform_discover", account=acme.account.name, adopt="all", dry_run=True, stdout=out)
    text = out.getvalue()
    assert "Agents: 4 on the platform, 4 not managed by Keyward" in text
    assert "Would adopt into workspace “Acme”" in text and "Adopted 4 agent(s)" in text and "Dry run" in text
    assert not Agent.objects.exists() and not Observation.objects.exists() and not DiscoveryRun.objects.exists()
    out = StringIO()
    call_command("platform_discover", account=acme.account.name, adopt="all", stdout=out)
    assert Agent.objects.filter(origin="adopted").count() == 4
    with pytest.raises(CommandError, match="no platform account named"):
        call_command("platform_discover", account="nope")


def test_the_command_refuses_a_workspace_of_another_account(acme, globex):
    with pytest.raises(CommandError, match="bound to platform account"):
        call_command("platform_discover", account=acme.account.name, workspace="globex", adopt="all")
