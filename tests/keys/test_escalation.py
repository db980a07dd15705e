"""Escalation attempts: each one refused, with nothing changed (rows, audit trail)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from project.actors import SYSTEM
from tests.conftest import login
from tests.factories import UserFactory, builtin_role, make_role
from tests.keys.conftest import state
from workspaces import services
from workspaces.models import RoleAssignment, ServiceAccount
from workspaces.services import people as services_people

pytestmark = pytest.mark.django_db

ASSIGN_ADD = reverse("admin:workspaces_roleassignment_add")


def _assign_form(workspace, role, person="", service_account=""):
    return {"workspace": workspace.pk, "role": role.pk, "person": person,
            "service_account": getattr(service_account, "pk", service_account),
            "expires_at_0": "", "expires_at_1": ""}


def _errors(response):
    return response.context["adminform"].form.errors


def test_team_lead_cannot_grant_admin(team_lead, workspace):
    UserFactory(username="friend")
    before = state()
    response = login(team_lead).post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Admin"), "friend"))
    assert response.status_code == 200 and "role" in _errors(response)
    for role in ("Admin", "Security admin"):
        with pytest.raises(ValidationError) as exc:
            services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role(role),
                                 user=type(team_lead).objects.get(username="friend"))
        assert "within your own permissions" in str(exc.value.message_dict["role"])
    assert state() == before


def test_team_lead_cannot_grant_to_themselves(team_lead, workspace):
    before = state()
    response = login(team_lead).post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Developer"), "lead"))
    assert response.status_code == 200
    assert "themselves" in " ".join(_errors(response)["person"])
    with pytest.raises(ValidationError, match="themselves"):
        services.role_assign(actor=team_lead, workspace=workspace, role=builtin_role("Viewer"), user=team_lead)
    assert state() == before


def test_superuser_cannot_grant_to_themselves_either(superuser, workspace):
    with pytest.raises(ValidationError, match="themselves"):
        services.role_assign(actor=superuser, workspace=workspace, role=builtin_role("Admin"), user=superuser)


def test_team_lead_cannot_add_a_permission_they_lack_to_a_role(team_lead, workspace):
    role = services.role_create(actor=team_lead, workspace=workspace, name="Helpers", permissions=["workspace.view"])
    services.role_assign(actor=team_lead, workspace=workspace, role=role, user=UserFactory(username="helper"))
    before = state()
    url = reverse("admin:workspaces_role_change", args=[role.pk])
    response = login(team_lead).post(url, {"name": "Helpers", "description": "",
                                           "permissions": ["workspace.view", "keys.revoke"]})
    assert response.status_code == 200
    assert "keys.revoke" in " ".join(_errors(response)["permissions"])
    with pytest.raises(ValidationError, match="keys.revoke"):
        services.role_update(actor=team_lead, role=role, permissions=["workspace.view", "keys.revoke"])
    with pytest.raises(ValidationError, match="roles.assign|workspace.manage"):
        services.role_create(actor=team_lead, workspace=workspace, name="Bigger",
                             permissions=["workspace.manage"])
    assert state() == before


def test_team_lead_cannot_touch_a_role_beyond_their_rights(owner, team_lead, workspace):
    role = services.role_create(actor=owner, workspace=workspace, name="Responders",
                                permissions=["workspace.view", "keys.revoke"])
    before = state()
    client = login(team_lead)
    url = reverse("admin:workspaces_role_change", args=[role.pk])
    assert client.get(url).status_code == 200  # read-only
    assert client.post(url, {"name": "Responders", "permissions": ["workspace.view"]}).status_code == 403
    assert client.post(reverse("admin:workspaces_role_delete", args=[role.pk]), {"post": "yes"}).status_code == 403
    with pytest.raises(ValidationError, match="beyond your own"):
        services.role_update(actor=team_lead, role=role, permissions=["workspace.view"])
    with pytest.raises(ValidationError, match="beyond your own"):
        services.role_delete(actor=team_lead, role=role)
    assert state() == before


def test_team_lead_cannot_revoke_an_admin(owner, second_admin, team_lead, workspace):
    before = state()
    assignment = RoleAssignment.objects.get(user=owner)
    response = login(team_lead).post(reverse("admin:workspaces_roleassignment_delete", args=[assignment.pk]),
                                     {"post": "yes"}, follow=True)
    assert "within your own permissions" in response.content.decode()
    with pytest.raises(ValidationError, match="within your own permissions"):
        services.role_revoke(actor=team_lead, assignment=assignment)
    assert state() == before


def test_team_lead_cannot_add_a_person_as_admin(team_lead, workspace):
    before = state()
    response = login(team_lead).post(reverse("admin:auth_user_add"), {
        "username": "mole", "email": "mole@example.com", "first_name": "", "last_name": "",
        "workspace": workspace.pk, "role": builtin_role("Admin").pk, "expires_at": ""})
    assert response.status_code == 200 and "role" in _errors(response)
    with pytest.raises(ValidationError):
        services_people.person_create(actor=team_lead, workspace=workspace, role=builtin_role("Admin"), username="mole",
                               email="mole@example.com")
    assert state() == before


def test_crafted_posts_for_another_workspace_change_nothing(owner, workspace, other_workspace, globex_sa):
    globex_role = make_role(other_workspace, "Globex ops")
    globex_person = UserFactory(username="globex-person")
    globex_assignment = services.role_assign(actor=SYSTEM, workspace=other_workspace, role=builtin_role("Viewer"),
                                             user=globex_person)
    UserFactory(username="friend")
    client = login(owner)
    before = state()
    # Creating in the other workspace.
    response = client.post(ASSIGN_ADD, _assign_form(other_workspace, builtin_role("Viewer"), "friend"))
    assert response.status_code == 200 and "workspace" in _errors(response)
    response = client.post(reverse("admin:workspaces_role_add"), {"workspace": other_workspace.pk, "name": "Sneaky",
                                                           "permissions": ["workspace.view"]})
    assert response.status_code == 200 and "workspace" in _errors(response)
    response = client.post(reverse("admin:workspaces_serviceaccount_add"), {"workspace": other_workspace.pk,
                                                                      "name": "sneaky"})
    assert response.status_code == 200 and "workspace" in _errors(response)
    # Its objects, used from the own workspace.
    response = client.post(ASSIGN_ADD, _assign_form(workspace, globex_role, "friend"))
    assert response.status_code == 200 and "role" in _errors(response)
    response = client.post(ASSIGN_ADD, _assign_form(workspace, builtin_role("Viewer"), "", globex_sa))
    assert response.status_code == 200 and "service_account" in _errors(response)
    # Its objects, changed directly.
    assert client.post(reverse("admin:workspaces_role_change", args=[globex_role.pk]),
                       {"name": "Mine now", "permissions": ["workspace.view"]}).status_code == 404
    assert client.post(reverse("admin:workspaces_role_delete", args=[globex_role.pk]),
                       {"post": "yes"}).status_code == 404
    assert client.post(reverse("admin:workspaces_roleassignment_delete", args=[globex_assignment.pk]),
                       {"post": "yes"}).status_code == 404
    assert client.post(reverse("admin:workspaces_serviceaccount_change", args=[globex_sa.pk]),
                       {"name": "renamed"}).status_code == 404
    client.post(reverse("admin:workspaces_serviceaccount_changelist"),
                {"action": "disable_service_accounts", "index": 0, "_selected_action": [globex_sa.pk]})
    assert client.get(reverse("admin:auth_user_change", args=[globex_person.pk])).status_code == 404
    assert state() == before


def test_services_refuse_another_workspace_even_without_the_admin(owner, workspace, other_workspace, globex_sa):
    globex_role = make_role(other_workspace, "Globex ops")
    friend = UserFactory(username="friend")
    before = state()
    attempts = [
        lambda: services.role_assign(actor=owner, workspace=other_workspace, role=builtin_role("Viewer"), user=friend),
        lambda: services.role_assign(actor=owner, workspace=workspace, role=globex_role, user=friend),
        lambda: services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Viewer"),
                                     service_account=globex_sa),
        lambda: services.role_update(actor=owner, role=globex_role, name="Mine"),
        lambda: services.role_delete(actor=owner, role=globex_role),
        lambda: services.service_account_update(actor=owner, service_account=globex_sa, name="mine"),
        lambda: services.service_account_disable(actor=owner, service_account=globex_sa),
        lambda: services.role_create(actor=owner, workspace=other_workspace, name="x", permissions=["workspace.view"]),
    ]
    for attempt in attempts:
        with pytest.raises((PermissionDenied, ValidationError)):
            attempt()
    assert ServiceAccount.objects.get(pk=globex_sa.pk).is_active
    assert state() == before
