"""Keyward changes only an agent's security settings on the platform, read-modify-write, right whether the
platform's PATCH deep-merges nested objects or replaces them (issue 17)."""

from __future__ import annotations

import pytest

from agents import services
from agents.models import Agent
from project.actors import SYSTEM
from project.sync.services import outbox_drain

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["merge", "replace"])
def patch_mode(request, emulator) -> str:
    emulator.patch_mode = request.param
    return request.param


def _built_elsewhere(emulator) -> str:
    return emulator.seed_agent(name="Concierge", prompt="You are the front desk of Hotel Nine.", voice_id="voice-9",
                               tool_ids=["tool_booking"], tags=["team:hotel", "prod"],
                               auth={"enable_auth": False, "allowlist": [{"hostname": "hotel.example"}],
                                     "shareable_token": "share_abc123"},
                               max_duration_seconds=900)


def _adopt(workspace, remote_id: str, **policy) -> Agent:
    return Agent.objects.create(workspace=workspace, name="Concierge", remote_id=remote_id,
                                origin=Agent.Origin.ADOPTED, **policy)


def test_an_adopted_agents_policy_reaches_the_platform_and_nothing_else_changes(workspace, owner, platform, emulator,
                                                                                patch_mode,
                                                                                django_capture_on_commit_callbacks):
    remote_id = _built_elsewhere(emulator)
    before = platform.get_agent(remote_id)
    agent = _adopt(workspace, remote_id, auth_mode="allowlist", allowlist=["hotel.example"])
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_update(actor=owner, agent=agent, auth_mode="signed", allowlist=[])
    outbox_drain()
    after = platform.get_agent(remote_id)
    auth = after["platform_settings"]["auth"]
    assert auth["enable_auth"] is True and auth["allowlist"] == [] and auth["shareable_token"] is None
    assert after["name"] == "Concierge"  # the team's name, never Keyward's
    assert after["conversation_config"]["agent"] == before["conversation_config"]["agent"]  # prompt, tools
    assert after["conversation_config"]["tts"] == before["conversation_config"]["tts"]  # voice
    assert after["conversation_config"]["conversation"]["max_duration_seconds"] == 900  # not Keyward's to set
    assert after["tags"][:2] == ["team:hotel", "prod"] and agent.sync_tag in after["tags"]
    assert after["platform_settings"]["call_limits"] == before["platform_settings"]["call_limits"]


def test_a_keyward_agent_is_created_once_and_then_changed_only_where_keyward_governs(
        workspace, owner, platform, emulator, patch_mode, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=SYSTEM, workspace=workspace, name="Support", auth_mode="public",
                                      max_duration_seconds=300, first_message="Hello")
    agent.refresh_from_db()
    # The team adds a prompt and a tag on the platform; Keyward then tightens the policy.
    platform.update_agent(agent.remote_id, conversation_config={"agent": {"prompt": {"prompt": "Be brief."}}},
                          tags=[agent.sync_tag, "team:support"])
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_update(actor=owner, agent=agent, auth_mode="allowlist", allowlist=["app.example.com"],
                              max_duration_seconds=None)
    outbox_drain()
    remote = platform.get_agent(agent.remote_id)
    assert remote["conversation_config"]["agent"]["prompt"]["prompt"] == "Be brief."
    assert remote["conversation_config"]["agent"]["first_message"] == "Hello"
    assert remote["platform_settings"]["auth"]["allowlist"] == [{"hostname": "app.example.com"}]
    assert sorted(remote["tags"]) == sorted([agent.sync_tag, "team:support"])


def test_a_push_with_nothing_to_change_sends_no_update(workspace, owner, platform, emulator,
                                                        django_capture_on_commit_callbacks):
    remote_id = _built_elsewhere(emulator)
    agent = _adopt(workspace, remote_id, auth_mode="allowlist", allowlist=["hotel.example"],
                   allow_shareable_link=True)
    platform.update_agent(remote_id, tags=["team:hotel", "prod", agent.sync_tag])
    patches = emulator.call_counts.get("PATCH /v1/convai/agents/{agent_id}", 0)
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_update(actor=owner, agent=agent, require_origin_header=False)  # the platform has False
    outbox_drain()
    assert emulator.call_counts.get("PATCH /v1/convai/agents/{agent_id}", 0) == patches


def test_forgetting_an_adopted_agent_leaves_it_on_the_platform(workspace, owner, platform, emulator,
                                                                django_capture_on_commit_callbacks):
    remote_id = _built_elsewhere(emulator)
    agent = _adopt(workspace, remote_id, auth_mode="allowlist", allowlist=["hotel.example"])
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_delete(actor=owner, agent=agent)
    outbox_drain()
    assert platform.get_agent(remote_id)["name"] == "Concierge"
    assert not Agent.objects.filter(pk=agent.pk).exists()
