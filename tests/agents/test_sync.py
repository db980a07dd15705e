"""service → audit → outbox → task → client → emulator, end to end, including faults."""

import pytest

from agents import services
from agents.models import Agent
from project.sync.models import SyncJob
from project.sync.services import outbox_drain

pytestmark = pytest.mark.django_db


def _job(agent):
    return SyncJob.objects.filter(kind="agent", object_id=str(agent.pk)).order_by("-id").first()


def test_created_agent_reaches_platform_with_its_policy(workspace, owner, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Web", auth_mode="allowlist",
                                      allowlist=["app.example.com", "localhost:3000"])
    agent.refresh_from_db()
    assert agent.remote_id
    remote = platform.get_agent(agent.remote_id)
    auth = remote["platform_settings"]["auth"]
    assert auth["enable_auth"] is False
    assert [h["hostname"] for h in auth["allowlist"]] == ["app.example.com", "localhost:3000"]
    assert _job(agent).state == "done"


def test_public_agent_duration_is_synced(workspace, owner, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Pub", auth_mode="public",
                                      max_duration_seconds=240)
    agent.refresh_from_db()
    remote = platform.get_agent(agent.remote_id)
    assert remote["conversation_config"]["conversation"]["max_duration_seconds"] == 240
    assert remote["platform_settings"]["auth"]["enable_auth"] is False


def test_policy_change_replaces_remote_allowlist(workspace, owner, platform, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Web", auth_mode="allowlist",
                                      allowlist=["a.example.com", "b.example.com"])
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_update(actor=owner, agent=agent, auth_mode="signed", allowlist=[])
    agent.refresh_from_db()
    auth = platform.get_agent(agent.remote_id)["platform_settings"]["auth"]
    assert auth["enable_auth"] is True and auth["allowlist"] == []


def test_delete_removes_remote_agent(workspace, owner, platform, emulator, django_capture_on_commit_callbacks):
    from project.platform import errors

    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Gone", auth_mode="signed")
    agent.refresh_from_db()
    remote_id = agent.remote_id
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_delete(actor=owner, agent=agent)
    with pytest.raises(errors.NotFound):
        platform.get_agent(remote_id)


def test_platform_down_keeps_change_and_syncs_later(workspace, owner, platform, emulator,
                                                    django_capture_on_commit_callbacks):
    emulator.set_faults(error_rate=1.0, error_status=503)
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Later", auth_mode="signed")
    job = _job(agent)
    assert job.state == "pending" and job.attempts == 1 and "503" in job.last_error
    assert Agent.objects.filter(pk=agent.pk, remote_id="").exists()

    emulator.set_faults(error_rate=0.0)
    SyncJob.objects.filter(pk=job.pk).update(next_attempt_at=job.created_at)  # the backoff has elapsed
    assert outbox_drain() == 1
    agent.refresh_from_db()
    assert agent.remote_id and platform.get_agent(agent.remote_id)["name"] == "Later"


def test_rate_limit_waits_for_retry_after_without_spending_an_attempt(workspace, owner, platform, emulator,
                                                                     django_capture_on_commit_callbacks):
    emulator.set_faults(fail_next=[429], retry_after=30)
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Busy", auth_mode="signed")
    job = _job(agent)
    assert job.state == "pending" and job.attempts == 0 and job.last_status == 429
    wait = (job.next_attempt_at - job.updated_at).total_seconds()
    assert 29 <= wait <= 31


def test_validation_error_fails_at_once_with_platform_message(workspace, owner, platform, emulator,
                                                             django_capture_on_commit_callbacks):
    emulator.set_faults(fail_next=[422])
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Odd", auth_mode="signed")
    job = _job(agent)
    assert job.state == "failed" and job.last_status == 422 and job.last_error


def test_transient_failures_end_dead_after_last_attempt(workspace, owner, platform, emulator, settings):
    settings.SYNC_MAX_ATTEMPTS = 3
    agent = services.agent_create(actor=owner, workspace=workspace, name="Doomed", auth_mode="signed")
    emulator.set_faults(error_rate=1.0, error_status=502)
    for _ in range(3):
        SyncJob.objects.filter(state="pending").update(next_attempt_at=agent.created_at)
        outbox_drain()
    job = _job(agent)
    assert job.state == "dead" and "gave up after 3 attempts" in job.last_error


def test_lost_create_response_does_not_duplicate_agent(workspace, owner, platform, emulator):
    """The first attempt creates the agent but the response is lost; the retry finds it by its tag."""
    agent = services.agent_create(actor=owner, workspace=workspace, name="Once", auth_mode="signed")
    job = _job(agent)
    remote_id = platform.create_agent(name="Once", conversation_config={}, platform_settings={},
                                      tags=[agent.sync_tag])
    SyncJob.objects.filter(pk=job.pk).update(attempts=1)  # as if an earlier attempt had run
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id == remote_id
    assert sum(1 for a in platform.iter_agents() if agent.sync_tag in a.get("tags", [])) == 1


def test_an_agent_deleted_on_the_platform_is_reported_not_recreated(workspace, owner, platform, emulator,
                                                                    django_capture_on_commit_callbacks):
    # Issue 17 reverses the earlier rule ("the database is the truth, recreate it"): on a team's real account an
    # agent deleted there was deleted on purpose, so Keyward reports it and a person decides.
    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Phoenix", auth_mode="signed")
    agent.refresh_from_db()
    platform.delete_agent(agent.remote_id)
    old = agent.remote_id
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_update(actor=owner, agent=agent, first_message="Back again")
    agent.refresh_from_db()
    assert agent.remote_id == old and agent.missing_since is not None
    assert not emulator.state_snapshot()["agents"]  # nothing recreated
    job = SyncJob.objects.filter(kind="agent", object_id=str(agent.pk)).latest("id")
    assert job.state == "failed" and "gone from the platform" in job.last_error
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_recreate(actor=owner, agent=agent)  # the drift page's "Recreate from Keyward"
    agent.refresh_from_db()
    assert agent.remote_id and agent.remote_id != old and agent.missing_since is None
    assert platform.get_agent(agent.remote_id)["name"] == "Phoenix"


def _agent_calls(emulator):
    counts = emulator.call_counts
    return {k: v for k, v in counts.items() if k.startswith(("GET /v1/convai/agents", "POST /v1/convai/agents"))}


def test_a_retried_create_whose_outcome_is_unknown_costs_at_most_three_calls(workspace, owner, platform, emulator):
    # The platform honours no Idempotency-Key: only the lookup protects, and it must stay cheap with many agents.
    for n in range(250):
        emulator.seed_agent(name=f"Other {n:03d}")
    agent = services.agent_create(actor=owner, workspace=workspace, name="Once", auth_mode="signed")
    remote_id = platform.create_agent(name=agent.name, conversation_config={}, platform_settings={},
                                      tags=[agent.sync_tag])  # the earlier attempt, whose answer never came
    before = _agent_calls(emulator)
    SyncJob.objects.filter(pk=_job(agent).pk).update(attempts=1, last_status=None)
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id == remote_id
    made = {k: v - before.get(k, 0) for k, v in _agent_calls(emulator).items() if v - before.get(k, 0)}
    assert made.get("POST /v1/convai/agents/create", 0) == 0
    assert sum(made.values()) <= 3  # one targeted search (plus the read and the security update of the found agent)


def test_a_retry_after_a_clear_answer_does_not_look_up(workspace, owner, platform, emulator):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Refused once", auth_mode="signed")
    SyncJob.objects.filter(pk=_job(agent).pk).update(attempts=1, last_status=503)  # the platform said 503: made nothing
    before = emulator.call_counts.get("GET /v1/convai/agents", 0)
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id and emulator.call_counts.get("GET /v1/convai/agents", 0) == before


def test_an_agent_archived_on_the_platform_is_reported_as_archived(workspace, owner, platform,
                                                                  django_capture_on_commit_callbacks):
    from agents.sync import reconcile_agents

    with django_capture_on_commit_callbacks(execute=True):
        agent = services.agent_create(actor=owner, workspace=workspace, name="Shelved", auth_mode="signed")
    agent.refresh_from_db()
    platform.update_agent(agent.remote_id, platform_settings={"archived": True})
    assert agent.remote_id not in {a["agent_id"] for a in platform.iter_agents()}  # the default list leaves it out
    (item,) = [i for i in reconcile_agents(platform) if i.object_id == agent.pk]
    assert item.problem == "differs" and item.fields["platform_settings.archived"] == [False, True]


def test_a_lookup_that_fails_leaves_the_outcome_unknown_so_the_next_attempt_looks_again(workspace, owner, platform,
                                                                                         emulator):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Twice lost", auth_mode="signed")
    remote_id = platform.create_agent(name=agent.name, conversation_config={}, platform_settings={},
                                      tags=[agent.sync_tag])  # the attempt whose worker died mid-call
    job = _job(agent)
    SyncJob.objects.filter(pk=job.pk).update(attempts=1, last_error="worker lost; requeued", last_status=None)
    emulator.set_faults(fail_next=[503])  # the lookup itself meets a 503
    outbox_drain()
    job.refresh_from_db()
    assert job.state == "pending" and job.last_status is None  # still unknown, not "the platform said 503"
    SyncJob.objects.filter(pk=job.pk).update(next_attempt_at=job.created_at)
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id == remote_id
    assert sum(1 for a in platform.iter_agents() if agent.sync_tag in a.get("tags", [])) == 1


def test_a_create_lost_before_a_rename_is_found_by_its_earlier_name(workspace, owner, platform, emulator):
    agent = services.agent_create(actor=owner, workspace=workspace, name="Before", auth_mode="signed")
    remote_id = platform.create_agent(name="Before", conversation_config={}, platform_settings={},
                                      tags=[agent.sync_tag])  # sent with the old name, answer lost
    SyncJob.objects.filter(pk=_job(agent).pk).update(attempts=1, last_error="worker lost; requeued")
    services.agent_update(actor=owner, agent=agent, name="After")
    outbox_drain()
    agent.refresh_from_db()
    assert agent.remote_id == remote_id and platform.get_agent(remote_id)["name"] == "After"
    assert sum(1 for a in platform.iter_agents() if agent.sync_tag in a.get("tags", [])) == 1
