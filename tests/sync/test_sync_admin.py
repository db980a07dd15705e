"""The sync pages in the admin: jobs, drift and runs, scoped per workspace, every action through a service."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from project.audit.models import AuditEvent
from project.sync import registry, services
from project.sync.models import Drift, ReconcileRun, SyncJob
from tests.factories import AgentFactory, DriftFactory, ReconcileRunFactory, SyncJobFactory

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:sync_syncjob_changelist")
DRIFT = reverse("admin:sync_drift_changelist")
RUNS = reverse("admin:sync_reconcilerun_changelist")
START = reverse("admin:sync_reconcilerun_start")


def test_sync_page_shows_reasons_counts_and_filters(owner_client, workspace, other_workspace):
    SyncJobFactory(workspace=workspace, object_id="1", state="failed",
                   last_error="validation_error: body.name: too long (HTTP 422)")
    SyncJobFactory(workspace=workspace, object_id="2", state="dead",
                   last_error="gave up after 8 attempts: service_unavailable (HTTP 503)")
    SyncJobFactory(workspace=workspace, object_id="3", state="done")
    SyncJobFactory(workspace=other_workspace, object_id="4", state="dead", last_error="elsewhere")
    page = owner_client.get(JOBS + "?state=attention").content.decode()
    assert "too long (HTTP 422)" in page and "gave up after 8 attempts" in page
    assert "obj 3" not in page and "elsewhere" not in page
    assert "Failed: <strong>1</strong>" in page and "Dead: <strong>1</strong>" in page
    assert "obj 1" in owner_client.get(JOBS + f"?workspace={workspace.pk}&kind=agent").content.decode()
    assert "obj 1" not in owner_client.get(JOBS + "?kind=secret").content.decode()


def test_workspace_filter_offers_only_the_persons_workspaces(owner_client, workspace, other_workspace):
    page = owner_client.get(JOBS).content.decode()
    assert f"?workspace={workspace.pk}" in page and f"?workspace={other_workspace.pk}" not in page


def test_sync_page_queries_do_not_grow_with_rows(owner_client, workspace):
    for i in range(3):
        SyncJobFactory(workspace=workspace, object_id=str(i), state="failed", last_error="x")
    with CaptureQueriesContext(connection) as few:
        assert owner_client.get(JOBS).status_code == 200
    for i in range(3, 40):
        SyncJobFactory(workspace=workspace, object_id=str(i), state="dead", last_error="y")
    with CaptureQueriesContext(connection) as many:
        assert owner_client.get(JOBS).status_code == 200
    assert len(many) == len(few)


def test_outsider_sees_neither_jobs_nor_drift_of_another_workspace(outsider_client, workspace):
    job = SyncJobFactory(workspace=workspace, object_id="1", state="failed", last_error="secretly broken")
    drift = DriftFactory(workspace=workspace, object_id="1")
    assert "secretly broken" not in outsider_client.get(JOBS).content.decode()
    assert "drifted 1" not in outsider_client.get(DRIFT).content.decode()
    assert outsider_client.get(reverse("admin:sync_syncjob_change", args=[job.pk])).status_code == 404
    assert outsider_client.get(reverse("admin:sync_drift_change", args=[drift.pk])).status_code == 404


def test_retry_and_discard_from_the_page_are_audited(owner_client, workspace):
    failed = SyncJobFactory(workspace=workspace, object_id="1", state="failed")
    dead = SyncJobFactory(workspace=workspace, object_id="2", state="dead")
    owner_client.post(JOBS, {"action": "retry_jobs", "_selected_action": [failed.pk]})
    owner_client.post(JOBS, {"action": "discard_jobs", "_selected_action": [dead.pk]})
    assert SyncJob.objects.get(pk=failed.pk).state == "pending"
    assert SyncJob.objects.get(pk=dead.pk).state == "discarded"
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {"sync.retry", "sync.discard"}


def test_drift_page_lists_differences_with_filters(owner_client, workspace):
    DriftFactory(workspace=workspace, problem="differs", object_id="1", fields={"name": ["Alpha", "Hand edit"]})
    DriftFactory(workspace=workspace, problem="missing_remotely", object_id="2")
    page = owner_client.get(DRIFT + "?problem__exact=differs").content.decode()
    assert "drifted 1" in page and "drifted 2" not in page
    assert "name: &#x27;Alpha&#x27; here, &#x27;Hand edit&#x27; there" in page
    page = owner_client.get(DRIFT + f"?workspace={workspace.pk}&kind=agent").content.decode()
    assert "drifted 1" in page and "drifted 2" in page


def test_drift_page_queries_do_not_grow_with_rows(owner_client, workspace):
    for i in range(3):
        DriftFactory(workspace=workspace, problem="missing_remotely", object_id=str(i))
    with CaptureQueriesContext(connection) as few:
        assert owner_client.get(DRIFT).status_code == 200
    for i in range(3, 40):
        DriftFactory(workspace=workspace, problem="differs", object_id=str(i), fields={"name": ["a", "b"]})
    with CaptureQueriesContext(connection) as many:
        assert owner_client.get(DRIFT).status_code == 200
    assert len(many) == len(few)


def test_push_action_enqueues_for_owner_and_refuses_member(owner_client, member_client, workspace):
    drift = DriftFactory(workspace=workspace, object_id="1")
    member_client.post(DRIFT, {"action": "push_local_state", "_selected_action": [drift.pk]})
    assert not SyncJob.objects.exists()
    owner_client.post(DRIFT, {"action": "push_local_state", "_selected_action": [drift.pk]})
    job = SyncJob.objects.get()
    assert (job.kind, job.object_id, job.op, job.workspace_id) == ("agent", "1", "upsert", workspace.pk)
    assert Drift.objects.get(pk=drift.pk).push_job_id == job.pk
    assert AuditEvent.objects.filter(action="sync.push").count() == 1


def test_push_action_refuses_remote_objects_unknown_locally(superuser, workspace):
    from tests.conftest import login

    drift = DriftFactory(workspace=None, problem="unknown_locally", object_id=None, remote_id="agent_handmade")
    response = login(superuser).post(DRIFT, {"action": "push_local_state", "_selected_action": [drift.pk]},
                                     follow=True)
    assert "no local object to push" in response.content.decode()
    assert not SyncJob.objects.exists()


def test_runs_page_starts_a_reconcile_and_shows_its_progress(owner_client, workspace, owner, platform,
                                                            django_capture_on_commit_callbacks):
    from agents import services as agent_services

    agent_services.agent_create(actor=owner, workspace=workspace, name="Alpha", auth_mode="signed")
    services.outbox_drain()
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(START, {"operation": "reconcile", "kind": "agent"})
    assert response.status_code == 302
    run = ReconcileRun.objects.get()
    assert (run.state, run.done, run.total, run.requested_by) == ("done", 1, 1, "owner")
    page = owner_client.get(RUNS).content.decode()
    assert '<progress max="100" value="100"></progress> 1/1 100%' in page
    assert "Reconcile now" in page and "Re-sync every agent" in page


def test_runs_page_bulk_resync_of_own_workspaces(owner_client, workspace, other_workspace, platform,
                                                 django_capture_on_commit_callbacks):
    AgentFactory.create_batch(2, workspace=workspace)
    AgentFactory.create_batch(2, workspace=other_workspace)
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(START, {"operation": "resync", "kind": "agent"})
    run = ReconcileRun.objects.get()
    assert (run.operation, run.state, run.jobs_enqueued) == ("resync", "done", 2)


def test_member_without_sync_manage_sees_no_runs_and_cannot_start_one(member_client, workspace):
    ReconcileRunFactory(state="done")
    assert member_client.get(RUNS).status_code == 403
    response = member_client.post(START, {"operation": "reconcile"})
    assert response.status_code == 403
    assert ReconcileRun.objects.count() == 1


def test_runs_page_refuses_get_on_start(owner_client):
    assert owner_client.get(START).status_code == 405


def test_kinds_in_the_filters_come_from_the_registries():
    assert "agent" in registry.kinds() and "agent" in registry.reconciler_kinds()
    assert "agent" in registry.resync_kinds()
