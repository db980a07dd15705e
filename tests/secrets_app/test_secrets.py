import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from secrets_app import services
from secrets_app.models import Secret
from tests.factories import make_secret, make_tool

pytestmark = pytest.mark.django_db


def test_owner_creates_a_secret_audited_without_its_value_and_queued_for_the_platform(owner, workspace):
    secret = services.secret_create(actor=owner, workspace=workspace, name="crm_token", value="audit-canary-Rf08")
    event = AuditEvent.objects.get(action="secret.create")
    assert event.changes["value"] == "[set]" and event.changes["name"] == [None, "crm_token"]
    assert "audit-canary-Rf08" not in str(event.changes)
    job = SyncJob.objects.get(kind="secret")
    assert job.object_id == str(secret.pk) and job.payload == {}
    assert secret.last_changed_by == owner and secret.last_changed_at is not None


@pytest.mark.parametrize("who", ["member", "outsider", "viewer"])
def test_people_without_secrets_manage_cannot_create_update_or_delete(request, who, workspace):
    actor = request.getfixturevalue(who)
    secret = make_secret(workspace)
    with pytest.raises(PermissionDenied):
        services.secret_create(actor=actor, workspace=workspace, name="other", value="x-value-1")
    with pytest.raises(PermissionDenied):
        services.secret_update(actor=actor, secret=secret, value="new-value-2")
    with pytest.raises(PermissionDenied):
        services.secret_delete(actor=actor, secret=secret)
    assert Secret.objects.get().value == "crm-value-Hq28-xx"


def test_security_admin_role_may_manage_secrets(security_admin, workspace):
    services.secret_create(actor=security_admin, workspace=workspace, name="ok", value="sa-value-3")
    assert Secret.objects.filter(name="ok").exists()


@pytest.mark.parametrize("name,message", [
    ("Crm", "lowercase"), ("1token", "starting with a letter"), ("crm-token", "lowercase letters, digits and "),
    ("a" * 64, "1–63"), ("with space", "lowercase"), ("user_google_token", "reserved"),
])
def test_secret_names_must_be_safe_identifiers(owner, workspace, name, message):
    with pytest.raises(ValidationError) as caught:
        services.secret_create(actor=owner, workspace=workspace, name=name, value="some-value")
    assert message in " ".join(caught.value.message_dict["name"])
    assert not Secret.objects.exists() and not SyncJob.objects.exists() and not AuditEvent.objects.exists()


def test_names_are_unique_per_workspace_only(owner, workspace, other_workspace):
    make_secret(workspace, name="shared")
    with pytest.raises(ValidationError) as caught:
        services.secret_create(actor=owner, workspace=workspace, name="shared", value="v-2")
    assert "name" in str(caught.value) or "__all__" in caught.value.message_dict
    make_secret(other_workspace, name="shared")
    with pytest.raises(IntegrityError), transaction.atomic():
        Secret.objects.create(workspace=workspace, name="shared", value="bypassing-the-service")
    assert Secret.objects.filter(name="shared").count() == 2


def test_a_value_is_required_on_create(owner, workspace):
    with pytest.raises(ValidationError) as caught:
        services.secret_create(actor=owner, workspace=workspace, name="empty", value="")
    assert "value" in caught.value.message_dict


def test_blank_value_on_update_keeps_the_current_value(owner, workspace):
    secret = make_secret(workspace, value="keep-me-Dd44")
    services.secret_update(actor=owner, secret=secret, description="now described", value="")
    secret = Secret.objects.get()
    assert secret.value == "keep-me-Dd44" and secret.description == "now described"
    event = AuditEvent.objects.get(action="secret.update")
    assert "value" not in event.changes and event.changes["description"] == ["", "now described"]


def test_a_new_value_is_audited_only_as_changed_and_queued(owner, workspace, django_capture_on_commit_callbacks):
    secret = make_secret(workspace, value="old-Aa11-value")
    SyncJob.objects.update(state="done")
    services.secret_update(actor=owner, secret=secret, value="new-Bb22-value")
    event = AuditEvent.objects.get(action="secret.update")
    assert event.changes == {"value": "[changed]"}
    assert Secret.objects.get().value == "new-Bb22-value"
    assert SyncJob.objects.filter(kind="secret", state="pending").count() == 1


def test_an_unchanged_update_writes_nothing(owner, workspace):
    secret = make_secret(workspace, value="same-Cc33")
    services.secret_update(actor=owner, secret=secret, value="same-Cc33", name="crm_token")
    assert not AuditEvent.objects.filter(action="secret.update").exists()


def test_deleting_a_secret_in_use_is_refused_naming_the_tools(owner, workspace):
    secret = make_secret(workspace, name="crm_token")
    make_tool(workspace, name="lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    make_tool(workspace, name="notes", headers={"X-Key": "{{secret__crm_token}}"})
    with pytest.raises(ValidationError) as caught:
        services.secret_delete(actor=owner, secret=secret)
    assert "lookup, notes" in caught.value.messages[0]
    assert Secret.objects.filter(pk=secret.pk).exists()
    assert not SyncJob.objects.filter(kind="secret", op="delete").exists()


def test_deleting_a_free_secret_queues_the_platform_delete(owner, workspace):
    secret = make_secret(workspace)
    Secret.objects.filter(pk=secret.pk).update(remote_id="sec-remote-1")
    services.secret_delete(actor=owner, secret=secret)
    job = SyncJob.objects.get(kind="secret")
    assert job.op == "delete" and job.payload == {"remote_id": "sec-remote-1", "remote_name": "acme__crm_token"}
    assert AuditEvent.objects.filter(action="secret.delete").exists() and not Secret.objects.exists()


def test_renaming_a_secret_in_use_is_refused(owner, workspace):
    secret = make_secret(workspace, name="crm_token")
    make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    with pytest.raises(ValidationError) as caught:
        services.secret_update(actor=owner, secret=secret, name="crm_key")
    assert "lookup" in caught.value.message_dict["name"][0]


def test_updating_an_unreadable_secret_needs_a_new_value(owner, workspace, unrelated_key, settings):
    secret = make_secret(workspace)
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    with pytest.raises(ValidationError) as caught:
        services.secret_update(actor=owner, secret=secret, description="only this")
    assert "cannot decrypt: encryption key missing" in caught.value.message_dict["value"][0]
    services.secret_update(actor=owner, secret=secret, value="fresh-Ee55")
    assert Secret.objects.get().value == "fresh-Ee55"
