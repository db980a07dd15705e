"""Drain wake-ups collapse: a burst of commits leaves at most one wake-up waiting per queue, the drain takes it
before it claims, and a lost or unsent one never stops the outbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from project.sync import registry, services, tasks
from project.sync.models import DrainWakeup, SyncJob

pytestmark = pytest.mark.django_db

ran: list[str] = []


@registry.register("test_wakeup_thing")
def _push(job, client):
    ran.append(job.object_id)
    return f"remote-{job.object_id}"


@pytest.fixture(autouse=True)
def _own_kind(monkeypatch):
    from project.sync import kinds

    monkeypatch.setattr(kinds, "CATALOGUE", kinds.CATALOGUE | {"test_wakeup_thing"})


@pytest.fixture
def published(monkeypatch) -> list[dict]:
    """Wake-ups handed to the broker (none is run: the test runs the drain itself)."""
    sent: list[dict] = []
    monkeypatch.setattr(tasks.drain_outbox, "apply_async", lambda *a, **kw: sent.append(kw))
    ran.clear()
    return sent


def _commit(django_capture_on_commit_callbacks, object_id: int) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        services.job_enqueue(kind="test_wakeup_thing", object_id=object_id)


def test_a_burst_of_commits_publishes_one_wake_up(published, django_capture_on_commit_callbacks):
    for i in range(20):
        _commit(django_capture_on_commit_callbacks, i)
    assert len(published) == 1
    assert SyncJob.objects.filter(state="pending").count() == 20


def test_the_drain_takes_the_wake_up_so_the_next_commit_publishes_again(published,
                                                                       django_capture_on_commit_callbacks):
    _commit(django_capture_on_commit_callbacks, 1)
    _commit(django_capture_on_commit_callbacks, 2)
    tasks.drain_outbox()  # the queued wake-up, taken by a worker
    assert sorted(ran) == ["1", "2"] and not DrainWakeup.objects.exists()
    _commit(django_capture_on_commit_callbacks, 3)
    assert len(published) == 2


def test_a_stale_wake_up_is_replaced(published, django_capture_on_commit_callbacks):
    _commit(django_capture_on_commit_callbacks, 1)
    # Its message was lost (or no worker took it for minutes): the next commit publishes another.
    DrainWakeup.objects.update(queued_at=timezone.now() - timedelta(seconds=services.outbox.wakeup_stale_seconds()
                                                                     + 1))
    _commit(django_capture_on_commit_callbacks, 2)
    _commit(django_capture_on_commit_callbacks, 3)
    assert len(published) == 2


def test_a_wake_up_the_broker_refused_is_not_counted_as_queued(monkeypatch, django_capture_on_commit_callbacks):
    attempts = []

    def broker_down(*args, **kwargs):
        attempts.append(kwargs)
        raise ConnectionRefusedError("broker is down")

    monkeypatch.setattr(tasks.drain_outbox, "apply_async", broker_down)
    _commit(django_capture_on_commit_callbacks, 1)
    _commit(django_capture_on_commit_callbacks, 2)
    assert len(attempts) == 2  # each commit tried the broker: none was queued
    assert not DrainWakeup.objects.exists()


def test_each_queue_has_its_own_wake_up(settings):
    assert services.wakeup_reserve(queue="a") and services.wakeup_reserve(queue="b")
    assert not services.wakeup_reserve(queue="a")
    services.wakeup_release(queue="a")
    assert services.wakeup_reserve(queue="a") and not services.wakeup_reserve(queue="b")


def test_a_drain_with_a_backlog_calls_in_another_worker_once(published, settings):
    from project.celery import app

    settings.SYNC_CLAIM_BATCH = 5
    for i in range(12):
        services.job_enqueue(kind="test_wakeup_thing", object_id=i, nudge=False)
    app.conf.task_always_eager = False  # a real worker: another process may join
    assert tasks.drain_outbox(max_jobs=100) == 12
    assert len(published) == 1  # one extra wake-up for the backlog, however many full batches
    services.wakeup_release()
    for i in range(12, 20):
        services.job_enqueue(kind="test_wakeup_thing", object_id=i, nudge=False)
    assert tasks.drain_outbox(max_jobs=3) == 3  # stopped at max_jobs with more due: one more wake-up
    assert len(published) == 2


def test_a_trickle_calls_in_nobody(published, settings):
    from project.celery import app

    settings.SYNC_CLAIM_BATCH = 5
    services.job_enqueue(kind="test_wakeup_thing", object_id=1, nudge=False)
    app.conf.task_always_eager = False
    assert tasks.drain_outbox() == 1
    assert published == []
