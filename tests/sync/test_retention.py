"""Done sync jobs are pruned after SYNC_DONE_RETENTION_DAYS, in batches, audited once per run; nothing else goes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync import services, tasks
from project.sync.models import SyncJob

pytestmark = pytest.mark.django_db


def _job(object_id: str, state: str, finished_days_ago: float | None, kind: str = "agent") -> SyncJob:
    finished = None if finished_days_ago is None else timezone.now() - timedelta(days=finished_days_ago)
    return SyncJob.objects.create(kind=kind, object_id=object_id, state=state, finished_at=finished, attempts=1)


def _left() -> set[int]:
    return set(SyncJob.objects.values_list("pk", flat=True))


def test_old_done_jobs_go_recent_and_unfinished_ones_stay(settings):
    settings.SYNC_DONE_RETENTION_DAYS = 30
    old = [_job("1", "done", 45), _job("1", "done", 31), _job("2", "done", 400), _job("3", "done", 90)]
    kept = [
        _job("1", "done", 29),  # within the retention
        _job("2", "failed", 60), _job("2", "dead", 60),  # never pruned, however old
        _job("3", "discarded", 80), _job("3", "superseded", 80), _job("3", "running", None),
        _job("3", "pending", None),
    ]
    assert services.sync_jobs_prune(actor=SYSTEM) == 4
    assert _left() == {job.pk for job in kept}
    assert not set(job.pk for job in old) & _left()


def test_an_objects_newest_job_stays_however_old(settings):
    # Its badge in the admin reads "synced" from it; without it the object would look never synced.
    settings.SYNC_DONE_RETENTION_DAYS = 30
    replaced, newest = _job("7", "done", 200), _job("7", "done", 100)
    alone = _job("8", "done", 500, kind="secret")
    same_id_other_kind = _job("7", "done", 300, kind="tool")
    assert services.sync_jobs_prune(actor=SYSTEM) == 1
    assert _left() == {newest.pk, alone.pk, same_id_other_kind.pk}
    assert replaced.pk not in _left()


def test_the_prune_deletes_in_batches_and_is_audited_once_per_run(settings):
    settings.SYNC_DONE_RETENTION_DAYS = 30
    doomed = [_job("9", "done", 60 - n) for n in range(5)]
    newest = _job("9", "done", 1)
    assert services.sync_jobs_prune(actor=SYSTEM, batch=2) == 5  # batches of 2, 2, 1
    assert _left() == {newest.pk} and not set(j.pk for j in doomed) & _left()
    (event,) = AuditEvent.objects.filter(action="sync.jobs_prune")
    assert event.actor_type == AuditEvent.ActorType.SYSTEM and event.object_type == "sync.syncjob"
    assert event.changes["deleted"] == 5 and "finished_before" in event.changes
    assert services.sync_jobs_prune(actor=SYSTEM, batch=2) == 0  # nothing to do: no audit line for nothing
    assert AuditEvent.objects.filter(action="sync.jobs_prune").count() == 1


def test_a_batch_boundary_that_falls_exactly_on_the_last_row_stops(settings, django_assert_max_num_queries):
    settings.SYNC_DONE_RETENTION_DAYS = 30
    for n in range(4):
        _job("10", "done", 60 - n)
    _job("10", "done", 1)
    with django_assert_max_num_queries(12):  # three selects, two deletes, the audit event, savepoints
        assert services.sync_jobs_prune(actor=SYSTEM, batch=2) == 4


def test_the_periodic_task_prunes_with_the_retention_setting(settings):
    settings.SYNC_DONE_RETENTION_DAYS = 10
    gone, kept, newest = _job("11", "done", 11), _job("11", "done", 9), _job("11", "done", 0)
    assert tasks.prune_done_jobs.apply().get() == 1
    assert _left() == {kept.pk, newest.pk} and gone.pk not in _left()
