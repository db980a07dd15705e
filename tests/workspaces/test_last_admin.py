"""The last Admin of a workspace stays: only permanent, active Admin assignments count (issue 19, item 4).

The attack: grant a colleague Admin with a short expiry, have them revoke the permanent Admin, wait: no Admin
left. An expiring Admin is not "another Admin".
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.factories import UserFactory, builtin_role
from workspaces import services
from workspaces.models import RoleAssignment
from workspaces.services import people

pytestmark = pytest.mark.django_db


@pytest.fixture
def temporary_admin(owner, workspace):
    colleague = UserFactory(username="temp-admin", is_staff=True)
    services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Admin"), user=colleague,
                         expires_at=timezone.now() + timedelta(hours=1))
    return colleague


def test_an_expiring_admin_cannot_revoke_the_last_permanent_one(owner, temporary_admin, workspace):
    permanent = RoleAssignment.objects.get(user=owner, workspace=workspace)
    with pytest.raises(ValidationError, match="last active Admin"):
        services.role_revoke(actor=temporary_admin, assignment=permanent)
    assert RoleAssignment.objects.filter(pk=permanent.pk).exists()


def test_an_expiring_admin_does_not_let_the_last_permanent_one_be_disabled(owner, temporary_admin, superuser):
    with pytest.raises(ValidationError, match="last active Admin"):
        people.user_update(actor=superuser, user=owner, is_active=False)
    owner.refresh_from_db()
    assert owner.is_active


def test_the_expiring_admin_itself_can_be_revoked(owner, temporary_admin, workspace):
    services.role_revoke(actor=owner, assignment=RoleAssignment.objects.get(user=temporary_admin))
    assert not RoleAssignment.objects.filter(user=temporary_admin).exists()


def test_a_second_permanent_admin_still_allows_the_revoke(owner, workspace):
    colleague = UserFactory(username="perm-admin", is_staff=True)
    services.role_assign(actor=owner, workspace=workspace, role=builtin_role("Admin"), user=colleague)
    services.role_revoke(actor=colleague, assignment=RoleAssignment.objects.get(user=owner, workspace=workspace))
    assert not RoleAssignment.objects.filter(user=owner, workspace=workspace).exists()
