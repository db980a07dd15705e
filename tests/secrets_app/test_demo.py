import re

import pytest

from agents.services import workspace_create
from secrets_app import demo
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool, ToolSecretReference, UserCredential

pytestmark = pytest.mark.django_db


def _seed(workspaces):
    for seeder in demo.demo_seeders:
        seeder(workspaces=workspaces, scale=1, logins=[], password="x", stdout=None)


def test_demo_rows_are_created_once_with_random_values():
    workspaces = [workspace_create(actor=None, name="Acme Voice", slug="acme"),
                  workspace_create(actor=None, name="Globex", slug="globex")]
    _seed(workspaces)
    counts = (Secret.objects.count(), Tool.objects.count(), AuthConnection.objects.count(),
              OAuthProvider.objects.count(), UserCredential.objects.count())
    assert counts == (6, 6, 10, 2, 6)
    assert set(AuthConnection.objects.values_list("kind", flat=True)) == set(AuthConnection.Kind.values)
    assert ToolSecretReference.objects.count() == 6
    values = [s.value for s in Secret.objects.all()]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"demo_[A-Za-z0-9_-]{32}", v) for v in values)
    _seed(workspaces)
    assert (Secret.objects.count(), Tool.objects.count(), AuthConnection.objects.count(),
            OAuthProvider.objects.count(), UserCredential.objects.count()) == counts
    assert [s.value for s in Secret.objects.all()] == values
