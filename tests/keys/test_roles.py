from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from project.audit.models import AuditEvent
from tests.conftest import login
from tests.factories import UserFactory, builtin_role, grant, make_role, make_service_account
from tests.keys.conftest import state
from workspaces import access, services
from workspaces.models import Role, RoleAssignment

pytestmark = pytest.mark.django_db

ASSIGN_ADD = reverse("admin:workspaces_roleassignment_add")
ROLE_ADD = reverse("admin:workspaces_role_add")


def _assign_form(workspace, role, person="", service_account=""):
    return {"workspace": workspace.pk, "role": role.pk, "person": person,
            "service_account": getattr(service_account, "pk", service_account),
            "expires_at_0": "", "expires_at_1": ""}


def _errors(response):
    return response.context["adminform"].form.errors


# --- custom roles ---------------------------------------------------------------------------------------
def test_admin_defines_custom_role_through_admin(owner_client, owner, workspace):
    response = owner_client.post(ROLE_ADD, {"workspace": workspace.pk, "name": "Broker",
                                            "description": "mints sessions",
                                            "permissions": ["sessions.mint", "workspace.view"]})
    assert response.status_code == 302, _errors(response)
    role = Role.objects.get(name="Broker")
    assert (role.workspace, role.permissions, role.is_builtin) == (workspace, ["sessions.mint", "workspace.view"],
                                                                   False)
    event = AuditEvent.objects.get(action="role.create")
    assert event.actor_label == "owner" and event.changes["permissions"] == [None, role.permissions]


def test_custom_role_refuses_permission_outside_catalogue(owner, workspace):
    before = state()
    with pytest.raises(ValidationError) as exc:
        services.role_create(actor=owner, workspace=workspace, name="Odd", permissions=["root.everything"])
    assert "root.everything" in str(exc.value.message_dict["permissions"])
    assert state() == before


def test_custom_role_needs_roles_assign(member, workspace):
    with pytest.raises(PermissionDenied):
        services.role_create(actor=member, workspace=workspace, name="Mine", permissions=["workspace.view"])


def test_builtin_roles_cannot_be_changed_or_deleted(owner, owner_client, superuser):
    admin_role = builtin_role("Admin")
    before = state()
    for actor in (owner, superuser, None):
        with pytest.raises(ValidationError, match="Built-in roles"):
            services.role_update(actor=actor, role=admin_role, permissions=["workspace.view"])
        with pytest.raises(ValidationError, match="Built-in roles"):
            services.role_delete(actor=actor, role=admin_role)
    url = reverse("admin:workspaces_role_change", args=[admin_role.pk])
    assert owner_client.get(url).status_code == 200  # shown, read-only
    assert owner_client.post(url, {"name": "Admin", "permissions": ["workspace.view"]}).status_code == 403
    assert owner_client.get(reverse("admin:workspaces_role_delete", args=[admin_role.pk])).status_code == 403
    assert state() == before


def test_editing_an_assigned_role_changes_its_holders_and_is_audited(owner, member, workspace):
    role = services.role_create(actor=owner, workspace=workspace, name="Ops", permissions=["workspace.view"])
    holder = UserFactory(username="holder")
    services.role_assign(actor=owner, workspace=workspace, role=role, user=holder)
    services.role_update(actor=owner, role=role, permissions=["workspace.view", "sync.manage"])
    assert access.has_perm(type(holder).objects.get(pk=holder.pk), "sync.manage", workspace.pk)
    event = AuditEvent.objects.get(action="role.update")
    assert event.changes["permissions"] == [["workspace.view"], ["sync.manage", "workspace.view"]]
    assert event.changes["holders"] == 1


def test_role_in_use_cannot_be_deleted(owner, workspace):
    role = services.role_create(actor=owner, workspace=workspace, name="Ops", permissions=["workspace.view"])
    services.role_assign(actor=owner, workspace=workspace, role=role, user=UserFactory(username="holder"))
    with pytest.raises(ValidationError, match="still assigned 1 time"):
        services.role_delete(actor=owner, role=role)
    assert Role.objects.filter(pk=role.pk).exists()


def test_unused_custom_role_is_deleted_and_audited(owner_client, owner, workspace):
    role = services.role_create(actor=owner, workspace=workspace, name="Ops", permissions=["workspace.view"])
    response = owner_client.post(reverse("admin:workspaces_role_delete", args=[role.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Role.objects.filter(pk=role.pk).exists()
    assert AuditEvent.objects.filter(action="role.delete", object_id=str(role.pk)).exists()


def test_delete_page_explains_why_a_role_in_use_stays(owner_client, owner, workspace):
    role = services.role_create(actor=owner, workspace=workspace, name="Ops", permissions=["workspace.view"])
    services.role_assign(actor=owner, workspace=workspace, role=role, user=UserFactory(username="holder"))
    response = owner_client.post(reverse("admin:workspaces_role_delete", args=[role.pk]), {"post": "yes"}, follow=True)
    assert "still assigned 1 time" in response.content.decode()
    assert Role.objects.filter(pk=role.pk).exists()


# --- granting -------------------------------------------------------------------------------------------
def test_admin_grants_a_role_by_username_and_the_grant_is_audited(owner_client, owner, workspace):
    UserFactory(username="newbie")
    response = owner_client.post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Developer"), "newbie"))
    assert response.status_code == 302, _errors(response)
    assignment = RoleAssignment.objects.get(user__username="newbie")
    assert (assignment.role.name, assignment.granted_by, assignment.workspace) == ("Developer", owner, workspace)
    event = AuditEvent.objects.get(action="role.assign")
    assert event.actor_label == "owner" and event.workspace_id == workspace.pk
    assert event.changes["granted_to"] == "user newbie" and event.changes["role"] == "Developer"
    assert event.changes["permissions"] == sorted(builtin_role("Developer").permissions)


def test_person_is_found_by_email_too(owner_client, workspace):
    UserFactory(username="newbie", email="New.Bie@example.com")
    response = owner_client.post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Viewer"), "new.bie@EXAMPLE.com"))
    assert response.status_code == 302
    assert RoleAssignment.objects.filter(user__username="newbie").exists()


def test_unknown_person_is_an_error_on_the_person_field(owner_client, workspace):
    before = state()
    response = owner_client.post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Viewer"), "ghost"))
    assert response.status_code == 200
    assert "Add a person" in " ".join(_errors(response)["person"])
    assert state() == before


def test_team_lead_assigns_roles_within_their_own_rights(team_lead, workspace, acme_sa):
    dev = UserFactory(username="dev")
    services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role("Developer"), user=dev)
    services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role("Viewer"), service_account=acme_sa)
    services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role("Team lead"),
                         user=UserFactory(username="lead2"))
    assert RoleAssignment.objects.filter(granted_by=team_lead).count() == 3


def test_granter_needs_roles_assign_in_that_workspace(security_admin, outsider, workspace):
    before = state()
    for actor in (security_admin, outsider):
        with pytest.raises(PermissionDenied):
            services.role_assign(actor=actor, workspace=workspace, role=builtin_role("Viewer"),
                                 user=UserFactory(username=f"x-{actor.username}"))
    assert login(security_admin).get(ASSIGN_ADD).status_code == 403
    assert RoleAssignment.objects.count() == len(before["assignments"])


def test_nobody_revokes_their_own_assignment(owner, second_admin, workspace):
    mine = RoleAssignment.objects.get(user=owner, workspace=workspace)
    with pytest.raises(ValidationError, match="their own assignments"):
        services.role_revoke(actor=owner, assignment=mine)
    assert RoleAssignment.objects.filter(pk=mine.pk).exists()


def test_last_active_admin_cannot_be_revoked_even_by_a_superuser(owner, superuser, workspace):
    only = RoleAssignment.objects.get(user=owner, workspace=workspace)
    before = state()
    with pytest.raises(ValidationError, match="last active Admin"):
        services.role_revoke(actor=superuser, assignment=only)
    response = login(superuser).post(reverse("admin:workspaces_roleassignment_delete", args=[only.pk]), {"post": "yes"},
                                     follow=True)
    assert "last active Admin" in response.content.decode()
    assert state() == before


@pytest.mark.parametrize("weak", ["disabled", "expired"])
def test_a_disabled_or_expired_admin_does_not_count_as_another_admin(owner, superuser, workspace, weak):
    other = UserFactory(username="other-admin", is_active=weak != "disabled")
    assignment = grant(other, "Admin", workspace)
    if weak == "expired":
        RoleAssignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="last active Admin"):
        services.role_revoke(actor=superuser, assignment=RoleAssignment.objects.get(user=owner))


def test_admin_is_revoked_when_another_active_admin_remains(owner, second_admin, workspace):
    services.role_revoke(actor=second_admin, assignment=RoleAssignment.objects.get(user=owner, workspace=workspace))
    assert not RoleAssignment.objects.filter(user=owner).exists()
    event = AuditEvent.objects.get(action="role.revoke")
    assert event.actor_label == "owner2"
    assert (event.changes["revoked_from"], event.changes["role"]) == ("user owner", "Admin")


def test_revoke_through_admin_is_audited_with_the_original_granter(owner, owner_client, team_lead, workspace):
    grantee = UserFactory(username="grantee")
    assignment = services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role("Viewer"),
                                      user=grantee)
    response = owner_client.post(reverse("admin:workspaces_roleassignment_delete", args=[assignment.pk]),
                                 {"post": "yes"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="role.revoke")
    assert (event.actor_label, event.changes["granted_by"], event.changes["revoked_from"]) == ("owner", "lead",
                                                                                             "user grantee")


def test_assignments_cannot_be_edited_only_revoked(owner_client, owner, workspace):
    assignment = RoleAssignment.objects.get(user=owner)
    url = reverse("admin:workspaces_roleassignment_change", args=[assignment.pk])
    assert owner_client.get(url).status_code == 200
    assert owner_client.post(url, {"role": builtin_role("Viewer").pk}).status_code == 403


def test_holding_a_role_twice_is_refused_with_the_reason(owner, workspace):
    user = UserFactory(username="twice")
    services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), user=user)
    with pytest.raises(ValidationError, match="already holds"):
        services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), user=user)


def test_expired_assignment_is_revoked_then_granted_again(owner, workspace):
    user = UserFactory(username="returning")
    old = services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), user=user,
                               expires_at=timezone.now() + timedelta(minutes=1))
    RoleAssignment.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(ValidationError, match="expired"):
        services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), user=user)
    services.role_revoke(actor=owner, assignment=old)
    services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"), user=user)
    assert RoleAssignment.objects.get(user=user).expires_at is None


def test_expiry_in_the_past_is_refused_on_its_field(owner_client, workspace):
    UserFactory(username="late")
    data = _assign_form(workspace, builtin_role("Viewer"), "late")
    data.update({"expires_at_0": "2000-01-01", "expires_at_1": "00:00:00"})
    response = owner_client.post(ASSIGN_ADD, data)
    assert response.status_code == 200 and "future" in " ".join(_errors(response)["expires_at"])
    assert not RoleAssignment.objects.filter(user__username="late").exists()


def test_disabled_login_cannot_be_granted(owner, workspace):
    with pytest.raises(ValidationError, match="login is disabled"):
        services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"),
                             user=UserFactory(username="gone", is_active=False))


def test_form_offers_only_roles_and_workspaces_the_granter_may_use(team_lead, workspace, other_workspace):
    grant(team_lead, "Viewer", other_workspace)  # no roles.assign there
    make_role(other_workspace, "Globex ops")
    make_service_account(other_workspace, "globex-robot")
    response = login(team_lead).get(ASSIGN_ADD)
    form = response.context["adminform"].form
    assert list(form.fields["workspace"].queryset) == [workspace]
    assert sorted(r.name for r in form.fields["role"].queryset) == ["Developer", "Team lead", "Viewer"]
    page = response.content.decode()
    assert "Globex" not in page and "globex-robot" not in page and ">Admin<" not in page


def test_expired_roles_assign_grants_no_assigning(workspace):
    lead = UserFactory(username="former-lead")
    assignment = grant(lead, "Team lead", workspace)
    RoleAssignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(PermissionDenied):
        services.role_assign(actor=type(lead).objects.get(pk=lead.pk), workspace=workspace,
                             role=builtin_role("Viewer"), user=UserFactory(username="someone"))
