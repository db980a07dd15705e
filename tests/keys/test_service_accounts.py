import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import record
from project.sync.models import SyncJob
from tests.conftest import login
from tests.factories import builtin_role, make_service_account
from tests.keys.conftest import state
from workspaces import access, services
from workspaces.models import ServiceAccount

pytestmark = pytest.mark.django_db

LIST = reverse("admin:workspaces_serviceaccount_changelist")


def _act(client, action, *accounts):
    return client.post(LIST, {"action": action, "index": 0, "_selected_action": [sa.pk for sa in accounts]})


def test_create_audits_and_enqueues_the_platform_create(team_lead, workspace):
    sa = services.service_account_create(actor=team_lead, workspace=workspace, name="ci", description="CI")
    assert (sa.created_by, sa.is_active) == (team_lead, True)
    event = AuditEvent.objects.get(action="service_account.create")
    assert event.actor_label == "lead" and event.changes["name"] == [None, "ci"]
    job = SyncJob.objects.get()
    assert (job.kind, job.object_id, job.workspace_id) == ("service_account", str(sa.pk), workspace.pk)


def test_security_admin_creates_through_admin(security_admin, workspace):
    response = login(security_admin).post(reverse("admin:workspaces_serviceaccount_add"),
                                          {"workspace": workspace.pk, "name": "backend", "description": ""})
    assert response.status_code == 302
    assert ServiceAccount.objects.filter(name="backend", workspace=workspace).exists()


def test_create_needs_keys_issue(member, workspace):
    with pytest.raises(PermissionDenied):
        services.service_account_create(actor=member, workspace=workspace, name="ci")
    assert login(member).get(reverse("admin:workspaces_serviceaccount_add")).status_code == 403
    assert not ServiceAccount.objects.exists()


def test_duplicate_name_in_a_workspace_is_refused_on_its_field(owner, workspace, other_workspace):
    make_service_account(workspace, "ci")
    make_service_account(other_workspace, "ci")  # another workspace: fine
    response = login(owner).post(reverse("admin:workspaces_serviceaccount_add"),
                                 {"workspace": workspace.pk, "name": "ci"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert ServiceAccount.objects.filter(workspace=workspace).count() == 1


def test_update_is_audited_and_not_synced(team_lead, workspace, acme_sa):
    SyncJob.objects.all().delete()
    services.service_account_update(actor=team_lead, service_account=acme_sa, description="deploys")
    assert AuditEvent.objects.get(action="service_account.update").changes == {"description": ["", "deploys"]}
    assert not SyncJob.objects.exists()  # the platform has no rename endpoint for service accounts


def test_disable_runs_every_hook_inside_its_transaction(security_admin, workspace, acme_sa, disable_hook):
    seen = []

    def revoke_keys(actor, sa):
        seen.append((actor, sa.pk, sa.is_active, transaction.get_connection().in_atomic_block))
        record(actor=actor, action="test.keys_revoked", target=sa, workspace_id=sa.workspace_id)

    disable_hook(revoke_keys)
    services.service_account_disable(actor=security_admin, service_account=acme_sa)
    assert seen == [(security_admin, acme_sa.pk, False, True)]
    acme_sa.refresh_from_db()
    assert (acme_sa.is_active, acme_sa.disabled_by) == (False, security_admin) and acme_sa.disabled_at
    assert list(AuditEvent.objects.filter(object_id=str(acme_sa.pk)).values_list("action", flat=True)
                .order_by("id")) == ["service_account.create", "service_account.disable", "test.keys_revoked"]


def test_a_failing_hook_rolls_the_whole_disable_back(security_admin, workspace, acme_sa, disable_hook):
    disable_hook(lambda actor, sa: record(actor=actor, action="test.keys_revoked", target=sa))

    def broken(actor, sa):
        raise RuntimeError("platform unreachable")

    disable_hook(broken)
    before = state()
    with pytest.raises(RuntimeError):
        services.service_account_disable(actor=security_admin, service_account=acme_sa)
    assert ServiceAccount.objects.get(pk=acme_sa.pk).is_active
    assert state() == before
    assert not AuditEvent.objects.filter(action__in=["service_account.disable", "test.keys_revoked"]).exists()


def test_disabling_twice_runs_the_hooks_once(security_admin, acme_sa, disable_hook):
    calls = []
    disable_hook(lambda actor, sa: calls.append(sa.pk))
    services.service_account_disable(actor=security_admin, service_account=acme_sa)
    services.service_account_disable(actor=security_admin, service_account=acme_sa)
    assert calls == [acme_sa.pk]


def test_disable_needs_keys_revoke(team_lead, acme_sa):
    with pytest.raises(PermissionDenied):
        services.service_account_disable(actor=team_lead, service_account=acme_sa)
    client = login(team_lead)
    action_form = client.get(LIST).context["action_form"]  # None: no action left for this person
    assert action_form is None or "disable_service_accounts" not in dict(action_form.fields["action"].choices)
    _act(client, "disable_service_accounts", acme_sa)
    assert ServiceAccount.objects.get(pk=acme_sa.pk).is_active


def test_security_admin_disables_through_the_admin_action(security_admin, acme_sa):
    response = _act(login(security_admin), "disable_service_accounts", acme_sa)
    assert response.status_code == 302
    assert not ServiceAccount.objects.get(pk=acme_sa.pk).is_active


def test_disabled_account_keeps_its_roles_dormant_until_enabled(security_admin, owner, workspace, acme_sa):
    services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Developer"), service_account=acme_sa)
    services.service_account_disable(actor=security_admin, service_account=acme_sa)
    assert not access.has_perm(ServiceAccount.objects.get(pk=acme_sa.pk), "sessions.mint", workspace.pk)
    with pytest.raises(ValidationError, match="disabled"):
        services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), service_account=acme_sa)
    services.service_account_enable(actor=security_admin, service_account=acme_sa)
    assert access.has_perm(ServiceAccount.objects.get(pk=acme_sa.pk), "sessions.mint", workspace.pk)
    assert AuditEvent.objects.filter(action="service_account.enable", actor_label="security").exists()


def test_enabling_needs_issue_and_revoke(team_lead, security_admin, acme_sa):
    services.service_account_disable(actor=security_admin, service_account=acme_sa)
    with pytest.raises(PermissionDenied):
        services.service_account_enable(actor=team_lead, service_account=acme_sa)
    _act(login(team_lead), "enable_service_accounts", acme_sa)
    assert not ServiceAccount.objects.get(pk=acme_sa.pk).is_active
    _act(login(security_admin), "enable_service_accounts", acme_sa)
    assert ServiceAccount.objects.get(pk=acme_sa.pk).is_active


def test_service_accounts_are_never_deleted_from_the_admin(owner_client, acme_sa):
    assert owner_client.post(reverse("admin:workspaces_serviceaccount_delete", args=[acme_sa.pk]),
                             {"post": "yes"}).status_code == 403
    assert ServiceAccount.objects.filter(pk=acme_sa.pk).exists()


def test_service_account_acting_is_audited_as_itself(workspace):
    robot = make_service_account(workspace, "robot")
    services.role_assign(actor=SYSTEM, workspace=workspace, role=builtin_role("Team lead"), service_account=robot)
    robot = ServiceAccount.objects.get(pk=robot.pk)
    created = services.service_account_create(actor=robot, workspace=workspace, name="child")
    event = AuditEvent.objects.get(action="service_account.create", object_id=str(created.pk))
    assert (event.actor_type, event.actor_label) == ("service_account", "service account robot")
    assert created.created_by is None
    with pytest.raises(ValidationError, match="themselves"):
        services.role_assign(actor=robot, workspace=workspace, role=builtin_role("Viewer"), service_account=robot)

