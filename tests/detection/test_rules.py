"""The usage rules over fixed hourly and daily series: each fires at its threshold, stays quiet just below it, and
never fires twice for the same window."""

from datetime import timedelta

import pytest

from detection import rules, services
from detection.models import DetectionPolicy
from project.alerts import services as alert_services
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.factories import (
    NOW,
    make_api_key_row,
    make_daily_usage,
    make_detection_policy,
    make_hourly_usage,
    make_usage_baseline,
)

pytestmark = pytest.mark.django_db

HOUR = NOW.replace(hour=10)  # 10:00 UTC, 11:00 in Berlin: a usual hour


def _alerts(kind):
    return list(Alert.objects.filter(kind=kind).order_by("id"))


# --- spike against the trailing baseline ---------------------------------------------------------------------
def test_spike_fires_at_factor_times_the_baseline(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_usage_baseline(key, HOUR.date(), credits_per_day=5760)  # 240 credits an hour on average
    make_hourly_usage(key, HOUR, credits=1200)  # exactly 5× (the default factor), above the 1,000 minimum
    result = rules.rules_evaluate()
    (alert,) = _alerts("usage_spike")
    assert result["alerts"] == 1 and alert.severity == "high" and alert.object_id == str(key.pk)
    assert alert.details["credits"] == 1200 and alert.details["baseline_credits_per_hour"] == 240
    assert alert.details["ratio"] == 5 and alert.details["threshold_factor"] == 5
    assert "5.0× its baseline" in alert.title


def test_spike_stays_quiet_just_below_the_factor(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_usage_baseline(key, HOUR.date(), credits_per_day=5760)
    make_hourly_usage(key, HOUR, credits=1199.99)
    rules.rules_evaluate()
    assert _alerts("usage_spike") == []


def test_spike_needs_the_minimum_credits(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_usage_baseline(key, HOUR.date(), credits_per_day=24)  # 1 credit an hour: 999 is 999×, but small
    make_hourly_usage(key, HOUR, credits=999)
    rules.rules_evaluate()
    assert _alerts("usage_spike") == []
    make_hourly_usage(key, HOUR + timedelta(hours=1), credits=1000)
    rules.rules_evaluate()
    assert len(_alerts("usage_spike")) == 1


def test_spike_fires_once_per_hour_even_after_it_was_resolved(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    make_usage_baseline(key, HOUR.date(), credits_per_day=240)
    make_hourly_usage(key, HOUR, credits=5000)
    rules.rules_evaluate()
    alert_services.alert_resolve(actor=owner, alert=Alert.objects.get())
    assert rules.rules_evaluate()["alerts"] == 0  # same window: nothing new, even resolved
    make_hourly_usage(key, HOUR + timedelta(hours=1), credits=5000)
    assert rules.rules_evaluate()["alerts"] == 1  # the next hour is its own window
    assert AuditEvent.objects.filter(action="alert.raise").count() == 2


def test_spike_baseline_of_a_young_key_counts_only_the_days_it_existed(workspace, fixed_now):
    key = make_api_key_row(workspace, activated=NOW - timedelta(days=2, hours=12))  # existed 2 whole days before today
    make_daily_usage(key, HOUR.date() - timedelta(days=1), 24000)
    make_daily_usage(key, HOUR.date() - timedelta(days=2), 24000)
    make_hourly_usage(key, HOUR, credits=4000)  # 4× its 1,000/h (48,000 over 48 h), not 4000/(168 h)
    rules.rules_evaluate()
    assert _alerts("usage_spike") == []


def test_spike_threshold_is_the_workspace_policy(workspace, other_workspace, fixed_now):
    make_detection_policy(workspace, spike_factor=2, spike_min_credits=100)
    mine, theirs = make_api_key_row(workspace), make_api_key_row(other_workspace)
    for key in (mine, theirs):
        make_usage_baseline(key, HOUR.date(), credits_per_day=2400)  # 100/h
        make_hourly_usage(key, HOUR, credits=200)
    rules.rules_evaluate()
    assert [a.workspace_id for a in _alerts("usage_spike")] == [workspace.pk]


# --- unusual hours ---------------------------------------------------------------------------------------------
def test_unusual_hours_fire_in_the_workspace_time_zone(workspace, fixed_now):
    make_detection_policy(workspace, time_zone="Europe/Berlin")
    key = make_api_key_row(workspace)
    make_hourly_usage(key, NOW.replace(hour=20) - timedelta(days=1), credits=500)  # 21:00 Berlin: usual
    # 22:00 Berlin: unusual, at the minimum
    make_hourly_usage(key, NOW.replace(hour=21) - timedelta(days=1), credits=100)
    rules.rules_evaluate()
    (alert,) = _alerts("usage_unusual_hours")
    assert alert.severity == "medium" and alert.details["local_time"].startswith("2026-11-17T22:00")
    assert alert.details["night_of"] == "2026-11-17" and alert.details["threshold_min_credits"] == 100


def test_unusual_hours_stay_quiet_just_below_the_minimum(workspace, fixed_now):
    key = make_api_key_row(workspace)  # UTC, 22:00–06:00
    make_hourly_usage(key, NOW.replace(hour=3), credits=99.999)
    rules.rules_evaluate()
    assert _alerts("usage_unusual_hours") == []


def test_unusual_hours_fire_once_per_night(workspace, fixed_now):
    key = make_api_key_row(workspace)
    yesterday = NOW - timedelta(days=1)
    for hour in (yesterday.replace(hour=23), NOW.replace(hour=2), NOW.replace(hour=5)):  # one night (the 17th)
        make_hourly_usage(key, hour, credits=300)
    rules.rules_evaluate()
    rules.rules_evaluate()
    (alert,) = _alerts("usage_unusual_hours")
    assert alert.details["night_of"] == yesterday.date().isoformat()
    make_hourly_usage(key, NOW.replace(hour=6), credits=300)  # 06:00 is the end: usual again
    assert rules.rules_evaluate()["alerts"] == 0


def test_unusual_hours_can_be_switched_off(workspace, fixed_now):
    make_detection_policy(workspace, unusual_hours_enabled=False)
    make_hourly_usage(make_api_key_row(workspace), NOW.replace(hour=3), credits=5000)
    rules.rules_evaluate()
    assert _alerts("usage_unusual_hours") == []


# --- idle key waking up ----------------------------------------------------------------------------------
def test_idle_key_waking_up_fires_after_the_idle_days(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_daily_usage(key, (HOUR - timedelta(days=31)).date(), 10)  # last use 31 days before (ends at that day's end)
    make_hourly_usage(key, HOUR, credits=1)
    rules.rules_evaluate()
    (alert,) = _alerts("usage_idle_key_woke")
    assert alert.severity == "high" and alert.details["threshold_idle_days"] == 30
    assert alert.details["quiet_days"] == pytest.approx(30.4, abs=0.1)


def test_idle_key_stays_quiet_just_below_the_idle_days(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_hourly_usage(key, HOUR - timedelta(days=30) + timedelta(hours=1), credits=1)  # 29 days 23 hours earlier
    make_hourly_usage(key, HOUR, credits=1)
    rules.rules_evaluate()
    assert _alerts("usage_idle_key_woke") == []


def test_idle_key_fires_once_per_idle_spell(workspace, fixed_now):
    key = make_api_key_row(workspace)
    make_hourly_usage(key, HOUR - timedelta(days=40), credits=1)
    make_hourly_usage(key, HOUR, credits=1)
    make_hourly_usage(key, HOUR + timedelta(hours=1), credits=1)  # the next hour: the key is awake already
    rules.rules_evaluate()
    rules.rules_evaluate()
    assert len(_alerts("usage_idle_key_woke")) == 1


def test_never_used_key_waking_up_counts_from_its_issue(workspace, fixed_now):
    old = make_api_key_row(workspace, activated=HOUR - timedelta(days=30))
    young = make_api_key_row(workspace, activated=HOUR - timedelta(days=29, hours=23))
    make_hourly_usage(old, HOUR, credits=1)
    make_hourly_usage(young, HOUR, credits=1)
    rules.rules_evaluate()
    (alert,) = _alerts("usage_idle_key_woke")
    assert alert.object_id == str(old.pk) and alert.details["previous_use"] is None


# --- evaluation mechanics ----------------------------------------------------------------------------------
def test_rules_evaluate_only_the_given_rows(workspace, fixed_now):
    key = make_api_key_row(workspace)
    first = make_hourly_usage(key, NOW.replace(hour=3), credits=500)
    second = make_hourly_usage(key, NOW.replace(hour=3) - timedelta(days=1), credits=500)
    rules.rules_evaluate(row_ids=[first.pk])
    assert [a.details["night_of"] for a in _alerts("usage_unusual_hours")] == ["2026-11-17"]
    rules.rules_evaluate(row_ids=[second.pk])
    assert len(_alerts("usage_unusual_hours")) == 2


def test_detection_policy_is_created_with_defaults_on_first_use(workspace, fixed_now):
    make_hourly_usage(make_api_key_row(workspace), HOUR, credits=1)
    rules.rules_evaluate()
    created = DetectionPolicy.objects.get(workspace=workspace)
    assert (created.spike_factor, created.spike_min_credits, created.unusual_start_hour, created.unusual_end_hour,
            created.idle_days, created.concurrency_samples, created.suspend_prod_at_limit,
            created.suspend_nonprod_at_limit) == (5, 1000, 22, 6, 30, 5, True, False)
    assert AuditEvent.objects.filter(action="detection_policy.create", workspace_id=workspace.pk).count() == 1


def test_rules_use_a_bounded_number_of_queries(workspace, fixed_now, django_assert_max_num_queries):
    keys = [make_api_key_row(workspace) for _ in range(30)]
    for key in keys:
        make_usage_baseline(key, HOUR.date(), 240)
        for h in range(6):
            make_hourly_usage(key, HOUR - timedelta(hours=h), credits=1)
    services.detection_policy_of(workspace.pk)
    with django_assert_max_num_queries(8):  # rows, policies, daily, three previous-use reads: not per key
        assert rules.rules_evaluate()["alerts"] == 0


def test_a_key_gone_between_the_two_reads_is_skipped_and_the_others_still_evaluated(workspace, fixed_now,
                                                                                   monkeypatch):
    gone, kept = make_api_key_row(workspace, name="gone"), make_api_key_row(workspace, name="kept")
    for key in (gone, kept):
        make_hourly_usage(key, NOW.replace(hour=3), credits=500)  # an unusual hour for both
    real = rules.ApiKey.objects.select_related

    def without_gone(*fields):  # what the second read sees if the key was deleted right after the first
        return real(*fields).exclude(pk=gone.pk)

    monkeypatch.setattr(rules.ApiKey.objects, "select_related", without_gone)
    result = rules.rules_evaluate()
    assert result["hours_evaluated"] == 1
    assert [a.object_id for a in _alerts("usage_unusual_hours")] == [str(kept.pk)]
