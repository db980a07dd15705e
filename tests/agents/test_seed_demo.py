"""seed_demo (run by every `make run`): seeded once, ever. A restart never brings back what someone revoked,
deleted or disabled (issue 19, item 11)."""

import io

import pytest
from django.core.management import call_command

from agents import services as agent_services
from agents.models import Agent
from keys import services as key_services
from keys.models import ApiKey
from project.actors import SYSTEM
from secrets_app import services as secret_services
from secrets_app.models import Tool
from workspaces import services as workspace_services
from workspaces.models import RoleAssignment

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", "--quiet", stdout=out)
    return out.getvalue()


def test_a_restart_does_not_undo_revocations_or_deletions(platform, emulator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = _seed()
    prod_key = ApiKey.objects.filter(environment__is_production=True, state="active",
                                     workspace__slug="acme").order_by("pk").first()
    assert prod_key is not None
    key_services.api_key_revoke(actor=SYSTEM, key=prod_key, reason="leaked in a test")
    agent = Agent.objects.filter(workspace__slug="acme").order_by("pk").first()
    agent_services.agent_delete(actor=SYSTEM, agent=agent)
    lead = RoleAssignment.objects.get(user__username="acme-lead")
    workspace_services.role_revoke(actor=SYSTEM, assignment=lead)
    tool = Tool.objects.get(workspace__slug="acme", name="lookup_customer")
    secret_services.tool_delete(actor=SYSTEM, tool=tool)

    with django_capture_on_commit_callbacks(execute=True):
        second = _seed()
    assert not ApiKey.objects.filter(name=prod_key.name, environment=prod_key.environment, state="active").exists()
    assert not Agent.objects.filter(workspace=agent.workspace, name=agent.name).exists()
    assert not RoleAssignment.objects.filter(user__username="acme-lead").exists()
    assert not Tool.objects.filter(workspace=tool.workspace, name=tool.name).exists()
    assert "acme-admin" in first and "acme-admin" in second  # the logins are still printed
