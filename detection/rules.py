"""Alert rules over usage per key and hour: a spike against the key's trailing baseline, activity in the
workspace's unusual hours, an idle key waking up.

Each rule is a pure function of one key-hour and the figures around it, returning a Finding (or None); the
dedup key names the rule's window, so a rule never fires twice for the same window whatever the number of passes.
`rules_evaluate` loads the figures for many key-hours in a bounded number of queries and raises the alerts;
`rules_evaluate_awaiting` runs it over the hours whose figures an ingest stored since the rules last looked.
Concurrency pinned at the maximum is in detection.concurrency; quotas and budgets in detection.guard; rotation
due and failed credential refreshes are raised by keys and secrets_app where those facts change.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from detection.models import DetectionPolicy
from detection.services import detection_policies_ensure
from keys.models import ApiKey, KeyUsageDaily, KeyUsageHourly
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_build, alerts_raise_many

BATCH = 1000


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    title: str
    dedup_key: str
    details: dict[str, Any] = field(default_factory=dict)


def _num(value: Decimal | float | int) -> float:
    return round(float(value), 3)


def _fmt(value: Decimal | float | int) -> str:
    value = float(value)
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.2f}"


def _who(key: ApiKey) -> str:
    return f"“{key}” of {key.service_account} ({key.environment.name})"


def _key_details(key: ApiKey) -> dict[str, Any]:
    return {"service_account": key.service_account.name, "environment": key.environment.name}


# --- spike against the trailing baseline -----------------------------------------------------------------------
def baseline_hours(key: ApiKey, day: date, policy: DetectionPolicy) -> int:
    """Hours the baseline spreads over: the policy's whole days before `day`, or only those the key existed
    (at least a day), so a young key's average is not diluted by days it did not exist."""
    span_end = datetime.combine(day, time.min, tzinfo=UTC)
    span_start = span_end - timedelta(days=policy.baseline_days)
    born = key.activated_at or key.created_at
    start = max(span_start, born) if born else span_start
    return max(24, int((span_end - start).total_seconds() // 3600))


def spike_finding(*, key: ApiKey, hour: datetime, credits: Decimal, requests: int, baseline_total: Decimal,
                  hours: int, policy: DetectionPolicy) -> Finding | None:
    """Fires when the hour spends at least `spike_min_credits` and at least `spike_factor` times the key's average
    hour over the baseline (the policy's whole UTC days before the hour's day, from the daily totals)."""
    baseline = Decimal(baseline_total) / Decimal(hours)
    factor = Decimal(policy.spike_factor)
    if credits < policy.spike_min_credits or credits < factor * baseline:
        return None
    ratio = (credits / baseline) if baseline > 0 else None
    times = f"{ratio:,.1f}× its baseline" if ratio is not None else "with no spend in its baseline"
    return Finding(
        kind="usage_spike", severity=Alert.Severity.HIGH,
        title=f"Spike: key {_who(key)} spent {_fmt(credits)} credits in one hour ({times})",
        dedup_key=f"usage.spike:{key.uuid}:{hour:%Y%m%dT%H}",
        details={**_key_details(key), "hour": hour.isoformat(), "credits": _num(credits), "requests": requests,
                 "baseline_credits_per_hour": _num(baseline), "baseline_days": policy.baseline_days,
                 "baseline_hours": hours, "ratio": _num(ratio) if ratio is not None else None,
                 "threshold_factor": _num(factor), "threshold_min_credits": policy.spike_min_credits})


# --- unusual hours ------------------------------------------------------------------------------------------
def in_unusual_hours(local_hour: int, policy: DetectionPolicy) -> bool:
    start, end = policy.unusual_start_hour, policy.unusual_end_hour
    return start <= local_hour < end if start < end else (local_hour >= start or local_hour < end)


def night_of(local: datetime, policy: DetectionPolicy) -> date:
    """The local date an unusual-hours window starts on (22:00–06:00: 03:00 on the 5th belongs to the 4th)."""
    wraps = policy.unusual_start_hour > policy.unusual_end_hour
    return local.date() - timedelta(days=1) if wraps and local.hour < policy.unusual_end_hour else local.date()


def unusual_hours_finding(*, key: ApiKey, hour: datetime, credits: Decimal, requests: int, policy: DetectionPolicy,
                          tz: zoneinfo.ZoneInfo) -> Finding | None:
    """Fires when the key spends at least `unusual_min_credits` in one hour that starts inside the workspace's
    unusual hours (local time); once per key and night."""
    if not policy.unusual_hours_enabled or credits < policy.unusual_min_credits:
        return None
    local = hour.astimezone(tz)
    if not in_unusual_hours(local.hour, policy):
        return None
    night = night_of(local, policy)
    window = f"{policy.unusual_start_hour:02d}:00–{policy.unusual_end_hour:02d}:00 {policy.time_zone}"
    return Finding(
        kind="usage_unusual_hours", severity=Alert.Severity.MEDIUM,
        title=f"Unusual hours: key {_who(key)} spent {_fmt(credits)} credits at {local:%H:%M} ({window})",
        dedup_key=f"usage.unusual_hours:{key.uuid}:{night:%Y%m%d}",
        details={**_key_details(key), "hour": hour.isoformat(), "local_time": local.isoformat(),
                 "unusual_hours": window, "night_of": night.isoformat(), "credits": _num(credits),
                 "requests": requests, "threshold_min_credits": policy.unusual_min_credits})


# --- idle key waking up -----------------------------------------------------------------------------------
def idle_wake_finding(*, key: ApiKey, hour: datetime, credits: Decimal, requests: int,
                      previous: datetime | None, policy: DetectionPolicy) -> Finding | None:
    """Fires when a key is used in an hour after at least `idle_days` without use (since its activation if it was
    never used); once per idle spell (the dedup key names the spell's start)."""
    if credits <= 0 and requests <= 0:
        return None
    since = previous or key.activated_at or key.created_at
    if since is None or hour - since < timedelta(days=policy.idle_days):
        return None
    quiet = hour - since
    what = "last used" if previous else "issued and never used"
    return Finding(
        kind="usage_idle_key_woke", severity=Alert.Severity.HIGH,
        title=f"Idle key woke up: {_who(key)} used again after {quiet.days} days ({what} {since:%Y-%m-%d})",
        dedup_key=f"usage.idle_wake:{key.uuid}:{since:%Y%m%dT%H}",
        details={**_key_details(key), "hour": hour.isoformat(), "credits": _num(credits), "requests": requests,
                 "previous_use": previous.isoformat() if previous else None,
                 "quiet_since": since.isoformat(), "quiet_days": round(quiet.total_seconds() / 86400, 1),
                 "threshold_idle_days": policy.idle_days})


# --- evaluation -------------------------------------------------------------------------------------------
def _active() -> Q:
    return Q(credits__gt=0) | Q(requests__gt=0)


def _previous_use(key_ids: list[int], first_hour: datetime, last_hour: datetime) -> tuple[
        dict[int, datetime], dict[int, list[datetime]]]:
    """(latest use before first_hour per key, every hour with use in [first_hour, last_hour] per key): three
    grouped queries, from the hourly rows and, further back than they reach, the daily totals."""
    before: dict[int, datetime] = {}
    for key_id, day in (KeyUsageDaily.objects.filter(key_id__in=key_ids, day__lt=first_hour.date()).filter(_active())
                        .values("key_id").annotate(last=Max("day")).values_list("key_id", "last")):
        before[key_id] = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)  # some time that day
    for key_id, last in (KeyUsageHourly.objects.filter(key_id__in=key_ids, hour__lt=first_hour).filter(_active())
                         .values("key_id").annotate(last=Max("hour")).values_list("key_id", "last")):
        before[key_id] = max(before.get(key_id, last), last)
    during: dict[int, list[datetime]] = defaultdict(list)
    for key_id, hour in (KeyUsageHourly.objects.filter(key_id__in=key_ids, hour__gte=first_hour,
                                                       hour__lte=last_hour).filter(_active())
                         .order_by("hour").values_list("key_id", "hour")):
        during[key_id].append(hour)
    return before, during


def _baselines(key_ids: list[int], first_day: date, last_day: date, longest: int) -> dict[tuple[int, date], Decimal]:
    """{(key, day): credits} from the daily totals, for the baselines of days first_day..last_day."""
    return {(k, d): c for k, d, c in KeyUsageDaily.objects.filter(
        key_id__in=key_ids, day__gte=first_day - timedelta(days=longest), day__lt=last_day)
        .values_list("key_id", "day", "credits")}


def findings_for(rows: list[KeyUsageHourly], policies: dict[int, DetectionPolicy]) -> list[tuple[ApiKey, Finding]]:
    """Every rule over the given key-hours (rows with their key, service account and environment selected)."""
    if not rows:
        return []
    key_ids = sorted({r.key_id for r in rows})
    first_hour, last_hour = min(r.hour for r in rows), max(r.hour for r in rows)
    longest = max(p.baseline_days for p in policies.values())
    daily = _baselines(key_ids, first_hour.date(), last_hour.date(), longest)
    before, during = _previous_use(key_ids, first_hour, last_hour)
    zones: dict[str, zoneinfo.ZoneInfo] = {}
    totals: dict[tuple[int, date], Decimal] = {}
    found = []
    for row in sorted(rows, key=lambda r: (r.key_id, r.hour)):
        key, policy = row.key, policies[row.key.workspace_id]
        tz = zones.setdefault(policy.time_zone, zoneinfo.ZoneInfo(policy.time_zone))
        day = row.hour.date()
        total = totals.get((key.pk, day))
        if total is None:  # a key's hours of one day share their baseline: summed once
            total = totals[key.pk, day] = sum((daily.get((key.pk, day - timedelta(days=n)), Decimal(0))
                                               for n in range(1, policy.baseline_days + 1)), Decimal(0))
        earlier = [h for h in during.get(key.pk, []) if h < row.hour]
        previous = max([*earlier, *([before[key.pk]] if key.pk in before else [])], default=None)
        figures = {"key": key, "hour": row.hour, "credits": row.credits, "requests": row.requests}
        for finding in (
            spike_finding(**figures, baseline_total=total, hours=baseline_hours(key, day, policy), policy=policy),
            unusual_hours_finding(**figures, policy=policy, tz=tz),
            idle_wake_finding(**figures, previous=previous, policy=policy),
        ):
            if finding is not None:
                found.append((key, finding))
    return found


def raise_findings(found: Iterable[tuple[Any, Finding]]) -> int:
    """Raise each finding's alert unless its window's alert exists, in bulk (a lookup, an insert and an audit
    insert per thousand, whatever the number of alerts). Returns alerts raised."""
    return len(alerts_raise_many(actor=SYSTEM, alerts=[
        alert_build(workspace=target.workspace, kind=finding.kind, severity=finding.severity, title=finding.title,
                    dedup_key=finding.dedup_key, details=finding.details, target=target)
        for target, finding in found]))


def rules_evaluate(*, now: datetime | None = None, row_ids: Iterable[int] | None = None) -> dict[str, int]:
    """Run the usage rules over the given hourly rows (those an ingest just created or changed), or over every
    row of the last DETECTION_RULE_WINDOW_HOURS hours. Raises alerts (system actor, audited as alert_raise does).
    Bounded queries per batch of keys, whatever the number of hours."""
    now = now or timezone.now()
    rows = KeyUsageHourly.objects.all()
    if row_ids is None:
        candidates = list(rows.filter(hour__gte=now - timedelta(hours=settings.DETECTION_RULE_WINDOW_HOURS),
                                      hour__lte=now))
    else:
        ids = sorted(set(row_ids))
        candidates = [r for i in range(0, len(ids), BATCH) for r in rows.filter(pk__in=ids[i:i + BATCH])]
    by_key: dict[int, list[KeyUsageHourly]] = defaultdict(list)
    for row in candidates:
        by_key[row.key_id].append(row)
    key_ids = sorted(by_key)
    # Each key once (with what the rules and the alerts read), shared by its rows: a select_related per row
    # would build a key, its account, environment and workspace again for every hour.
    keys: dict[int, ApiKey] = {}
    for i in range(0, len(key_ids), BATCH):
        keys.update((key.pk, key) for key in ApiKey.objects.select_related(
            "service_account", "environment", "workspace").filter(pk__in=key_ids[i:i + BATCH]))
    # A row whose key went away since the first read (its workspace deleted meanwhile) has nothing to alert on.
    candidates = [row for row in candidates if row.key_id in keys]
    for row in candidates:
        row.key = keys[row.key_id]
    key_ids = [key_id for key_id in key_ids if key_id in keys]
    policies = detection_policies_ensure(workspace_ids={key.workspace_id for key in keys.values()})
    result = {"hours_evaluated": len(candidates), "findings": 0, "alerts": 0}
    for i in range(0, len(key_ids), BATCH):
        batch = [row for key_id in key_ids[i:i + BATCH] for row in by_key[key_id]]
        found = findings_for(batch, policies)
        result["findings"] += len(found)
        result["alerts"] += raise_findings(found)
    return result


def rules_evaluate_awaiting(*, now: datetime | None = None) -> dict[str, int]:
    """Run the usage rules over every hourly row awaiting them (``awaiting_rules``: new or revised figures, stored
    by whichever task ran the usage ingest), after taking them: the flag is cleared in a short transaction first,
    so two passes never share a row, and a revision stored meanwhile flags its row again for the next pass."""
    with transaction.atomic():
        # skip_locked: rows another pass is taking, or an ingest is rewriting, are left for it / the next pass.
        ids = list(KeyUsageHourly.objects.filter(awaiting_rules=True).select_for_update(skip_locked=True)
                   .order_by().values_list("pk", flat=True))
        for i in range(0, len(ids), BATCH):
            KeyUsageHourly.objects.filter(pk__in=ids[i:i + BATCH]).update(awaiting_rules=False)
    return rules_evaluate(now=now, row_ids=ids)
