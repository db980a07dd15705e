import io

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from project.audit.models import AuditEvent
from tests.factories import WorkspaceFactory
from tests.keys.conftest import state
from workspaces import demo
from workspaces.demo import seed_people_and_service_accounts
from workspaces.models import Role, RoleAssignment, ServiceAccount

pytestmark = pytest.mark.django_db
PASSWORD = "demo-password-for-tests-2026"


def _seed(workspaces, logins):
    seed_people_and_service_accounts(workspaces=workspaces, scale=1, logins=logins, password=PASSWORD,
                                     stdout=io.StringIO())


def test_demo_people_and_service_accounts_are_seeded_once():
    acme, globex = WorkspaceFactory(name="Acme Voice", slug="acme"), WorkspaceFactory(name="Globex", slug="globex")
    first: list = []
    _seed([acme, globex], first)
    assert {u for u, _, _ in first} >= {"acme-lead", "acme-dev", "acme-viewer", "acme-security", "acme-admin",
                                         "globex-lead", "globex-admin"}
    assert ("acme-lead", PASSWORD, "Team lead in Acme Voice") in first
    assert ServiceAccount.objects.filter(workspace=acme).count() == 2
    assert ServiceAccount.objects.filter(workspace=globex).count() == 2
    assert RoleAssignment.objects.filter(service_account__isnull=False).count() == 4
    assert Role.objects.filter(workspace=acme, name="Session broker").exists()
    before, events = state(), AuditEvent.objects.count()
    again: list = []
    _seed([acme, globex], again)
    assert again == first and state() == before and AuditEvent.objects.count() == events


def test_a_newcomer_signs_in_as_team_lead_and_sees_only_their_workspace(client):
    acme, globex = WorkspaceFactory(name="Acme Voice", slug="acme"), WorkspaceFactory(name="Globex", slug="globex")
    _seed([acme, globex], [])
    lead = get_user_model().objects.get(username="acme-lead")
    assert lead.check_password(PASSWORD)
    client.force_login(lead)
    page = client.get(reverse("admin:workspaces_roleassignment_changelist")).content.decode()
    assert "acme-dev" in page and "globex" not in page.lower()
    assert client.get(reverse("admin:workspaces_roleassignment_add")).status_code == 200


def test_the_roles_seeder_is_offered_to_seed_demo():
    assert seed_people_and_service_accounts in demo.demo_seeders
