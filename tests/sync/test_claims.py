"""Claims, leases and the drain loop: what keeps a job from being lost, run twice or run out of order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from project.platform import errors
from project.sync import registry, selectors, services
from project.sync.models import SyncJob
from project.sync.services import drain, outbox

pytestmark = pytest.mark.django_db

seen: list[tuple[str, int]] = []
behaviour: dict[str, object] = {}


@registry.register("claim_test")
def _push(job: SyncJob, client: object) -> str:
    seen.append((job.object_id, job.attempts))
    action = behaviour.get(job.object_id)
    if callable(action):
        action(job)
    elif isinstance(action, BaseException):
        raise action
    return f"remote-{job.object_id}"


class FakeTime:
    """Stands in for the time module inside the drain: a clock tests move, and sleeps that only record."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture(autouse=True)
def _reset():
    seen.clear()
    behaviour.clear()


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(drain, "time", fake)
    return fake


def _jobs(*object_ids: int) -> list[SyncJob]:
    return [services.job_enqueue(kind="claim_test", object_id=i) for i in object_ids]


def _expire(job: SyncJob) -> None:
    SyncJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_claim_takes_due_jobs_oldest_first_and_leases_them(settings):
    settings.SYNC_LEASE_SECONDS = 120
    first, second, later = _jobs(1, 2, 3)
    SyncJob.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    claimed = services.jobs_claim(worker="w", limit=10)
    assert [j.pk for j in claimed] == [first.pk, second.pk]
    job = claimed[0]
    assert (job.state, job.claimed_by, job.attempts) == ("running", "w", 1)
    assert timedelta(seconds=110) < job.lease_until - timezone.now() <= timedelta(seconds=120)
    assert SyncJob.objects.get(pk=later.pk).state == "pending"  # still backing off


def test_idle_claim_takes_no_write_lock(django_assert_num_queries):
    with django_assert_num_queries(2):  # expired leases, then "anything due?": nothing to lock
        assert services.jobs_claim(worker="w") == []


def test_expired_lease_yields_to_a_newer_change_of_the_same_object():
    [job] = _jobs(5)
    services.jobs_claim(worker="died")
    newer = services.job_enqueue(kind="claim_test", object_id=5)  # a change while the job was running
    _expire(job)
    [claimed] = services.jobs_claim(worker="alive")
    assert claimed.pk == newer.pk
    old = SyncJob.objects.get(pk=job.pk)
    assert (old.state, old.last_error) == ("superseded", "worker lost; requeued")


def test_a_job_that_keeps_killing_its_worker_ends_dead(settings):
    settings.SYNC_MAX_ATTEMPTS = 2
    [job] = _jobs(6)
    for _ in range(2):
        services.jobs_claim(worker="doomed")
        _expire(job)
    assert services.jobs_claim(worker="next") == []
    dead = SyncJob.objects.get(pk=job.pk)
    assert dead.state == "dead" and "gave up after 2 attempts: worker lost" in dead.last_error


def test_back_to_pending_colliding_with_a_new_change_is_superseded(monkeypatch):
    [job] = _jobs(7)
    [running] = services.jobs_claim(worker="w")
    newer = services.job_enqueue(kind="claim_test", object_id=7)
    # The newer job appears between the check and the update: the unique constraint decides.
    monkeypatch.setattr(outbox, "_pending_exists", lambda kind, object_id: False)
    services.job_finish(running, services.Outcome("pending", "HTTP 503", 503, 1.0), worker="w")
    assert SyncJob.objects.get(pk=job.pk).state == "superseded"
    assert SyncJob.objects.get(pk=newer.pk).state == "pending"


def test_interrupted_drain_gives_its_batch_back():
    first, second, third = _jobs(11, 12, 13)
    behaviour["12"] = SoftTimeLimitExceeded()
    with pytest.raises(SoftTimeLimitExceeded):
        services.outbox_drain(client=object(), worker="w")
    rows = {j.pk: j for j in SyncJob.objects.all()}
    assert rows[first.pk].state == "done"
    # The job in progress may have reached the platform: it keeps its attempt. The untried one gets it back.
    assert (rows[second.pk].state, rows[second.pk].attempts) == ("pending", 1)
    assert rows[second.pk].last_error == "worker interrupted; requeued"
    assert (rows[third.pk].state, rows[third.pk].attempts, rows[third.pk].claimed_by) == ("pending", 0, "")


def test_drain_stops_claiming_when_its_time_budget_is_spent(clock):
    _jobs(21, 22, 23)
    behaviour["21"] = lambda job: setattr(clock, "now", clock.now + 30)
    assert services.outbox_drain(client=object(), batch=1, time_budget=20) == 1
    assert SyncJob.objects.filter(state="pending").count() == 2


def test_long_batch_renews_its_lease(clock, settings):
    settings.SYNC_LEASE_SECONDS = 30
    _jobs(31, 32, 33)
    leases: list = []

    def slow(job: SyncJob) -> None:
        clock.now += 11  # each call takes longer than a third of the lease
        leases.append(SyncJob.objects.get(pk=job.pk).lease_until)

    for object_id in ("31", "32", "33"):
        behaviour[object_id] = slow
    assert services.outbox_drain(client=object(), batch=3) == 3
    assert leases[0] < leases[1] < leases[2]  # renewed before the second and third calls


def test_worker_whose_lease_lapsed_skips_a_job_another_took(clock, settings):
    settings.SYNC_LEASE_SECONDS = 30
    _jobs(41, 42)

    def stall(job: SyncJob) -> None:
        clock.now += 20
        SyncJob.objects.filter(object_id="42").update(claimed_by="other")  # taken after the lease ran out

    behaviour["41"] = stall
    assert services.outbox_drain(client=object(), batch=2, worker="slow") == 1
    assert [object_id for object_id, _ in seen] == ["41"]
    assert SyncJob.objects.get(object_id="42").claimed_by == "other"


def test_rate_limit_pauses_the_worker_before_its_next_call_and_costs_no_attempt(clock):
    job, _ = _jobs(51, 53)
    behaviour["51"] = errors.RateLimited("slow down", status=429, code="concurrent_limit_exceeded", retry_after=2.5)
    services.outbox_drain(client=object())
    row = SyncJob.objects.get(pk=job.pk)
    assert (row.state, row.attempts, row.last_status) == ("pending", 0, 429)
    assert clock.slept == [2.5] and [object_id for object_id, _ in seen] == ["51", "53"]


def test_rate_limit_on_the_last_job_keeps_nobody_waiting(clock):
    _jobs(54)
    behaviour["54"] = errors.RateLimited("slow down", status=429, retry_after=2.5)
    services.outbox_drain(client=object())
    assert clock.slept == []


def test_rate_limit_pause_is_capped(clock):
    _jobs(52, 55)
    behaviour["52"] = errors.RateLimited("slow down", status=429, retry_after=600)
    services.outbox_drain(client=object())
    assert clock.slept == [drain.RATE_LIMIT_PAUSE_CAP]
    wait = SyncJob.objects.get(object_id="52").next_attempt_at - timezone.now()
    assert wait > timedelta(seconds=590)  # the job itself waits the whole Retry-After


def test_database_hiccup_in_a_handler_is_retried_not_failed():
    [job] = _jobs(61)
    behaviour["61"] = OperationalError("server closed the connection unexpectedly")
    services.outbox_drain(client=object())
    row = SyncJob.objects.get(pk=job.pk)
    assert row.state == "pending" and row.last_error == "database unavailable: OperationalError"


def test_attempted_before_sees_a_superseded_job_of_the_same_object():
    [job] = _jobs(71)
    assert selectors.attempted_before(job) is False
    [running] = services.jobs_claim(worker="died")
    newer = services.job_enqueue(kind="claim_test", object_id=71)
    _expire(running)
    [claimed] = services.jobs_claim(worker="alive")
    assert claimed.pk == newer.pk and claimed.attempts == 1
    assert selectors.attempted_before(claimed) is True


def test_publishing_tries_the_broker_once():
    from project.celery import app

    assert app.conf.broker_transport_options["max_retries"] == 0
