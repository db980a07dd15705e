"""Every connection-policy rule, through the service: refused with a field error, nothing changed."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import services
from agents.models import Agent
from project.audit.models import AuditEvent
from project.sync.models import SyncJob

pytestmark = pytest.mark.django_db


def _counts():
    return Agent.objects.count(), AuditEvent.objects.count(), SyncJob.objects.count()


BAD_POLICIES = [
    ("both methods", dict(auth_mode="signed", allowlist=["x.com"]), "allowlist", "choose one method"),
    ("eleven hosts", dict(auth_mode="allowlist", allowlist=[f"h{i}.x.com" for i in range(11)]), "allowlist",
     "at most 10"),
    ("duplicate in other case", dict(auth_mode="allowlist", allowlist=["X.com", "x.COM"]), "allowlist",
     "duplicates"),
    ("scheme", dict(auth_mode="allowlist", allowlist=["https://x.com"]), "allowlist", "scheme"),
    ("wildcard", dict(auth_mode="allowlist", allowlist=["*.x.com"]), "allowlist", "wildcard"),
    ("path", dict(auth_mode="allowlist", allowlist=["x.com/path"]), "allowlist", "path"),
    ("port 70000", dict(auth_mode="allowlist", allowlist=["x.com:70000"]), "allowlist", "65535"),
    ("public without duration", dict(auth_mode="public"), "max_duration_seconds", "maximum conversation duration"),
    ("allowlist without hosts", dict(auth_mode="allowlist", allowlist=[]), "allowlist", "at least one"),
    ("public with hosts", dict(auth_mode="public", max_duration_seconds=60, allowlist=["x.com"]), "allowlist",
     "no allowlist"),
    ("duration too long", dict(auth_mode="public", max_duration_seconds=10**6), "max_duration_seconds", "less than"),
]


@pytest.mark.parametrize("label,fields,field,message", BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_bad_policy_is_refused_on_create(workspace, owner, label, fields, field, message):
    before = _counts()
    with pytest.raises(ValidationError) as exc:
        services.agent_create(actor=owner, workspace=workspace, name="Bad", **fields)
    assert field in exc.value.message_dict
    assert message in " ".join(exc.value.message_dict[field])
    assert _counts() == before


@pytest.mark.parametrize("label,fields,field,message", BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_bad_policy_is_refused_on_update(workspace, owner, label, fields, field, message):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Good", auth_mode="public",
                                  max_duration_seconds=120)
    before = _counts()
    with pytest.raises(ValidationError):
        services.agent_update(actor=owner, agent=agent, **{"allowlist": [], "max_duration_seconds": None, **fields})
    agent.refresh_from_db()
    assert (agent.auth_mode, agent.allowlist, agent.max_duration_seconds) == ("public", [], 120)
    assert _counts() == before


def test_allowlist_is_stored_normalised(workspace, owner):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Web", auth_mode="allowlist",
                                  allowlist=["App.Example.com", "bücher.example", "localhost:3000"])
    assert agent.allowlist == ["app.example.com", "xn--bcher-kva.example", "localhost:3000"]


def test_database_refuses_public_agent_without_duration(workspace):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(workspace=workspace, name="Raw", auth_mode="public")


def test_create_writes_audit_and_outbox_in_one_go(workspace, owner):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Support", auth_mode="signed")
    event = AuditEvent.objects.get(action="agent.create", object_id=str(agent.pk))
    assert event.actor_label == "owner" and event.workspace_id == workspace.pk
    assert event.changes["auth_mode"] == [None, "signed"]
    job = SyncJob.objects.get(kind="agent", object_id=str(agent.pk))
    assert job.state == "pending" and job.op == "upsert"


def test_member_without_agents_manage_is_refused(workspace, viewer):
    with pytest.raises(PermissionDenied):
        services.agent_create(actor=viewer, workspace=workspace, name="Nope")
    assert not Agent.objects.exists()


def test_outsider_cannot_create_in_another_workspace(workspace, outsider):
    with pytest.raises(PermissionDenied):
        services.agent_create(actor=outsider, workspace=workspace, name="Nope")


def test_burst_of_edits_is_coalesced_into_one_job(workspace, owner):
    agent = services.agent_create(actor=owner, workspace=workspace, name="A", auth_mode="signed")
    for duration in (60, 120, 180):
        services.agent_update(actor=owner, agent=agent, max_duration_seconds=duration)
    job = SyncJob.objects.get(kind="agent", object_id=str(agent.pk))
    assert job.coalesced == 3
    assert AuditEvent.objects.filter(action="agent.update").count() == 3


def test_update_without_changes_writes_nothing(workspace, owner):
    agent = services.agent_create(actor=owner, workspace=workspace, name="A", auth_mode="signed")
    before = _counts()
    services.agent_update(actor=owner, agent=agent, name="A")
    assert _counts() == before
