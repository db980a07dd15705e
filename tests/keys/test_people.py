import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from project.audit.models import AuditEvent
from tests.conftest import login
from tests.factories import UserFactory, builtin_role, grant, make_person
from tests.keys.conftest import state
from workspaces.models import RoleAssignment
from workspaces.services import people as services_people

pytestmark = pytest.mark.django_db

ADD = reverse("admin:auth_user_add")
LIST = reverse("admin:auth_user_changelist")


def _person_form(workspace, role, **overrides):
    data = {"username": "carol", "email": "carol@example.com", "first_name": "Carol", "last_name": "",
            "workspace": workspace.pk, "role": role.pk, "expires_at": ""}
    data.update(overrides)
    return data


def test_team_lead_adds_a_person_with_their_first_role(team_lead, workspace):
    response = login(team_lead).post(ADD, _person_form(workspace, builtin_role("Developer")))
    assert response.status_code == 302, response.context["adminform"].form.errors
    carol = type(team_lead).objects.get(username="carol")
    assert carol.is_staff and not carol.is_superuser and not carol.has_usable_password()
    assignment = RoleAssignment.objects.get(user=carol)
    assert (assignment.role.name, assignment.workspace, assignment.granted_by) == ("Developer", workspace, team_lead)
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["person.create",
                                                                                       "role.assign"]


def test_add_person_page_is_for_people_who_assign_roles(member, viewer):
    for user in (member, viewer):
        assert login(user).get(ADD).status_code == 403


def test_a_second_login_with_the_same_email_is_refused(owner_client, owner, workspace):
    UserFactory(username="carol-old", email="Carol@Example.com")
    before = state()
    response = owner_client.post(ADD, _person_form(workspace, builtin_role("Viewer")))
    assert response.status_code == 200
    assert "assign a role to them instead" in " ".join(response.context["adminform"].form.errors["email"])
    response = owner_client.post(ADD, _person_form(workspace, builtin_role("Viewer"), username="carol-old",
                                                   email="new@example.com"))
    assert "username" in response.context["adminform"].form.errors
    assert state() == before


def test_people_list_shows_only_people_of_the_viewers_workspaces(team_lead, member, outsider, workspace,
                                                                  other_workspace):
    both = make_person("both", "Viewer", workspace)
    grant(both, "Admin", other_workspace)
    response = login(team_lead).get(LIST)
    shown = {u.username for u in response.context["cl"].result_list}
    assert shown == {"lead", "member", "both"}
    page = response.content.decode()
    assert "Viewer in Acme" in page and "Globex" not in page  # their roles elsewhere stay hidden
    assert login(team_lead).get(reverse("admin:auth_user_change", args=[outsider.pk])).status_code == 404


def test_only_a_superuser_changes_a_login(team_lead, member, superuser):
    url = reverse("admin:auth_user_change", args=[member.pk])
    assert login(team_lead).get(url).status_code == 200  # read-only
    assert login(team_lead).post(url, {"email": "x@example.com", "is_active": ""}).status_code == 403
    assert login(team_lead).get(reverse("admin:auth_user_password_change", args=[member.pk])).status_code == 403
    with pytest.raises(PermissionDenied):
        services_people.user_update(actor=team_lead, user=member, is_active=False)
    response = login(superuser).post(url, {"first_name": "Mem", "last_name": "", "email": "member@example.com",
                                           "is_active": "on"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.first_name == "Mem"
    assert AuditEvent.objects.get(action="user.update").changes == {"first_name": ["", "Mem"]}


def test_superuser_sets_a_password_and_the_audit_keeps_no_value(superuser, team_lead):
    url = reverse("admin:auth_user_password_change", args=[team_lead.pk])
    secret = "a-long-unusual-passphrase-42"
    response = login(superuser).post(url, {"password1": secret, "password2": secret, "usable_password": "true"})
    assert response.status_code == 302
    team_lead.refresh_from_db()
    assert team_lead.check_password(secret)
    event = AuditEvent.objects.get(action="user.set_password")
    assert event.changes == {"password": "[changed]"} and secret not in str(event.changes)


def test_weak_password_is_refused(superuser, team_lead):
    with pytest.raises(ValidationError):
        services_people.user_set_password(actor=superuser, user=team_lead, password="short")


def test_last_active_admin_login_cannot_be_disabled(owner, superuser, workspace):
    with pytest.raises(ValidationError, match="last active Admin"):
        services_people.user_update(actor=superuser, user=owner, is_active=False)
    owner.refresh_from_db()
    assert owner.is_active


def test_password_hashes_cannot_be_probed_through_list_filters(owner_client, member):
    response = owner_client.get(LIST, {"password__startswith": "md5"})
    assert response.status_code in (302, 400)  # Django refuses the lookup


def test_people_are_never_deleted_from_the_admin(superuser, member):
    response = login(superuser).post(reverse("admin:auth_user_delete", args=[member.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert type(member).objects.filter(pk=member.pk).exists()


def test_django_groups_are_not_offered():
    assert Group not in admin.site._registry
