"""Usage per key from the platform: keys' one ingest reads once and stores the hours, the day totals and "last
used"; the periodic pass runs the rules on the hours that changed (whichever task ingested them) and the credit
guard."""

from datetime import timedelta
from decimal import Decimal

import pytest

from detection import rules, tasks, usage
from keys import services
from keys.models import ApiKey, KeyUsageDaily, KeyUsageHourly
from project.alerts.models import Alert
from tests.factories import make_api_key, make_api_key_row, make_hourly_usage, make_platform_usage

pytestmark = pytest.mark.django_db
USAGE_CALL = "POST /v1/workspace/analytics/query/usage-by-product-over-time"


@pytest.fixture
def midday(clock):
    clock.now = clock.now.replace(hour=12, minute=30, second=0)
    return clock.now


def _key(owner, account, *args, **kwargs):
    return ApiKey.objects.get(pk=make_api_key(owner, account, *args, **kwargs).key.pk)


def test_one_platform_read_fills_the_hours_and_keys_daily_totals(owner, account, emulator, midday):
    key = _key(owner, account)
    ten = midday.replace(hour=10, minute=0)
    emulator.add_usage([make_platform_usage(key, ten + timedelta(minutes=5), credits=3, requests=1),
                        make_platform_usage(key, ten + timedelta(minutes=50), credits=4.5, requests=2),
                        make_platform_usage(key, ten - timedelta(hours=20), credits=1, requests=1),
                        make_platform_usage("sk_" + "1" * 48, ten, credits=99)])
    before = emulator.call_counts.get(USAGE_CALL, 0)
    result = services.api_key_usage_ingest()
    assert emulator.call_counts[USAGE_CALL] - before == 1  # keys' daily totals come from the same read
    assert result["hours"] == 2 and result["unknown_hashes"] == 1 and len(result["changed"]) == 2
    hours = {(h.hour, h.credits, h.requests) for h in KeyUsageHourly.objects.filter(key=key)}
    assert hours == {(ten, Decimal("7.5"), 3), (ten - timedelta(hours=20), Decimal(1), 1)}
    days = {(d.day, d.credits) for d in KeyUsageDaily.objects.filter(key=key)}
    assert days == {(ten.date(), Decimal("7.5")), ((ten - timedelta(hours=20)).date(), Decimal(1))}
    key.refresh_from_db()
    assert key.last_used_at == ten + timedelta(hours=1)


def test_ingest_is_idempotent_and_reports_only_changed_hours(owner, account, emulator, midday):
    key = _key(owner, account)
    ten = midday.replace(hour=10, minute=0)
    emulator.add_usage([make_platform_usage(key, ten, credits=3)])
    services.api_key_usage_ingest()
    assert services.api_key_usage_ingest()["changed"] == []
    emulator.add_usage([make_platform_usage(key, ten + timedelta(minutes=1), credits=2)])  # late data for the same hour
    (changed,) = services.api_key_usage_ingest()["changed"]
    assert KeyUsageHourly.objects.get(pk=changed).credits == 5 and KeyUsageHourly.objects.count() == 1


def test_keys_own_bucket_setting_is_served_by_the_one_read(owner, account, emulator, midday, settings):
    settings.API_KEY_USAGE_BUCKET_SECONDS = 900
    key = _key(owner, account)
    emulator.add_usage([make_platform_usage(key, midday - timedelta(hours=1), credits=3)])
    before = emulator.call_counts.get(USAGE_CALL, 0)
    services.api_key_usage_ingest()
    # One read in 15-minute buckets: summed into the hour and the day, "last used" to the quarter hour.
    assert emulator.call_counts[USAGE_CALL] - before == 1
    assert KeyUsageDaily.objects.get(key=key).credits == 3
    assert KeyUsageHourly.objects.get(key=key).hour == midday.replace(minute=0) - timedelta(hours=1)
    key.refresh_from_db()
    assert key.last_used_at == midday - timedelta(hours=1) + timedelta(minutes=15)


def test_a_day_bucket_setting_keeps_last_used_to_the_day_and_still_stores_hours(owner, account, emulator, midday,
                                                                                 settings):
    settings.API_KEY_USAGE_BUCKET_SECONDS = 86400
    key = _key(owner, account)
    emulator.add_usage([make_platform_usage(key, midday - timedelta(hours=3), credits=3),
                        make_platform_usage(key, midday - timedelta(days=1), credits=4)])
    before = emulator.call_counts.get(USAGE_CALL, 0)
    assert services.api_key_usage_ingest()["hours"] == 2
    assert emulator.call_counts[USAGE_CALL] - before == 1
    key.refresh_from_db()
    assert key.last_used_at == midday  # the end of today's bucket, capped at now, as a daily read would say


def test_watch_raises_a_spike_from_platform_usage(owner, account, emulator, midday):
    key = _key(owner, account)
    emulator.add_usage([make_platform_usage(key, midday - timedelta(hours=1), credits=5000, requests=80)])
    result = usage.usage_watch()
    assert result["rules_alerts"] >= 1
    alert = Alert.objects.get(kind="usage_spike")
    assert alert.object_id == str(key.pk) and alert.details["credits"] == 5000 and alert.details["requests"] == 80
    assert usage.usage_watch()["rules_alerts"] == 0  # nothing changed: nothing re-evaluated, nothing raised


def test_watch_runs_the_credit_guard(owner, account, emulator, midday):
    key = _key(owner, account, "dev", credit_quota=100)
    emulator.add_usage([make_platform_usage(key, midday - timedelta(hours=2), credits=80)])
    assert usage.usage_watch()["guard_alerts"] == 1
    assert Alert.objects.get(kind="credit_guard_quota").details["threshold_percent"] == 75


def test_the_periodic_task_runs_the_watch(owner, account, emulator, midday):
    key = _key(owner, account)
    emulator.add_usage([make_platform_usage(key, midday - timedelta(hours=1), credits=2)])
    tasks.watch_usage.delay()
    assert KeyUsageHourly.objects.filter(key=key).exists()


def test_the_periodic_task_stores_keys_daily_usage(owner, account, emulator, clock):
    # Moved from keys' ingest task (keys.ingest_usage, never scheduled, now gone): the watch is the periodic path.
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    emulator.add_usage([make_platform_usage(key, clock.now - timedelta(hours=1))])
    tasks.watch_usage.delay()
    assert KeyUsageDaily.objects.filter(key=key).exists()


def test_hours_the_keys_sweep_ingested_still_reach_the_rules(owner, account, emulator, clock, midday):
    old = make_api_key(owner, account)
    services.api_key_rotate(actor=owner, key=old.key, overlap=timedelta(hours=1))
    emulator.add_usage([make_platform_usage(old.secret, midday - timedelta(minutes=20), credits=5000, requests=80)])
    clock.advance(hours=2)
    assert services.api_keys_sweep()["in_use"] == 1  # the overlap ended: the sweep ingested usage first
    assert KeyUsageHourly.objects.filter(key=old.key, awaiting_rules=True).exists()
    result = usage.usage_watch()  # its own ingest finds nothing new, yet the hour the sweep stored is evaluated
    assert result["hours"] == 0 and result["rules_alerts"] >= 1
    assert Alert.objects.filter(kind="usage_spike", object_id=str(old.key.pk)).exists()
    assert not KeyUsageHourly.objects.filter(awaiting_rules=True).exists()


def test_a_revised_hour_awaits_the_rules_again(workspace, fixed_now):
    key = make_api_key_row(workspace)
    row = make_hourly_usage(key, fixed_now - timedelta(hours=1), 1)
    assert rules.rules_evaluate_awaiting(now=fixed_now)["hours_evaluated"] == 1
    assert rules.rules_evaluate_awaiting(now=fixed_now)["hours_evaluated"] == 0  # taken: not evaluated twice
    KeyUsageHourly.objects.filter(pk=row.pk).update(credits=5, awaiting_rules=True)  # what the ingest does
    assert rules.rules_evaluate_awaiting(now=fixed_now)["hours_evaluated"] == 1


def test_the_beat_schedule_runs_detection_instead_of_a_second_usage_read(settings):
    tasks_scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"detection.watch_usage", "detection.watch_concurrency", "keys.sweep"} <= tasks_scheduled
    assert "keys.ingest_usage" not in tasks_scheduled


def test_old_hours_are_pruned(workspace, fixed_now, settings):
    settings.DETECTION_HOURLY_RETENTION_DAYS = 2
    key = make_api_key_row(workspace)
    make_hourly_usage(key, fixed_now - timedelta(days=3), 1)
    kept = make_hourly_usage(key, fixed_now - timedelta(days=1), 1)
    assert usage.usage_prune() == 1
    assert list(KeyUsageHourly.objects.values_list("pk", flat=True)) == [kept.pk]


def test_an_answer_without_the_key_column_is_refused():
    from keys.services.usage import parse_usage
    from project.platform import errors

    with pytest.raises(errors.PlatformError):
        parse_usage({"columns": ["time", "credits"], "rows": [[0, 1]]})
