"""The dashboard's credit burn from the pre-aggregated environment days and key windows (keys.services.burn): the
same figures as the per-row sums over the key day rows it replaced, and kept current by the usage ingest."""

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse

from detection.charts import bar_chart, line_chart
from detection.dashboard import DAYS, TOP_KEYS, posture, visible_workspaces
from keys import services
from keys.models import ApiKey, EnvironmentUsageDaily, KeyUsageDaily, KeyUsageWindow
from keys.services.burn import usage_burn_apply, usage_burn_rebuild
from tests.factories import NOW, make_api_key, make_api_key_row, make_daily_usage, make_platform_usage

pytestmark = pytest.mark.django_db


# --- the per-row logic the aggregates replaced (detection.dashboard before them), as the reference ------------------
def _raw_environment_burn(ids, days, *, multi):
    rows = KeyUsageDaily.objects.filter(day__gte=days[0], day__lte=days[-1])
    if ids is not None:
        rows = rows.filter(key__workspace_id__in=ids)
    rows = rows.order_by().values("key__environment_id", "key__environment__name",
                                  "key__environment__workspace__name", "day").annotate(credits=Sum("credits"))
    series = defaultdict(dict)
    for row in rows:
        label = (f"{row['key__environment__workspace__name']} / {row['key__environment__name']}" if multi
                 else row["key__environment__name"])
        series[label][row["day"]] = series[label].get(row["day"], 0.0) + float(row["credits"] or 0)
    ordered = sorted(series.items(), key=lambda item: -sum(item[1].values()))
    return line_chart(days, [(label, [by_day.get(d, 0.0) for d in days]) for label, by_day in ordered])


def _raw_key_burn(ids, days):
    usage = KeyUsageDaily.objects.filter(day__gte=days[0], day__lte=days[-1])
    if ids is not None:
        usage = usage.filter(key__workspace_id__in=ids)
    top = list(usage.order_by().values("key_id", "key__name", "key__hint", "key__environment__name")
               .annotate(total=Sum("credits")).order_by("-total", "key_id")[:TOP_KEYS])
    daily = defaultdict(dict)
    for key_id, day, credits in usage.filter(key_id__in=[t["key_id"] for t in top]).values_list("key_id", "day",
                                                                                             "credits"):
        daily[key_id][day] = float(credits or 0)
    return bar_chart([(f"{t['key__name']} …{t['key__hint']} ({t['key__environment__name']})",
                       reverse("admin:keys_apikey_change", args=[t["key_id"]]),
                       [daily[t["key_id"]].get(d, 0.0) for d in days]) for t in top if t["total"]])


def _lines(chart):
    return [(line.label, line.values, line.points) for line in chart.lines]


def _bars(chart):
    return [(bar.label, bar.href, bar.total, bar.width, bar.spark) for bar in chart.bars]


@pytest.fixture
def usage(workspace, other_workspace, fixed_now):
    """Twelve keys over both workspaces and three environments each (more than the TOP_KEYS bars), with usage
    inside the window, on its first and last day, just outside it, and revised after it was first stored."""
    today = NOW.date()
    keys = [make_api_key_row(ws, env, name=f"{ws.slug}-{env}-{i}")
            for i, (ws, env) in enumerate((ws, env) for ws in (workspace, other_workspace)
                                          for env in ("prod", "staging", "dev") for _ in range(2))]
    for i, key in enumerate(keys):
        for d in range(0, 45, 1 + i % 4):
            make_daily_usage(key, today - timedelta(days=d), 7 * i + d % 5 + 0.125 * (i % 3))
    make_daily_usage(keys[3], today - timedelta(days=DAYS), 99_999)  # the day before the window: left out
    make_daily_usage(keys[1], today - timedelta(days=DAYS - 1), 500)  # the window's first day: counted
    # A day revised after it was stored (as the ingest does: the row replaced, the aggregates moved by the change).
    row = KeyUsageDaily.objects.get(key=keys[5], day=today)
    old, row.credits = row.credits, Decimal("812.5")
    row.save()
    usage_burn_apply({(keys[5].pk, today): row.credits - old})
    return keys


@pytest.mark.parametrize("scope", ["every workspace", "one workspace"])
def test_burn_from_the_aggregates_equals_the_sums_of_the_day_rows(usage, workspace, superuser, scope):
    workspaces = list(visible_workspaces(superuser))
    selected = workspace if scope == "one workspace" else None
    shown = posture(superuser, selected, workspaces, today=NOW.date())
    days = [shown.since + timedelta(days=n) for n in range(DAYS)]
    ids = {workspace.pk} if selected else None
    raw_lines = _raw_environment_burn(ids, days, multi=selected is None)
    raw_bars = _raw_key_burn(ids, days)
    assert _lines(shown.environments) == _lines(raw_lines)
    assert _bars(shown.keys) == _bars(raw_bars)
    # Not vacuous: every environment in scope drew a line, the top keys are cut at TOP_KEYS.
    assert len(shown.environments.lines) == (3 if selected else 6) and len(shown.keys.bars) == min(
        TOP_KEYS, 6 if selected else 12)


def test_the_rebuild_from_the_day_rows_equals_what_the_changes_built(usage):
    """The migration's backfill (usage_burn_rebuild) and the ingest's moves (usage_burn_apply) agree."""
    def snapshot():
        return (sorted(EnvironmentUsageDaily.objects.values_list("environment_id", "workspace_id", "day", "credits")),
                sorted(KeyUsageWindow.objects.exclude(credits=0).values_list("key_id", "workspace_id", "day",
                                                                             "credits")))

    built = snapshot()
    assert usage_burn_rebuild() > 0
    assert snapshot() == built and built[0] and built[1]


def _expected(today: date) -> tuple[dict, dict]:
    """The environment days and today's key windows, summed from the day rows."""
    by_env = {(e, d): c for e, d, c in KeyUsageDaily.objects.order_by().values_list("key__environment_id", "day")
              .annotate(c=Sum("credits")).values_list("key__environment_id", "day", "c")}
    windows = {k: c for k, c in KeyUsageDaily.objects.filter(day__gt=today - timedelta(days=DAYS), day__lte=today)
               .order_by().values_list("key_id").annotate(c=Sum("credits")).values_list("key_id", "c")}
    return by_env, windows


def _stored(today: date) -> tuple[dict, dict]:
    return ({(e, d): c for e, d, c in EnvironmentUsageDaily.objects.values_list("environment_id", "day", "credits")},
            {k: c for k, c in KeyUsageWindow.objects.filter(day=today).exclude(credits=0)
             .values_list("key_id", "credits")})


@pytest.fixture
def midday(clock):
    clock.now = clock.now.replace(hour=12, minute=30, second=0)
    return clock.now


def test_the_ingest_keeps_the_aggregates_current_for_new_and_revised_hours(owner, account, emulator, midday):
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    other = ApiKey.objects.get(pk=make_api_key(owner, account, name="second").key.pk)
    today, ten = midday.date(), midday.replace(hour=10, minute=0)
    emulator.add_usage([make_platform_usage(key, ten, credits=3, requests=1),
                        make_platform_usage(key, ten - timedelta(hours=20), credits=1.5, requests=1),
                        make_platform_usage(other, ten - timedelta(hours=1), credits=4, requests=1)])
    services.api_key_usage_ingest()
    assert _stored(today) == _expected(today)
    assert _stored(today)[1] == {key.pk: Decimal("4.5"), other.pk: Decimal(4)}
    # Late data for an hour already stored (a revised day) and a new hour on another day, then the same again.
    emulator.add_usage([make_platform_usage(key, ten + timedelta(minutes=5), credits=2, requests=1),
                        make_platform_usage(other, ten - timedelta(hours=22), credits=0.25, requests=1)])
    services.api_key_usage_ingest()
    services.api_key_usage_ingest()  # nothing new: nothing moves twice
    assert _stored(today) == _expected(today)
    assert _stored(today)[1] == {key.pk: Decimal("6.5"), other.pk: Decimal("4.25")}
    # Tomorrow's windows are there before any ingest runs tomorrow, and the day 29 days on still counts today.
    later = today + timedelta(days=DAYS - 1)
    assert dict(KeyUsageWindow.objects.filter(day=later).values_list("key_id", "credits")) == {
        key.pk: Decimal(5), other.pk: Decimal(4)}
    assert not KeyUsageWindow.objects.filter(day=later + timedelta(days=1), credits__gt=0).exists()
