"""seed_demo's API keys: one per demo service account in every environment, no secret printed, idempotent."""

import io

import pytest

from keys.demo import seed_api_keys
from keys.models import ApiKey
from tests.conftest import SECRET_SHAPE
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_demo_issues_keys_in_every_environment_without_printing_secrets(platform, emulator):
    workspaces = [WorkspaceFactory(name="Acme Voice", slug="acme"), WorkspaceFactory(name="Globex", slug="globex")]
    out = io.StringIO()
    seed_api_keys(workspaces=workspaces, stdout=out)
    for workspace in workspaces:
        for environment in workspace.environments.all():
            keys = ApiKey.objects.filter(environment=environment, state="active")
            assert {k.service_account.name for k in keys} == {"support-backend", "ci-deployer"}
        assert workspace.environments.get(name="prod").credit_budget == 500_000
    assert "12 issued" in out.getvalue() and not SECRET_SHAPE.search(out.getvalue())
    assert len(emulator.state_snapshot()["api_keys"]) == 12

    seed_api_keys(workspaces=workspaces, stdout=io.StringIO())  # a second run changes nothing
    assert ApiKey.objects.count() == 12


def test_demo_says_so_when_the_platform_is_down(platform, emulator):
    emulator.set_faults(error_rate=1.0, error_status=503)
    out = io.StringIO()
    seed_api_keys(workspaces=[WorkspaceFactory()], stdout=out)
    assert "skipped" in out.getvalue() and not ApiKey.objects.exists()
