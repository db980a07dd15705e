"""The credit guard: spend per key against its quota and per environment against its budget, alerts at 75%, 90%
and 100% once each per period, and at 100% the key disabled on the platform (production by default)."""

from datetime import timedelta

import pytest

from detection import guard
from keys.models import ApiKey, KeyUsageDaily
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from tests.conftest import drain, key_works
from tests.factories import NOW, make_api_key, make_api_key_row, make_daily_usage, make_detection_policy

pytestmark = pytest.mark.django_db
TODAY = NOW.date()


def _percents(kind="credit_guard_quota"):
    return sorted(a.details["threshold_percent"] for a in Alert.objects.filter(kind=kind))


def test_alerts_at_75_90_and_100_percent_of_the_quota(workspace, fixed_now):
    key = make_api_key_row(workspace, "dev", credit_quota=1000)
    make_daily_usage(key, TODAY - timedelta(days=2), 749.99)
    guard.credit_guard_run()
    assert _percents() == []  # just below 75%
    make_daily_usage(key, TODAY - timedelta(days=1), 0.01)
    guard.credit_guard_run()
    assert _percents() == [75]
    make_daily_usage(key, TODAY, 150)  # 900.00: exactly 90%
    guard.credit_guard_run()
    assert _percents() == [75, 90]
    KeyUsageDaily.objects.filter(key=key, day=TODAY).update(credits=250)
    result = guard.credit_guard_run()
    assert _percents() == [75, 90, 100] and result["suspended"] == 0
    hundred = Alert.objects.get(kind="credit_guard_quota", details__threshold_percent=100)
    assert hundred.severity == "high" and hundred.details["credits_used"] == 1000
    assert hundred.details["limit"] == 1000 and hundred.details["disables_at_100"] is False
    assert ApiKey.objects.get(pk=key.pk).suspended_at is None  # a dev key is not disabled by default


def test_each_threshold_fires_once_per_period(workspace, fixed_now):
    key = make_api_key_row(workspace, "dev", credit_quota=100)
    make_daily_usage(key, TODAY, 500)
    guard.credit_guard_run()
    guard.credit_guard_run()
    assert _percents() == [75, 90, 100]
    assert AuditEvent.objects.filter(action="alert.raise").count() == 3


def test_a_new_period_counts_again(workspace, fixed_now, monkeypatch):
    from django.utils import timezone

    key = make_api_key_row(workspace, "dev", credit_quota=100)
    make_daily_usage(key, TODAY, 80)
    guard.credit_guard_run()
    next_month = NOW.replace(month=12, day=2)
    monkeypatch.setattr(timezone, "now", lambda: next_month)
    guard.credit_guard_run()
    assert _percents() == [75]  # last month's spend does not count in December
    make_daily_usage(key, next_month.date(), 80)
    guard.credit_guard_run()
    assert _percents() == [75, 75]
    assert {a.details["period_start"] for a in Alert.objects.all()} == {"2026-11-01", "2026-12-01"}


def test_period_start_follows_the_policy_day(workspace, fixed_now):
    chosen = make_detection_policy(workspace, billing_period_day=20)
    assert guard.period_start(chosen, TODAY) == TODAY.replace(month=10, day=20)  # the 18th is before the 20th
    assert guard.period_end(TODAY.replace(month=10, day=20)) == TODAY.replace(day=19)
    key = make_api_key_row(workspace, "dev", credit_quota=100)
    make_daily_usage(key, TODAY.replace(month=10, day=19), 500)  # the previous period
    make_daily_usage(key, TODAY.replace(month=10, day=20), 74)
    guard.credit_guard_run()
    assert _percents() == []


def test_guard_thresholds_come_from_the_workspace_policy(workspace, fixed_now):
    make_detection_policy(workspace, guard_notice_percent=50, guard_warning_percent=60)
    key = make_api_key_row(workspace, "dev", credit_quota=100)
    make_daily_usage(key, TODAY, 55)
    guard.credit_guard_run()
    assert _percents() == [50]


def test_production_key_is_disabled_on_the_platform_at_100_percent(owner, account, emulator, fixed_now):
    issued = make_api_key(owner, account, "prod", credit_quota=1000)
    drain()
    make_daily_usage(ApiKey.objects.get(pk=issued.key.pk), TODAY, 1000)
    result = guard.credit_guard_run()
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert result["suspended"] == 1 and key.state == "active" and key.suspended_at is not None
    assert "credit guard: 100.0% of its quota of 1,000 credits" in key.suspend_reason
    assert "disabled on the platform" in Alert.objects.get(details__threshold_percent=100).title
    event = AuditEvent.objects.get(action="api_key.suspend")
    assert event.actor_type == "system" and event.object_id == str(key.pk)
    SyncJob.objects.update(next_attempt_at=NOW - timedelta(minutes=1))
    drain()
    assert not key_works(emulator, issued.secret)


def test_a_resumed_key_is_not_disabled_again_in_the_same_period(owner, account, fixed_now):
    from keys.services import api_key_resume

    key = make_api_key(owner, account, "prod", credit_quota=100).key
    make_daily_usage(key, TODAY, 150)
    guard.credit_guard_run()
    api_key_resume(actor=owner, key=key, reason="quota raised by the owner")
    assert guard.credit_guard_run()["suspended"] == 0
    assert ApiKey.objects.get(pk=key.pk).suspended_at is None


def test_suspension_at_the_limit_can_be_switched_per_environment_kind(workspace, fixed_now):
    make_detection_policy(workspace, suspend_prod_at_limit=False, suspend_nonprod_at_limit=True)
    prod = make_api_key_row(workspace, "prod", credit_quota=10)
    dev = make_api_key_row(workspace, "dev", credit_quota=10)
    make_daily_usage(prod, TODAY, 10), make_daily_usage(dev, TODAY, 10)
    guard.credit_guard_run()
    assert ApiKey.objects.get(pk=prod.pk).suspended_at is None
    assert ApiKey.objects.get(pk=dev.pk).suspended_at is not None


def test_environment_budget_alerts_and_disables_the_environment_keys(workspace, other_workspace, fixed_now):
    prod = workspace.environments.get(name="prod")
    prod.credit_budget = 1000
    prod.save()
    first = make_api_key_row(workspace, "prod", credit_quota=600)
    second = make_api_key_row(workspace, "prod", credit_quota=400)
    untouched = make_api_key_row(other_workspace, "prod", credit_quota=600)
    make_daily_usage(first, TODAY, 500), make_daily_usage(second, TODAY, 250), make_daily_usage(untouched, TODAY, 590)
    guard.credit_guard_run()
    assert _percents("credit_guard_budget") == [75]
    make_daily_usage(second, TODAY - timedelta(days=1), 250)
    guard.credit_guard_run()
    assert _percents("credit_guard_budget") == [75, 90, 100]
    alert = Alert.objects.get(kind="credit_guard_budget", details__threshold_percent=100)
    assert alert.object_type == "workspaces.environment" and alert.workspace_id == workspace.pk
    assert set(ApiKey.objects.filter(suspended_at__isnull=False).values_list("pk", flat=True)) == {first.pk, second.pk}


def test_keys_without_quota_and_ended_keys_are_not_watched(workspace, fixed_now):
    unlimited = make_api_key_row(workspace, "dev")
    ended = make_api_key_row(workspace, "dev", credit_quota=10)
    ApiKey.objects.filter(pk=ended.pk).update(state="revoked", revoked_at=NOW)
    make_daily_usage(unlimited, TODAY, 10_000), make_daily_usage(ended, TODAY, 10_000)
    assert guard.credit_guard_run()["keys_watched"] == 0
    assert not Alert.objects.exists()


def test_guard_runs_in_a_bounded_number_of_queries(workspace, fixed_now, django_assert_max_num_queries):
    for n in range(40):
        make_daily_usage(make_api_key_row(workspace, "dev", credit_quota=1000), TODAY, 10)
    guard.credit_guard_run()
    with django_assert_max_num_queries(6):  # keys, environments, policies, key spend, env spend, known alerts
        guard.credit_guard_run()
