"""One restricted queryset (project.querysets) and one explicit system actor (project.actors)."""

from __future__ import annotations

import pytest
from django.apps import apps

from agents import services as agent_services
from agents.models import Agent
from project import access
from project.actors import SYSTEM, SystemActor
from project.audit.models import AuditEvent
from project.audit.services import record
from project.querysets import RestrictedQuerySet, workspace_id_of, workspace_path
from tests.factories import UserFactory, WorkspaceFactory, grant, make_agent

KEYWARD_APPS = {"workspaces", "agents", "keys", "secrets_app", "broker", "detection", "alerts", "sync", "audit"}
NOT_WORKSPACE_OWNED = {"sync.reconcilerun", "sync.discoveryrun", "sync.drainwakeup", "detection.concurrencysample"}


def _workspace_owned_models() -> list[type]:
    return [m for m in apps.get_models() if m._meta.app_label in KEYWARD_APPS
            and m._meta.label_lower not in NOT_WORKSPACE_OWNED]


@pytest.mark.parametrize("model", _workspace_owned_models(), ids=lambda m: m._meta.label_lower)
def test_every_workspace_owned_model_restricts_along_a_real_path(model, db):
    person = UserFactory()
    queryset = model._default_manager.all()
    assert isinstance(queryset, RestrictedQuerySet), f"{model._meta.label} has no restrict()"
    grant(person, "Viewer", WorkspaceFactory(name="W", slug="w"))
    sql = str(model._default_manager.restrict(person, "workspace.view").query)  # a bad path raises FieldError
    assert " IN (" in sql, (workspace_path(model), sql)


def test_restrict_keeps_only_the_workspaces_where_the_permission_is_held(workspace, other_workspace):
    mine, theirs = make_agent(workspace, "Mine"), make_agent(other_workspace, "Theirs")
    developer, viewer, nobody = UserFactory(), UserFactory(), UserFactory()
    grant(developer, "Developer", workspace)
    grant(viewer, "Viewer", other_workspace)
    assert list(Agent.objects.restrict(developer, "agents.manage")) == [mine]
    assert list(Agent.objects.restrict(viewer, "workspace.view")) == [theirs]
    assert list(Agent.objects.restrict(viewer, "agents.manage")) == []
    assert not Agent.objects.restrict(nobody).exists()
    assert set(Agent.objects.restrict(SYSTEM, "agents.manage")) == {mine, theirs}
    assert workspace_id_of(theirs) == other_workspace.pk


def test_a_person_without_roles_costs_no_query(db, django_assert_num_queries):
    nobody = UserFactory()
    access.workspaces_with(nobody, "workspace.view")  # the one query that loads their roles, cached on them
    with django_assert_num_queries(0):
        assert list(Agent.objects.restrict(nobody)) == []


def test_a_missing_actor_is_an_error_not_the_system(workspace):
    with pytest.raises(TypeError, match="actor is required"):
        agent_services.agent_create(actor=None, workspace=workspace, name="Sneaky", auth_mode="signed")
    with pytest.raises(TypeError, match="actor is required"):
        Agent.objects.restrict(None)
    with pytest.raises(TypeError, match="actor is required"):
        record(actor=None, action="test.nothing", object_type="agents.agent")
    with pytest.raises(TypeError):
        agent_services.agent_create(workspace=workspace, name="No actor at all", auth_mode="signed")
    assert not Agent.objects.exists()


def test_the_system_actor_passes_checks_and_is_audited_under_its_label(workspace):
    agent_services.agent_create(actor=SYSTEM, workspace=workspace, name="Seeded", auth_mode="signed")
    event = AuditEvent.objects.get(action="agent.create")
    assert (event.actor_type, event.actor_label, event.actor_user_id) == ("system", "system", None)
    webhook = SystemActor("platform (conversation-initiation webhook)")
    record(actor=webhook, action="test.called", object_type="agents.agent")
    assert AuditEvent.objects.get(action="test.called").actor_label == "platform (conversation-initiation webhook)"
    assert access.has_perm(SYSTEM, "keys.revoke", workspace.pk) and access.workspaces_with(SYSTEM, "x") is None
    assert repr(SYSTEM) == "SYSTEM"
