"""Reconcile (the drift report), bulk re-sync and pushing the local state, with progress."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync import registry, services
from project.sync.models import Drift, ReconcileRun, SyncJob
from tests.factories import AgentFactory, DriftFactory, ReconcileRunFactory, SyncJobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(workspace, owner, platform) -> list[Agent]:
    """Three agents on the platform, all in step."""
    agents = [agent_services.agent_create(actor=owner, workspace=workspace, name=name, auth_mode="allowlist",
                                          allowlist=["app.example.com"]) for name in ("Alpha", "Beta", "Gamma")]
    services.outbox_drain()
    for agent in agents:
        agent.refresh_from_db()
    return agents


def _reconcile(*kinds: str) -> tuple[ReconcileRun, str]:
    out = io.StringIO()
    call_command("reconcile", *[arg for kind in kinds for arg in ("--kind", kind)], stdout=out)
    return ReconcileRun.objects.latest("id"), out.getvalue()


def test_drift_item_names_a_known_problem_and_its_local_object():
    with pytest.raises(ValueError, match="problem"):
        registry.DriftItem("agent", 1, None, "gone")
    with pytest.raises(ValueError, match="local object id"):
        registry.DriftItem("agent", None, "r1", registry.DIFFERS)
    assert registry.DriftItem("agent", None, "r1", registry.UNKNOWN_LOCALLY).object_id is None


def test_in_step_agents_show_no_drift(synced):
    run, out = _reconcile("agent")
    assert run.state == "done" and run.drift_found == 0 and not Drift.objects.exists()
    assert "agent: 3/3 (100%)" in out


def test_reconcile_reports_agents_changed_deleted_or_made_on_the_platform(synced, platform, workspace):
    alpha, beta, _gamma = synced
    platform.update_agent(alpha.remote_id, name="Alpha (edited by hand)",
                          platform_settings={"auth": {"enable_auth": True, "allowlist": []}},
                          conversation_config={"conversation": {"max_duration_seconds": 42}})
    platform.delete_agent(beta.remote_id)
    untagged = platform.create_agent(name="Made by hand", conversation_config={}, platform_settings={})
    orphan = platform.create_agent(name="Left behind", conversation_config={}, platform_settings={},
                                   tags=[f"keyward-{uuid.uuid4()}"])
    run, out = _reconcile()
    assert run.state == "done" and run.drift_found == 4
    differs = Drift.objects.get(problem="differs")
    assert (differs.object_id, differs.workspace_id, differs.remote_id) == (str(alpha.pk), workspace.pk,
                                                                            alpha.remote_id)
    assert differs.fields == {
        "name": ["Alpha", "Alpha (edited by hand)"],
        "max_duration_seconds": [600, 42],
        "platform_settings.auth.enable_auth": [False, True],
        "platform_settings.auth.allowlist": [["app.example.com"], []],
    }
    missing = Drift.objects.get(problem="missing_remotely")
    assert (missing.object_id, missing.remote_id, missing.object_repr) == (str(beta.pk), beta.remote_id, "Beta")
    unknown = Drift.objects.filter(problem="unknown_locally")
    assert set(unknown.values_list("remote_id", flat=True)) == {untagged, orphan}
    assert set(unknown.values_list("workspace_id", flat=True)) == {None}
    assert "unknown to keyward: 2" in out


def test_duplicate_remote_copy_is_reported_as_unknown(synced, platform):
    alpha = synced[0]
    duplicate = platform.create_agent(name="Alpha", conversation_config={}, platform_settings={},
                                      tags=[alpha.sync_tag])
    _reconcile("agent")
    assert list(Drift.objects.values_list("problem", "remote_id")) == [("unknown_locally", duplicate)]


def test_objects_with_a_sync_in_flight_are_not_drift(synced, owner, platform):
    alpha = synced[0]
    agent_services.agent_update(actor=owner, agent=alpha, name="Alpha renamed")  # pending, not yet pushed
    _reconcile("agent")
    assert not Drift.objects.exists()


def test_a_failed_reconcile_keeps_the_previous_report(synced, platform, emulator):
    platform.delete_agent(synced[0].remote_id)
    _reconcile("agent")
    assert Drift.objects.count() == 1
    emulator.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(CommandError, match="failed"):
        _reconcile("agent")
    run = ReconcileRun.objects.latest("id")
    assert run.state == "failed" and "agent: service_unavailable" in run.error and run.finished_at
    assert Drift.objects.count() == 1


def test_a_kind_replaces_only_its_own_report(synced, platform):
    DriftFactory(kind="secret", object_id="9", problem="missing_remotely")
    platform.delete_agent(synced[0].remote_id)
    _reconcile("agent")
    assert sorted(Drift.objects.values_list("kind", flat=True)) == ["agent", "secret"]


def test_unknown_kind_is_refused():
    with pytest.raises(CommandError, match="known kinds are"):
        call_command("reconcile", "--kind", "nonsense", stdout=io.StringIO())


def test_progress_is_written_to_the_run_as_the_reconciler_reports(synced, platform, monkeypatch):
    from project.sync.services import reconcile as reconcile_module

    monkeypatch.setattr(reconcile_module, "PROGRESS_EVERY_SECONDS", 0)
    seen: list[tuple[int, int]] = []
    run = services.reconcile_start(actor=SYSTEM, kinds=["agent"], enqueue=False)
    services.reconcile_run(run=run, on_progress=lambda r: seen.append((r.done, r.total)))
    assert seen[0] == (0, 1)  # the kind begins; its size not yet known
    assert (0, 3) in seen and (1, 3) in seen and (2, 3) in seen and seen[-1] == (3, 3)
    run.refresh_from_db()
    assert (run.state, run.done, run.total, run.percent, run.current_kind) == ("done", 3, 3, 100, "")
    assert run.started_at <= run.finished_at


def test_periodic_reconcile_waits_for_a_live_run_and_closes_a_stale_one(synced, platform):
    live = ReconcileRunFactory(state="running")
    assert services.reconcile_execute() is None
    ReconcileRun.objects.filter(pk=live.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    run = services.reconcile_execute()
    assert run is not None and run.state == "done"
    live.refresh_from_db()
    assert live.state == "failed" and "worker lost" in live.error


def test_periodic_reconcile_runs_a_queued_run_the_broker_never_delivered(synced, platform, owner):
    queued = services.reconcile_start(actor=owner, kinds=["agent"], enqueue=False)
    assert services.reconcile_execute().pk == queued.pk
    queued.refresh_from_db()
    assert queued.state == "done" and queued.requested_by == "owner"


def test_reconcile_started_by_a_person_runs_through_the_task_and_is_audited(synced, platform, owner,
                                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.reconcile_start(actor=owner)
    run.refresh_from_db()
    assert run.state == "done" and run.kinds == registry.reconciler_kinds()
    assert AuditEvent.objects.filter(action="sync.reconcile", actor_label="owner").exists()


def test_member_without_sync_manage_cannot_start_a_run(member):
    with pytest.raises(PermissionDenied):
        services.reconcile_start(actor=member)
    with pytest.raises(PermissionDenied):
        services.resync_start(actor=member, kind="agent")
    assert not ReconcileRun.objects.exists()


def test_pushing_local_state_restores_the_platform_and_is_audited(synced, platform, owner):
    alpha, beta, _ = synced
    platform.update_agent(alpha.remote_id, name="Hand edit")
    platform.delete_agent(beta.remote_id)
    _reconcile("agent")
    for drift in Drift.objects.all():
        job = services.drift_push(actor=owner, drift=drift)
        assert (job.kind, job.object_id, job.op, job.state) == ("agent", drift.object_id, "upsert", "pending")
    assert Drift.objects.filter(pushed_at__isnull=False).count() == 2
    assert AuditEvent.objects.filter(action="sync.push").count() == 2
    services.outbox_drain()
    _reconcile("agent")
    # Pushing brings back a hand edit; an agent deleted on the platform is not recreated by a push (issue 17):
    # that takes the drift page's explicit "Recreate from Keyward".
    (missing,) = Drift.objects.all()
    assert (missing.object_id, missing.problem) == (str(beta.pk), "missing_remotely")
    services.drift_act(actor=owner, drift=missing, action="agent_recreate")
    services.outbox_drain()
    _reconcile("agent")
    assert not Drift.objects.exists()
    assert platform.get_agent(alpha.remote_id)["name"] == "Alpha"


def test_remote_object_unknown_locally_has_nothing_to_push(synced, platform, owner, superuser):
    remote_id = platform.create_agent(name="Hand made", conversation_config={}, platform_settings={})
    _reconcile("agent")
    drift = Drift.objects.get()
    with pytest.raises(ValueError, match="no local object to push"):
        services.drift_push(actor=superuser, drift=drift)
    assert not SyncJob.objects.filter(state="pending").exists()
    platform.get_agent(remote_id)  # still there: nothing destructive happens


def test_pushing_needs_sync_manage_in_the_objects_workspace(synced, platform, member, outsider):
    platform.delete_agent(synced[0].remote_id)
    _reconcile("agent")
    drift = Drift.objects.get()
    for person in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.drift_push(actor=person, drift=drift)
    assert not AuditEvent.objects.filter(action="sync.push").exists()


def test_bulk_resync_queues_every_agent_of_the_actors_workspaces(owner, workspace, other_workspace, platform):
    mine = AgentFactory.create_batch(5, workspace=workspace)
    AgentFactory.create_batch(2, workspace=other_workspace)  # the owner does not manage sync there
    run = services.resync_run(run=services.resync_start(actor=owner, kind="agent", enqueue=False))
    assert (run.state, run.workspace_ids, run.jobs_enqueued, run.done, run.total) == (
        "done", [workspace.pk], 5, 5, 5)
    assert set(SyncJob.objects.values_list("object_id", flat=True)) == {str(a.pk) for a in mine}
    assert AuditEvent.objects.filter(action="sync.resync", actor_label="owner").exists()


def test_resync_command_prints_progress_and_queues_all(workspace, other_workspace, platform):
    AgentFactory.create_batch(3, workspace=workspace)
    AgentFactory.create_batch(1, workspace=other_workspace)
    out = io.StringIO()
    call_command("resync", "--kind", "agent", stdout=out)
    assert "agent: 4/4 (100%)" in out.getvalue() and "4 job(s) queued" in out.getvalue()
    assert SyncJob.objects.filter(state="pending").count() == 4
    assert ReconcileRun.objects.get().workspace_ids is None  # the system re-syncs every workspace


def test_resync_nudges_the_workers_once_per_chunk(workspace, platform, monkeypatch):
    from project.sync.services import reconcile as reconcile_module

    monkeypatch.setattr(reconcile_module, "RESYNC_CHUNK", 2)
    AgentFactory.create_batch(5, workspace=workspace)
    calls: list[str] = []
    monkeypatch.setattr("django.db.transaction.on_commit",
                        lambda func, using=None, robust=False: calls.append(func.__name__))
    run = services.resync_start(actor=SYSTEM, kind="agent", enqueue=False)
    services.resync_run(run=run)
    assert calls.count("_nudge") == 3  # chunks of 2, 2 and 1


@pytest.fixture
def scripted_reconciler():
    """A reconciler of a test kind reporting objects 1-3 missing, and doing ``during`` while it looks."""
    script: dict = {"during": lambda: None}

    def reconcile(client, workspace_ids=None):
        script["during"]()
        for object_id in ("1", "2", "3"):
            yield registry.DriftItem("recon_test", object_id, None, registry.MISSING_REMOTELY)

    registry.register_reconciler("recon_test")(reconcile)
    yield script
    registry._reconcilers.pop("recon_test")


def test_objects_whose_job_ran_or_arrived_during_the_reconcile_are_not_drift(scripted_reconciler):
    SyncJobFactory(kind="recon_test", object_id="1", state="done")  # long finished: 1 is real drift
    running = SyncJobFactory(kind="recon_test", object_id="2", state="running")

    def meanwhile():
        SyncJob.objects.filter(pk=running.pk).update(state="done")  # finished while the reconciler looked
        services.job_enqueue(kind="recon_test", object_id=3)  # a change committed meanwhile

    scripted_reconciler["during"] = meanwhile
    run = services.reconcile_run(run=services.reconcile_start(actor=SYSTEM, kinds=["recon_test"], enqueue=False))
    assert run.drift_found == 1
    assert list(Drift.objects.values_list("object_id", flat=True)) == ["1"]
