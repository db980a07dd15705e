"""The outbox carrying agents: coalescing, lost creates that must not duplicate, and failures shown on the agent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from project.sync import services
from project.sync.models import SyncJob
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _remote_copies(platform, agent: Agent) -> list[dict]:
    return [a for a in platform.iter_agents() if agent.sync_tag in a.get("tags", [])]


def test_burst_of_edits_reaches_the_platform_as_its_latest_state(workspace, owner, platform, emulator):
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Burst", auth_mode="signed")
    for hosts in (["a.example.com"], ["b.example.com"], ["c.example.com", "d.example.com"]):
        agent_services.agent_update(actor=owner, agent=agent, auth_mode="allowlist", allowlist=hosts)
    [job] = SyncJob.objects.all()
    assert job.coalesced == 3
    services.outbox_drain()
    agent.refresh_from_db()
    assert emulator.call_counts == {"POST /v1/convai/agents/create": 1}  # one call, not four
    auth = platform.get_agent(agent.remote_id)["platform_settings"]["auth"]
    assert [h["hostname"] for h in auth["allowlist"]] == ["c.example.com", "d.example.com"]


def test_create_lost_with_a_killed_worker_is_not_duplicated_by_the_next_change(workspace, owner, platform):
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Once", auth_mode="signed")
    [first] = services.jobs_claim(worker="killed")
    # The killed worker's create reached the platform; its answer never reached the database.
    platform.create_agent(name="Once", conversation_config={}, platform_settings={}, tags=[agent.sync_tag])
    agent_services.agent_update(actor=owner, agent=agent, first_message="Hi")  # a newer job, its first attempt
    SyncJob.objects.filter(pk=first.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    services.outbox_drain()
    agent.refresh_from_db()
    assert SyncJob.objects.get(pk=first.pk).state == "superseded"
    [copy] = _remote_copies(platform, agent)
    assert copy["agent_id"] == agent.remote_id


def test_admin_retry_of_a_dead_create_finds_the_agent_a_timed_out_attempt_made(workspace, owner, platform,
                                                                                superuser):
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Timeout", auth_mode="signed")
    job = SyncJob.objects.get()
    SyncJob.objects.filter(pk=job.pk).update(state="dead", attempts=8, last_error="timeout: ReadTimeout")
    platform.create_agent(name="Timeout", conversation_config={}, platform_settings={}, tags=[agent.sync_tag])
    services.job_retry(actor=superuser, job=job)
    services.outbox_drain()
    agent.refresh_from_db()
    assert len(_remote_copies(platform, agent)) == 1 and agent.remote_id


def test_platform_validation_error_fails_at_once_and_shows_on_the_agent(workspace, owner, owner_client, platform,
                                                                        emulator):
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Too many hosts",
                                        auth_mode="allowlist", allowlist=["a.example.com"])
    # Eleven hosts cannot come through the form; a row changed behind the model's back can still reach the
    # platform, which refuses it.
    Agent.objects.filter(pk=agent.pk).update(allowlist=[f"h{i}.example.com" for i in range(11)])
    services.outbox_drain()
    job = SyncJob.objects.get()
    assert (job.state, job.attempts, job.last_status) == ("failed", 1, 422)
    assert "at most 10 items" in job.last_error
    page = owner_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    assert "at most 10 items" in page and "failed" in page
    assert emulator.call_counts.get("POST /v1/convai/agents/create") == 1  # once: no retries of a refusal


def test_failed_job_is_listed_on_the_sync_page_with_its_reason(workspace, owner, platform, emulator):
    agent_services.agent_create(actor=owner, workspace=workspace, name="Refused", auth_mode="signed")
    emulator.set_faults(fail_next=[422])
    services.outbox_drain()
    page = login(owner).get(reverse("admin:sync_syncjob_changelist") + "?state=attention").content.decode()
    assert "Refused" in page and "Injected fault." in page


def test_a_delete_finds_what_a_lost_create_made_under_the_name_the_agent_had_then(workspace, owner, platform):
    """A worker died mid-create; the agent was renamed, then deleted before any later job ran (the rename's job
    gave way to the delete's): the delete finds the platform's copy by its tag under the name the lost create
    sent, not only under the last name."""
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="First name", auth_mode="signed")
    [first] = services.jobs_claim(worker="killed")
    platform.create_agent(name="First name", conversation_config={}, platform_settings={}, tags=[agent.sync_tag])
    agent_services.agent_update(actor=owner, agent=agent, name="Second name")
    agent.refresh_from_db()
    agent_services.agent_delete(actor=owner, agent=agent)
    SyncJob.objects.filter(pk=first.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    services.outbox_drain()
    assert not SyncJob.objects.exclude(state__in=["done", "superseded"]).exists()
    assert _remote_copies(platform, agent) == []


def test_a_delete_uses_the_id_an_older_job_recorded_after_the_agent_was_gone(workspace, owner, platform, emulator):
    """The create answered after the agent was deleted here: the agent row never got the platform id, the create's
    job did. The delete takes it from there (no search)."""
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Short-lived", auth_mode="signed")
    [first] = services.jobs_claim(worker="slow")
    agent_services.agent_delete(actor=owner, agent=agent)  # while the create is on its way
    remote_id = platform.create_agent(name="Short-lived", conversation_config={}, platform_settings={},
                                      tags=[agent.sync_tag])
    SyncJob.objects.filter(pk=first.pk).update(state="done", remote_id=remote_id, finished_at=timezone.now())
    before = dict(emulator.call_counts)
    services.outbox_drain()
    calls = {route: n - before.get(route, 0) for route, n in emulator.call_counts.items() if n != before.get(route)}
    assert calls == {"DELETE /v1/convai/agents/{agent_id}": 1}
    assert _remote_copies(platform, agent) == []


def test_a_delete_absorbed_by_a_job_whose_last_answer_was_a_refusal_still_finds_a_lost_create(workspace, owner,
                                                                                              platform):
    """The job's first attempt died mid-create (the platform made the agent), its second got a 503; then the agent
    was deleted and the pending job took the delete in. Its last answer was a refusal, but an earlier attempt's
    outcome is still unknown: the delete looks for the copy."""
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Absorbed", auth_mode="signed")
    platform.create_agent(name="Absorbed", conversation_config={}, platform_settings={}, tags=[agent.sync_tag])
    SyncJob.objects.update(attempts=2, last_status=503, last_error="503: Injected fault.")
    agent_services.agent_delete(actor=owner, agent=agent)
    [job] = SyncJob.objects.all()
    assert job.op == "delete"  # the pending job absorbed the delete
    services.outbox_drain()
    assert _remote_copies(platform, agent) == []
