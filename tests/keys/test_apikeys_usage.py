"""Usage per key and day from the platform's data; the list's flags; rotation-due and idle alerts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from keys import services
from keys.models import ApiKey, KeyUsageDaily
from keys.selectors import DEFAULT_POLICY, flagged
from project.alerts.models import Alert
from tests.factories import make_api_key, make_platform_usage

pytestmark = pytest.mark.django_db


def _midday(clock):
    clock.now = clock.now.replace(hour=12, minute=0, second=0)
    return clock.now


def test_ingest_stores_credits_and_requests_per_key_and_day(owner, account, emulator, clock):
    now = _midday(clock)
    first, second = make_api_key(owner, account).key, make_api_key(owner, account, "dev").key
    first, second = ApiKey.objects.get(pk=first.pk), ApiKey.objects.get(pk=second.pk)
    yesterday = now - timedelta(days=1)
    emulator.add_usage([
        make_platform_usage(first, yesterday.replace(hour=9), credits=10.5, requests=3),
        make_platform_usage(first, yesterday.replace(hour=17), credits=4, requests=1),
        make_platform_usage(first, now - timedelta(hours=2), credits=1, requests=1),
        make_platform_usage(second, now - timedelta(hours=5), credits=7, requests=2),
        make_platform_usage("sk_" + "0" * 48, now - timedelta(hours=1), credits=99),  # a key Keyward does not know
    ])
    result = services.api_key_usage_ingest()
    # The one ingest also reports the hours it stored (tests/detection/test_usage_ingest.py): these are the days.
    assert {k: result[k] for k in ("rows", "keys", "unknown_hashes")} == {"rows": 3, "keys": 2, "unknown_hashes": 1}
    rows = {(u.key_id, u.day): (u.credits, u.requests) for u in KeyUsageDaily.objects.all()}
    assert rows == {(first.pk, yesterday.date()): (Decimal("14.5"), 4), (first.pk, now.date()): (Decimal(1), 1),
                    (second.pk, now.date()): (Decimal(7), 2)}
    first.refresh_from_db()
    # "last used" is the end of the newest hourly bucket with traffic
    assert first.last_used_at == (now - timedelta(hours=2)).replace(minute=0) + timedelta(hours=1)


def test_ingest_is_idempotent_and_picks_up_late_data(owner, account, emulator, clock):
    now = _midday(clock)
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    emulator.add_usage([make_platform_usage(key, now - timedelta(hours=3), credits=5, requests=1)])
    services.api_key_usage_ingest()
    services.api_key_usage_ingest()
    assert list(KeyUsageDaily.objects.values_list("credits", "requests")) == [(Decimal(5), 1)]
    emulator.add_usage([make_platform_usage(key, now - timedelta(hours=3), credits=2, requests=1)])  # arrives late
    services.api_key_usage_ingest()
    assert list(KeyUsageDaily.objects.values_list("credits", "requests")) == [(Decimal(7), 2)]


def test_last_used_never_moves_back(owner, account, emulator, clock):
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=later)
    emulator.add_usage([make_platform_usage(key, clock.now - timedelta(hours=1))])
    services.api_key_usage_ingest()
    assert ApiKey.objects.get(pk=key.pk).last_used_at == later


def test_flags_overdue_idle_open_network_and_all_scopes_in_prod(owner, account, clock):
    sloppy = make_api_key(owner, account, scopes="all").key
    tidy = make_api_key(owner, account, "dev", allowed_ips=["192.0.2.0/24"]).key
    sloppy, tidy = ApiKey.objects.get(pk=sloppy.pk), ApiKey.objects.get(pk=tidy.pk)
    assert sloppy.flags(DEFAULT_POLICY, clock.now) == ["no network limit", "all scopes in prod"]
    assert tidy.flags(DEFAULT_POLICY, clock.now) == []
    later = clock.now + timedelta(days=91)
    assert tidy.flags(DEFAULT_POLICY, later) == ["overdue for rotation", "idle 30+ days"]
    ApiKey.objects.filter(pk=tidy.pk).update(last_used_at=later - timedelta(days=1))
    tidy.refresh_from_db()
    assert tidy.flags(DEFAULT_POLICY, later) == ["overdue for rotation"]


def test_flag_filters_match_the_flags(owner, account, workspace, clock):
    services.key_policy_save(actor=owner, workspace=workspace, rotation_period_days=10, idle_days=5)
    sloppy = make_api_key(owner, account, scopes="all").key
    tidy = make_api_key(owner, account, "dev", allowed_ips=["192.0.2.0/24"]).key
    qs = ApiKey.objects.all()
    assert list(flagged(qs, "open_network").values_list("pk", flat=True)) == [sloppy.pk]
    assert list(flagged(qs, "all_scopes_prod").values_list("pk", flat=True)) == [sloppy.pk]
    assert not flagged(qs, "overdue").exists()
    later = clock.now + timedelta(days=11)
    assert set(flagged(qs, "overdue", later).values_list("pk", flat=True)) == {sloppy.pk, tidy.pk}
    assert set(flagged(qs, "idle", clock.now + timedelta(days=6)).values_list("pk", flat=True)) == {
        sloppy.pk, tidy.pk}
    assert not flagged(qs, "idle", clock.now + timedelta(days=4)).exists()


def test_overdue_and_idle_keys_raise_one_alert_each(owner, account, clock):
    key = make_api_key(owner, account).key
    clock.advance(days=31)
    assert services.api_keys_sweep()["alerts"] == 1
    assert Alert.objects.get().kind == "api_key_idle"
    clock.advance(days=60)
    assert services.api_keys_sweep()["alerts"] == 1  # now also overdue; idle was raised already
    assert set(Alert.objects.values_list("kind", flat=True)) == {"api_key_idle", "api_key_rotation_due"}
    assert services.api_keys_sweep()["alerts"] == 0
    assert Alert.objects.filter(object_id=str(key.pk)).count() == 2


def test_revoked_keys_raise_no_hygiene_alerts(owner, account, clock):
    key = make_api_key(owner, account).key
    services.api_key_revoke(actor=owner, key=key, reason="done")
    clock.advance(days=120)
    assert services.api_keys_sweep()["alerts"] == 0


# --- the platform's key hash (not sha256 of the secret) ---------------------------------------------------------
def test_usage_is_joined_on_the_hash_the_platform_lists_not_on_sha256_of_the_secret(owner, account, emulator,
                                                                                       clock):
    from keys.models import key_digest

    now = _midday(clock)
    issued = make_api_key(owner, account)
    key = ApiKey.objects.get(pk=issued.key.pk)
    listed = {k["key_id"]: k for k in emulator.state_snapshot()["api_keys"]}[key.remote_key_id]
    assert listed["hashed_xi_api_key"] != key_digest(issued.secret)  # the platform's own hash, not ours
    assert key.platform_hash == listed["hashed_xi_api_key"]
    emulator.add_usage([{"hashed_xi_api_key": listed["hashed_xi_api_key"],
                         "time_ms": int((now - timedelta(hours=1)).timestamp() * 1000), "credits": 3,
                         "requests": 1}])
    assert services.api_key_usage_ingest()["keys"] == 1
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_a_key_whose_hash_read_back_failed_gets_it_before_usage_is_joined(owner, account, emulator, clock):
    now = _midday(clock)
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    listed_hash = key.platform_hash
    ApiKey.objects.filter(pk=key.pk).update(platform_hash="")  # as if the read-back after issuing had failed
    emulator.add_usage([{"hashed_xi_api_key": listed_hash, "time_ms": int((now - timedelta(hours=1)).timestamp()
                                                                          * 1000), "credits": 2, "requests": 1}])
    assert services.api_key_usage_ingest()["keys"] == 1
    assert ApiKey.objects.get(pk=key.pk).platform_hash == listed_hash


def test_rotation_sweep_keeps_a_superseded_key_still_used_under_the_platforms_hash(owner, account, emulator, clock):
    from datetime import timedelta as td

    old = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    services.api_key_rotate(actor=owner, key=old, overlap=td(days=1))
    clock.now = clock.now + td(days=2)
    emulator.add_usage([make_platform_usage(ApiKey.objects.get(pk=old.pk), clock.now - td(minutes=30))])
    services.api_keys_sweep()
    assert ApiKey.objects.get(pk=old.pk).state == "superseded"  # still in use: not revoked


# --- the usage answer read by column type and unit; cost-billed workspaces ----------------------------------------
@pytest.mark.parametrize(("style", "billing"), [("plain", "credits"), ("labelled", "credits"), ("plain", "cost")])
def test_usage_is_read_whatever_the_columns_are_called_and_however_time_is_written(owner, account, emulator, clock,
                                                                                      style, billing):
    emulator.usage_answer_style, emulator.billing = style, billing
    now = _midday(clock)
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    emulator.add_usage([make_platform_usage(key, now - timedelta(hours=2), credits=2000, requests=3),
                        make_platform_usage(key, now - timedelta(days=1), credits=1000, requests=1)])
    assert services.api_key_usage_ingest()["keys"] == 1
    figures = {u.day: (u.credits, u.requests) for u in KeyUsageDaily.objects.filter(key=key)}
    # Credits as reported; a cost-billed workspace reports cost (the emulator's price: 1 per 1,000 credits).
    scale = Decimal(1) if billing == "credits" else Decimal("0.001")
    assert figures == {now.date(): (2000 * scale, 3), (now - timedelta(days=1)).date(): (1000 * scale, 1)}
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_cost_billing_is_detected_once_and_the_cost_endpoint_used_after(owner, account, emulator, clock, platform):
    emulator.billing = "cost"
    services.api_key_usage_ingest()
    services.api_key_usage_ingest()
    calls = emulator.call_counts
    assert calls["POST /v1/workspace/analytics/query/usage-by-product-over-time"] == 1
    assert calls["POST /v1/workspace/analytics/usage"] == 2


def test_rotation_quiet_check_works_on_a_cost_billed_workspace(owner, account, emulator, clock):
    emulator.billing = "cost"
    old = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    services.api_key_rotate(actor=owner, key=old, overlap=timedelta(days=1))
    clock.now = clock.now + timedelta(days=2)
    emulator.add_usage([make_platform_usage(ApiKey.objects.get(pk=old.pk), clock.now - timedelta(minutes=30))])
    services.api_keys_sweep()
    assert ApiKey.objects.get(pk=old.pk).state == "superseded"  # used today: not revoked


def test_an_answer_without_a_credits_column_is_a_clear_error_not_zero_usage():
    from keys.services.usage import parse_usage
    from project.platform import errors

    answer = {"columns": ["time", "hashed_xi_api_key", "characters"], "column_types": ["Int", "String", "Int"],
              "column_units": ["ms", None, None], "rows": [[1_767_225_600_000, "h", 5]]}
    with pytest.raises(errors.PlatformError, match="no credits column"):
        parse_usage(answer)


def test_time_cells_as_date_time_strings_or_seconds():
    from keys.services.usage import parse_usage

    base = {"columns": ["t", "hashed_xi_api_key", "c"], "column_units": [None, None, "credits"]}
    iso = parse_usage({**base, "column_types": ["DateTime", "String", "Float"],
                       "rows": [["2026-01-01T10:00:00Z", "h", 1], ["2026-01-01 11:00:00", "h", 2]]})
    seconds = parse_usage({**base, "column_types": ["Int", "String", "Float"], "column_units": ["s", None, "credits"],
                           "rows": [[1_767_261_600, "h", 1]]})
    assert [r.began for r in iso] == [datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 11, tzinfo=UTC)]
    assert seconds[0].began == datetime(2026, 1, 1, 10, tzinfo=UTC)
