import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from agents import services
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import diff, record

pytestmark = pytest.mark.django_db


def test_events_cannot_be_updated_or_deleted_through_the_orm(owner, workspace):
    event = record(actor=owner, action="test.thing", object_type="x", object_id=1, workspace_id=workspace.pk)
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).delete()


def test_database_refuses_raw_update_and_delete(owner, workspace):
    event = record(actor=owner, action="test.thing", object_type="x", object_id=1, workspace_id=workspace.pk)
    for sql in ("UPDATE audit_auditevent SET action = 'forged' WHERE id = %s",
                "DELETE FROM audit_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


def test_secret_fields_record_only_that_they_changed():
    changes = diff({"name": "a", "value": "hunter2-canary"}, {"name": "b", "value": "other-canary"},
                   secret_fields=["value"])
    assert changes == {"name": ["a", "b"], "value": "[changed]"}


def test_web_change_records_address_and_request_id(superuser, workspace, settings):
    client = Client(REMOTE_ADDR="203.0.113.9")
    client.force_login(superuser)
    response = client.post("/admin/agents/agent/add/", {
        "workspace": workspace.pk, "name": "Traced", "auth_mode": "signed", "allowlist": "",
        "max_duration_seconds": ""})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="agent.create")
    assert event.ip == "203.0.113.9"
    assert event.request_id == response["X-Request-ID"]


def test_system_actor_is_labelled(workspace):
    agent = services.agent_create(actor=SYSTEM, workspace=workspace, name="Seeded", auth_mode="signed")
    event = AuditEvent.objects.get(object_id=str(agent.pk))
    assert (event.actor_type, event.actor_label) == ("system", "system")


def test_the_request_id_reaches_the_sync_job_and_the_worker_runs_under_it(superuser, workspace, platform, caplog):
    """One id from the request log line to the audit event, the outbox row and the worker's log lines."""
    import logging

    from project import context
    from project.sync import registry
    from project.sync.models import SyncJob
    from project.sync.services import job_run

    client = Client()
    client.force_login(superuser)
    response = client.post("/admin/agents/agent/add/", {
        "workspace": workspace.pk, "name": "Traced", "auth_mode": "signed", "allowlist": "",
        "max_duration_seconds": ""})
    assert response.status_code == 302
    request_id = response["X-Request-ID"]
    job = SyncJob.objects.get(kind="agent")
    assert job.request_id == request_id == AuditEvent.objects.get(action="agent.create").request_id

    seen: list[str | None] = []
    handler = registry.handler_for("agent")

    def spy(job: SyncJob, client: object) -> str:
        ctx = context.current()
        seen.append(ctx.request_id if ctx else None)
        logging.getLogger("project.sync").warning("pushing %s", job.object_repr)
        return handler(job, client)

    from project.logging import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())  # as on the configured handlers
    registry._handlers["agent"] = spy
    try:
        with caplog.at_level(logging.WARNING, logger="project.sync"):
            job_run(job, client=platform)
    finally:
        registry._handlers["agent"] = handler
    assert seen == [request_id]
    assert context.current() is None  # the worker's own context is back once the job is done
    record_ = next(r for r in caplog.records if r.getMessage() == "pushing Traced")
    assert getattr(record_, "request_id", None) == request_id


def test_a_coalesced_sync_job_carries_the_latest_request_id(workspace, sync_test_kinds):
    from project import context
    from project.sync.services import job_enqueue

    for request_id in ("first-request", "second-request"):
        token = context.activate(context.RequestContext(request_id=request_id))
        try:
            job = job_enqueue(kind="test_request_id", object_id=1)
        finally:
            context.deactivate(token)
    job.refresh_from_db()
    assert (job.coalesced, job.request_id) == (1, "second-request")
