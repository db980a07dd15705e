"""job_enqueue against a worker that claims the pending job between the insert's unique violation and the
lookup (issue 19, item 9): a person's save never fails because a worker is draining."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from agents.sync import agent_differences
from project.sync import services
from project.sync.models import SyncJob
from tests.factories import UserFactory, WorkspaceFactory

OBJECTS = 50
CHANGERS = 8
CHANGES_PER_THREAD = 60
DRAINERS = 2


@pytest.mark.django_db
def test_enqueue_retries_when_the_pending_job_it_collided_with_was_claimed_meanwhile(monkeypatch, sync_test_kinds):
    """The insert collides with a pending job that a worker claims before the lookup: the lookup finds nothing
    pending, so the next round inserts a fresh job instead of raising DoesNotExist."""
    create = SyncJob.objects.create
    collisions: list[int] = []

    def collide_once(**fields):
        if not collisions:
            collisions.append(1)
            raise IntegrityError('duplicate key value violates unique constraint "sync_one_pending_job_per_object"')
        return create(**fields)

    monkeypatch.setattr(SyncJob.objects, "create", collide_once)
    job = services.job_enqueue(kind="test_thing", object_id=9, nudge=False)
    assert collisions == [1]
    assert SyncJob.objects.get(state=SyncJob.State.PENDING).pk == job.pk and job.object_id == "9"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_eight_changers_and_two_drainers_on_the_same_fifty_agents(platform, emulator, settings):
    """8 threads change the same 50 agents while 2 threads drain the outbox (the platform failing a fifth of the
    calls, so jobs go back to pending under the changers' feet): no change fails, and the platform ends with
    every agent's last state."""
    from tests.sync.workers import database_url_for_workers

    database_url_for_workers()  # threads need their own connections to one shared database: PostgreSQL
    # Failures retry at once and never pause the account or exhaust a job: what is tested is the enqueue.
    settings.SYNC_ACCOUNT_PAUSE_SECONDS, settings.SYNC_MAX_ATTEMPTS = 0, 1000
    settings.SYNC_BACKOFF_BASE_SECONDS, settings.SYNC_BACKOFF_MAX_SECONDS = 0.001, 0.01
    workspace = WorkspaceFactory()
    actor = UserFactory(username="stress", is_superuser=True)
    agents = [agent_services.agent_create(actor=actor, workspace=workspace, name=f"Stress {i}", auth_mode="signed")
              for i in range(OBJECTS)]
    ids = [a.pk for a in agents]
    emulator.set_faults(error_rate=0.2, error_status=503, seed=3)
    errors: list[BaseException] = []
    changing = threading.Event()
    changing.set()

    def change(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(CHANGES_PER_THREAD):
                agent = Agent.objects.get(pk=rng.choice(ids))
                agent_services.agent_update(actor=actor, agent=agent, name=f"Stress {agent.pk} v{seed}.{n}",
                                            first_message=f"hello {seed}.{n}")
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    def drain() -> None:
        try:
            while changing.is_set():
                services.outbox_drain(max_jobs=20, batch=4, time_budget=5)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    drainers = [threading.Thread(target=drain) for _ in range(DRAINERS)]
    changers = [threading.Thread(target=change, args=(seed,)) for seed in range(CHANGERS)]
    for thread in drainers + changers:
        thread.start()
    for thread in changers:
        thread.join()
    changing.clear()
    for thread in drainers:
        thread.join()
    assert errors == [], errors[:3]

    emulator.set_faults(error_rate=0.0)
    SyncJob.objects.filter(state=SyncJob.State.PENDING).update(next_attempt_at=timezone.now())
    for _ in range(20):
        services.outbox_drain(time_budget=30)
        if not SyncJob.objects.filter(state__in=[SyncJob.State.PENDING, SyncJob.State.RUNNING]).exists():
            break
        SyncJob.objects.filter(state=SyncJob.State.PENDING).update(next_attempt_at=timezone.now())
    left = list(SyncJob.objects.exclude(state__in=["done", "superseded"])
                .values_list("state", "attempts", "last_error")[:5])
    assert not left
    remote = {copy["tags"][0]: copy for copy in emulator.state_snapshot()["agents"]}
    for agent in Agent.objects.filter(pk__in=ids):
        assert agent_differences(agent, remote[agent.sync_tag]) == {}, agent.name
