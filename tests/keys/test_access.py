from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from project.actors import SYSTEM
from tests.conftest import login
from tests.factories import UserFactory, WorkspaceFactory, builtin_role, grant, make_role, make_service_account
from workspaces import access, services
from workspaces.models import RoleAssignment, ServiceAccount
from workspaces.permissions import ALL

pytestmark = pytest.mark.django_db


def _fresh(user):
    return get_user_model().objects.get(pk=user.pk)  # a new request: nothing cached yet


@pytest.mark.parametrize("count", [1, 50])
def test_role_check_is_one_query_whatever_the_number_of_workspaces(count, django_assert_num_queries):
    user = UserFactory(username="busy")
    workspaces = [WorkspaceFactory() for _ in range(count)]
    for ws in workspaces:
        grant(user, "Developer", ws)
        grant(user, "Viewer", ws)
    developer = frozenset(builtin_role("Developer").permissions)
    user = _fresh(user)
    with django_assert_num_queries(1):
        for ws in workspaces:
            assert access.has_perm(user, "agents.manage", ws.pk)
            assert not access.has_perm(user, "keys.issue", ws.pk)
            assert access.permissions_in(user, ws.pk) == developer
        assert access.workspaces_with(user, "sessions.mint") == {ws.pk for ws in workspaces}


@pytest.mark.parametrize("count", [1, 50])
def test_service_account_check_is_one_query_whatever_the_number_of_roles(count, workspace,
                                                                         django_assert_num_queries):
    sa = make_service_account(workspace, "robot")
    for i in range(count):
        role = make_role(workspace, f"r{i}", ["sessions.mint"])
        services.role_assign(actor=SYSTEM, workspace=workspace, role=role, service_account=sa)
    sa = ServiceAccount.objects.get(pk=sa.pk)
    with django_assert_num_queries(1):
        for _ in range(20):
            assert access.has_perm(sa, "sessions.mint", workspace.pk)
            assert not access.has_perm(sa, "agents.manage", workspace.pk)
        assert access.workspaces_with(sa, "sessions.mint") == {workspace.pk}


def test_admin_page_queries_do_not_grow_with_workspaces():
    def page_queries(n: int) -> int:
        user = UserFactory(username=f"admin-of-{n}")
        for _ in range(n):
            ws = WorkspaceFactory()
            grant(user, "Admin", ws)
            make_service_account(ws, "robot")
        client = login(user)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("admin:workspaces_serviceaccount_changelist")).status_code == 200
            assert client.get(reverse("admin:workspaces_roleassignment_changelist")).status_code == 200
        return len(queries)

    assert page_queries(1) == page_queries(50)


def test_expired_assignment_grants_nothing(workspace):
    user = UserFactory(username="temp")
    assignment = grant(user, "Developer", workspace)
    RoleAssignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    user = _fresh(user)
    assert not access.has_perm(user, "workspace.view", workspace.pk)
    assert access.workspaces_with(user, "workspace.view") == set()


def test_assignment_with_future_expiry_grants_until_then(workspace):
    user = UserFactory(username="temp")
    services.role_assign(actor=SYSTEM, workspace=workspace, role=builtin_role("Developer"), user=user,
                         expires_at=timezone.now() + timedelta(hours=1))
    assert access.has_perm(_fresh(user), "agents.manage", workspace.pk)


def test_disabled_login_holds_nothing(member, workspace):
    member.is_active = False
    assert not access.has_perm(member, "workspace.view", workspace.pk)


def test_disabled_service_account_holds_nothing(workspace):
    sa = make_service_account(workspace, "robot")
    services.role_assign(actor=SYSTEM, workspace=workspace, role=builtin_role("Developer"), service_account=sa)
    assert access.has_perm(ServiceAccount.objects.get(pk=sa.pk), "sessions.mint", workspace.pk)
    services.service_account_disable(actor=SYSTEM, service_account=sa)
    assert not access.has_perm(ServiceAccount.objects.get(pk=sa.pk), "sessions.mint", workspace.pk)


def test_service_account_counts_only_its_own_workspace(workspace, other_workspace):
    sa = make_service_account(workspace, "robot")
    # Written past the model's clean() on purpose: the access module is the second lock on this door.
    RoleAssignment.objects.create(workspace=other_workspace, role=builtin_role("Admin"), service_account=sa)
    sa = ServiceAccount.objects.get(pk=sa.pk)
    assert access.workspaces_with(sa, "workspace.view") == set()
    with pytest.raises(PermissionDenied):
        access.require(sa, "workspace.view", other_workspace.pk)


def test_forget_reloads_after_a_change(workspace):
    user = UserFactory(username="late")
    assert not access.has_perm(user, "workspace.view", workspace.pk)
    grant(user, "Viewer", workspace)
    assert not access.has_perm(user, "workspace.view", workspace.pk)  # cached for the request
    access.forget(user)
    assert access.has_perm(user, "workspace.view", workspace.pk)


def test_superuser_holds_the_whole_catalogue_everywhere(superuser, workspace):
    assert access.permissions_in(superuser, workspace.pk) == ALL
    assert access.workspaces_with(superuser, "roles.assign") is None
