import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import services
from agents.models import Agent
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from tests.conftest import EMULATOR_KEY, login
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

ADD = reverse("admin:agents_agent_add")
LIST = reverse("admin:agents_agent_changelist")


def _form(workspace, **overrides):
    data = {"workspace": workspace.pk, "name": "Concierge", "first_message": "", "auth_mode": "allowlist",
            "allowlist": "app.example.com\nlocalhost:3000", "require_origin_header": "on",
            "max_duration_seconds": ""}
    data.update(overrides)
    return data


def test_owner_adds_allowlist_agent_through_admin(owner_client, workspace, django_capture_on_commit_callbacks,
                                                  platform):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(ADD, _form(workspace))
    assert response.status_code == 302, response.content[:2000]
    agent = Agent.objects.get(name="Concierge")
    assert agent.allowlist == ["app.example.com", "localhost:3000"]
    assert AuditEvent.objects.filter(action="agent.create", actor_label="owner").exists()
    agent.refresh_from_db()
    assert agent.remote_id  # synced on commit, through the emulator
    page = owner_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    assert agent.remote_id in page and "synced" in page


@pytest.mark.parametrize("overrides,field_text", [
    ({"auth_mode": "signed"}, "cannot also have a hostname allowlist"),
    ({"allowlist": "\n".join(f"h{i}.x.com" for i in range(11))}, "at most 10"),
    ({"allowlist": "X.com\nx.COM"}, "duplicates line 1"),
    ({"allowlist": "https://x.com"}, "has a scheme"),
    ({"allowlist": "*.x.com"}, "wildcard"),
    ({"allowlist": "x.com/path"}, "path"),
    ({"allowlist": "x.com:70000"}, "65535"),
    ({"auth_mode": "public", "allowlist": ""}, "needs a maximum conversation duration"),
])
def test_invalid_policy_shows_field_error_and_changes_nothing(owner_client, workspace, overrides, field_text):
    response = owner_client.post(ADD, _form(workspace, **overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(field_text in " ".join(msgs) for msgs in errors.values()), errors
    assert set(errors) <= {"allowlist", "max_duration_seconds"}
    assert not Agent.objects.exists() and not SyncJob.objects.exists() and not AuditEvent.objects.exists()


def test_owner_changes_policy(owner_client, owner, workspace):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Switch", auth_mode="signed")
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    response = owner_client.post(url, _form(workspace, name="Switch", auth_mode="public", allowlist="",
                                            max_duration_seconds="300"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.auth_mode, agent.max_duration_seconds) == ("public", 300)
    assert AuditEvent.objects.get(action="agent.update").changes["auth_mode"] == ["signed", "public"]


def test_outsider_sees_no_agents_and_gets_404(outsider_client, workspace):
    agent = AgentFactory(workspace=workspace, name="Private")
    listing = outsider_client.get(LIST)
    assert listing.status_code == 200 and "Private" not in listing.content.decode()
    assert outsider_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).status_code == 404
    assert outsider_client.get(reverse("admin:agents_agent_mint", args=[agent.pk])).status_code == 404
    assert outsider_client.post(reverse("admin:agents_agent_delete", args=[agent.pk]),
                                {"post": "yes"}).status_code == 404
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_outsider_cannot_create_in_foreign_workspace(outsider_client, workspace):
    response = outsider_client.post(ADD, _form(workspace))
    assert response.status_code == 200
    assert "workspace" in response.context["adminform"].form.errors
    assert not Agent.objects.exists()


def test_viewer_can_read_but_not_change(viewer, workspace):
    client = login(viewer)
    agent = AgentFactory(workspace=workspace, name="ReadMe")
    assert "ReadMe" in client.get(LIST).content.decode()
    assert client.get(ADD).status_code == 403
    response = client.post(reverse("admin:agents_agent_change", args=[agent.pk]), _form(workspace, name="Hacked"))
    assert response.status_code == 403
    agent.refresh_from_db()
    assert agent.name == "ReadMe"


def test_mint_page_shows_signed_url_once_and_never_the_key(owner_client, owner, workspace, platform,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Support", auth_mode="signed")
    url = reverse("admin:agents_agent_mint", args=[agent.pk])
    env = workspace.environments.get(name="prod")
    response = owner_client.post(url, {"environment": env.pk, "kind": "signed_url"})
    page = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert "conversation_signature=" in page and "minted-expiry" in page
    signed = page.split('id="minted-value"')[1].split(">")[1].split("<")[0]
    assert EMULATOR_KEY not in page
    # Nowhere else: not on the agent page, not in the audit trail pages.
    for other in (reverse("admin:agents_agent_change", args=[agent.pk]), reverse("admin:audit_auditevent_changelist")):
        assert signed not in owner_client.get(other).content.decode()
    assert all(signed not in str(c) for c in AuditEvent.objects.values_list("changes", flat=True))


def test_mint_page_offers_token_too(owner_client, owner, workspace, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Support", auth_mode="signed")
    response = owner_client.post(reverse("admin:agents_agent_mint", args=[agent.pk]),
                                 {"environment": workspace.environments.get(name="dev").pk,
                                  "kind": "conversation_token"})
    assert "Conversation token" in response.content.decode()
    assert AuditEvent.objects.filter(action="agent.mint_conversation_token").exists()


def test_changelist_queries_do_not_grow_with_rows(owner_client, workspace):
    AgentFactory.create_batch(3, workspace=workspace)
    with CaptureQueriesContext(connection) as few:
        assert owner_client.get(LIST).status_code == 200
    AgentFactory.create_batch(40, workspace=workspace)
    with CaptureQueriesContext(connection) as many:
        assert owner_client.get(LIST).status_code == 200
    assert len(many) == len(few) <= 8


def test_audit_trail_is_scoped_to_own_workspace(owner_client, outsider_client, owner, workspace):
    services.agent_create(actor=owner, workspace=workspace, name="Audited", auth_mode="signed")
    url = reverse("admin:audit_auditevent_changelist")
    assert "Audited" in owner_client.get(url).content.decode()
    assert "Audited" not in outsider_client.get(url).content.decode()


def test_person_without_roles_sees_an_empty_admin(db):
    from tests.factories import UserFactory

    client = login(UserFactory(username="nobody"))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert client.get(LIST).status_code == 403
