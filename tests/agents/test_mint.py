import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import services
from project.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced_agent(workspace, owner, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Support", auth_mode="signed")
    agent.refresh_from_db()
    return agent


def test_signed_url_is_minted_and_audited_without_the_url(synced_agent, owner, workspace):
    env = workspace.environments.get(name="prod")
    minted = services.agent_mint_signed_url(actor=owner, agent=synced_agent, environment=env)
    assert minted.value.startswith("wss://") and synced_agent.remote_id in minted.value
    assert minted.expires_at is not None
    event = AuditEvent.objects.get(action="agent.mint_signed_url")
    assert minted.value not in str(event.changes) and "conversation_signature" not in str(event.changes)
    assert event.changes["environment"] == "prod"


def test_conversation_token_is_minted_and_not_audited(synced_agent, owner, workspace):
    env = workspace.environments.get(name="dev")
    minted = services.agent_mint_conversation_token(actor=owner, agent=synced_agent, environment=env)
    assert minted.value and minted.conversation_id
    rows = list(AuditEvent.objects.values_list("changes", flat=True))
    assert all(minted.value not in str(row) for row in rows)


def test_member_can_mint_viewer_cannot(synced_agent, member, viewer, workspace):
    env = workspace.environments.get(name="dev")
    assert services.agent_mint_signed_url(actor=member, agent=synced_agent, environment=env).value
    with pytest.raises(PermissionDenied):
        services.agent_mint_signed_url(actor=viewer, agent=synced_agent, environment=env)


def test_outsider_cannot_mint(synced_agent, outsider, workspace):
    with pytest.raises(PermissionDenied):
        services.agent_mint_signed_url(actor=outsider, agent=synced_agent,
                                       environment=workspace.environments.get(name="dev"))


def test_allowlist_agent_has_no_signed_urls(workspace, owner, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Web", auth_mode="allowlist",
                                      allowlist=["x.example.com"])
    with pytest.raises(ValidationError, match="only for signed-URL agents"):
        services.agent_mint_signed_url(actor=owner, agent=agent, environment=workspace.environments.first())


def test_unsynced_agent_cannot_mint_yet(workspace, owner, platform):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Fresh", auth_mode="signed")
    with pytest.raises(ValidationError, match="not reached the platform"):
        services.agent_mint_signed_url(actor=owner, agent=agent, environment=workspace.environments.first())


def test_environment_of_another_workspace_is_refused(synced_agent, owner, other_workspace):
    with pytest.raises(ValidationError):
        services.agent_mint_signed_url(actor=owner, agent=synced_agent,
                                       environment=other_workspace.environments.first())
