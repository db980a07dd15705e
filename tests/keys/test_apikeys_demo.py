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


def test_demo_seeds_30_days_of_hourly_usage_once(workspace):
    from keys.demo import seed_usage
    from keys.models import KeyUsageDaily, KeyUsageHourly
    from tests.factories import make_api_key_row

    prod, dev = make_api_key_row(workspace, "prod"), make_api_key_row(workspace, "dev")
    seed_usage(workspaces=[workspace], stdout=io.StringIO())
    assert KeyUsageHourly.objects.filter(key=prod).count() == 30 * 24
    assert KeyUsageDaily.objects.filter(key=prod).count() in (30, 31)  # the first hour may fall on a 31st day
    assert not KeyUsageHourly.objects.filter(awaiting_rules=True).exists()  # demo figures raise no alerts
    prod_total = sum(r.credits for r in KeyUsageHourly.objects.filter(key=prod))
    dev_total = sum(r.credits for r in KeyUsageHourly.objects.filter(key=dev))
    assert prod_total > dev_total > 0
    seed_usage(workspaces=[workspace], stdout=io.StringIO())  # a second run adds nothing
    assert KeyUsageHourly.objects.filter(key=prod).count() == 30 * 24
