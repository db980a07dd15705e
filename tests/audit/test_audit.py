import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from agents import services
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
    agent = services.agent_create(actor=None, workspace=workspace, name="Seeded", auth_mode="signed")
    event = AuditEvent.objects.get(object_id=str(agent.pk))
    assert (event.actor_type, event.actor_label) == ("system", "system")
