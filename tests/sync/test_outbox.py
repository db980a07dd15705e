import pytest
from django.urls import reverse
from django.utils import timezone

from project.audit.models import AuditEvent
from project.sync import registry, services
from project.sync.models import SyncJob

pytestmark = pytest.mark.django_db

calls: list[tuple[str, str]] = []


@registry.register("test_thing")
def _push(job, client):
    calls.append((job.object_id, job.op))
    return f"remote-{job.object_id}"


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()


def test_enqueue_coalesces_pending_job_per_object():
    first = services.job_enqueue(kind="test_thing", object_id=1)
    second = services.job_enqueue(kind="test_thing", object_id=1, op="delete", payload={"remote_id": "r1"})
    assert first.pk == second.pk
    job = SyncJob.objects.get()
    assert (job.op, job.coalesced, job.payload) == ("delete", 1, {"remote_id": "r1"})


def test_two_workers_never_claim_the_same_job():
    for i in range(10):
        services.job_enqueue(kind="test_thing", object_id=i)
    a = services.jobs_claim(worker="a", limit=6)
    b = services.jobs_claim(worker="b", limit=6)
    assert len(a) == 6 and len(b) == 4
    assert not {j.pk for j in a} & {j.pk for j in b}


def test_new_change_waits_while_same_object_is_running():
    services.job_enqueue(kind="test_thing", object_id=7)
    [running] = services.jobs_claim(worker="a")
    services.job_enqueue(kind="test_thing", object_id=7)  # a new pending job while the first runs
    assert services.jobs_claim(worker="b") == []
    services.job_finish(running, services.job_run(running, client=None), worker="a")
    [next_job] = services.jobs_claim(worker="b")
    assert next_job.pk != running.pk


def test_expired_lease_is_requeued():
    services.job_enqueue(kind="test_thing", object_id=3)
    [job] = services.jobs_claim(worker="dead-worker")
    SyncJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timezone.timedelta(seconds=1))
    [again] = services.jobs_claim(worker="live-worker")
    assert again.pk == job.pk and again.claimed_by == "live-worker"


def test_stolen_lease_loses_the_write():
    services.job_enqueue(kind="test_thing", object_id=4)
    [job] = services.jobs_claim(worker="slow")
    SyncJob.objects.filter(pk=job.pk).update(claimed_by="other")
    services.job_finish(job, services.Outcome(SyncJob.State.DONE), worker="slow")
    assert SyncJob.objects.get(pk=job.pk).state == "running"


def test_drain_runs_in_commit_order_and_records_remote_id():
    for i in (5, 6, 7):
        services.job_enqueue(kind="test_thing", object_id=i)
    assert services.outbox_drain(client=object()) == 3
    assert [c[0] for c in calls] == ["5", "6", "7"]
    assert set(SyncJob.objects.values_list("state", "remote_id")) == {
        ("done", "remote-5"), ("done", "remote-6"), ("done", "remote-7")}


def test_backoff_grows_and_is_capped(settings):
    settings.SYNC_BACKOFF_BASE_SECONDS = 2
    settings.SYNC_BACKOFF_MAX_SECONDS = 3600
    assert 1 <= services.backoff_seconds(1) <= 2
    assert 32 <= services.backoff_seconds(6) <= 64
    assert services.backoff_seconds(30) <= 3600


def test_unknown_kind_fails_visibly():
    # A job left by a kind no app handles any more (job_enqueue refuses to make new ones).
    SyncJob.objects.create(kind="nobody_handles_this", object_id="1")
    services.outbox_drain(client=object())
    job = SyncJob.objects.get()
    assert job.state == "failed" and "no sync handler" in job.last_error


def test_retry_and_discard_are_audited(superuser):
    job = services.job_enqueue(kind="test_thing", object_id=9)
    SyncJob.objects.filter(pk=job.pk).update(state="dead", last_error="gave up")
    services.job_retry(actor=superuser, job=job)
    assert SyncJob.objects.get(pk=job.pk).state == "pending"
    services.job_discard(actor=superuser, job=job)
    assert SyncJob.objects.get(pk=job.pk).state == "discarded"
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["sync.retry", "sync.discard"]


def test_sync_admin_retry_action_needs_sync_manage(owner, member, workspace):
    from tests.conftest import login

    job = services.job_enqueue(kind="test_thing", object_id=11, workspace_id=workspace.pk)
    SyncJob.objects.filter(pk=job.pk).update(state="failed")
    url = reverse("admin:sync_syncjob_changelist")
    login(member).post(url, {"action": "retry_jobs", "_selected_action": [job.pk]})
    assert SyncJob.objects.get(pk=job.pk).state == "failed"
    login(owner).post(url, {"action": "retry_jobs", "_selected_action": [job.pk]})
    assert SyncJob.objects.get(pk=job.pk).state == "pending"


def test_broker_down_never_breaks_the_committed_change(workspace, owner, monkeypatch, caplog,
                                                      django_capture_on_commit_callbacks):
    """`.delay()` raising after commit must not turn the change into an error: the row is the record."""
    from agents import services as agent_services
    from agents.models import Agent
    from project.sync import tasks

    def broken_delay(*args, **kwargs):
        raise ConnectionRefusedError("broker is down")

    monkeypatch.setattr(tasks.drain_outbox, "apply_async", broken_delay)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        agent_services.agent_create(actor=owner, workspace=workspace, name="Kept", auth_mode="signed")
    assert callbacks  # the nudge ran, and failed quietly
    assert Agent.objects.filter(name="Kept").exists()
    assert SyncJob.objects.filter(state="pending").count() == 1
    assert "periodic drain will pick the change up" in caplog.text
