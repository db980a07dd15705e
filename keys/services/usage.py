"""Usage per key from the platform (one read stores the hours, the day totals and "last used"), and the periodic
sweep."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from keys.models import ApiKey, KeyUsageDaily, KeyUsageHourly
from keys.services.burn import usage_burn_apply
from keys.services.common import DIGEST_BATCH
from keys.services.lifecycle import api_key_expire, api_key_raise_hygiene_alerts, api_key_retire
from keys.services.platform_hash import api_keys_fill_platform_hashes, keys_by_platform_hash
from project.actors import SYSTEM
from project.platform import errors
from project.platform.errors import PlatformError

logger = logging.getLogger(__name__)

HOUR = 3600


# --- usage ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UsageRow:
    """One bucket of one key's usage as the platform reported it."""

    hashed: str
    began: datetime
    credits: Decimal
    requests: int


def usage_window(now: datetime) -> tuple[datetime, datetime]:
    """What each ingest re-reads: from midnight UTC API_KEY_USAGE_LOOKBACK_DAYS days ago until now (late platform
    data for those days still lands)."""
    start = datetime.combine((now - timedelta(days=settings.API_KEY_USAGE_LOOKBACK_DAYS)).astimezone(UTC).date(),
                             time.min, tzinfo=UTC)
    return start, now


def usage_read_interval() -> int:
    """The bucket size to ask for: fine enough for whole hours (detection's rules) and for the precision of "last
    used" (API_KEY_USAGE_BUCKET_SECONDS), so one read serves both. Both divide a day, so this does too."""
    return math.gcd(settings.API_KEY_USAGE_BUCKET_SECONDS, HOUR)


CURRENCY_UNITS = frozenset({"usd", "eur", "inr", "pln", "gbp"})
TIME_UNITS = {"ms": 1000, "s": 1}
KEY_COLUMN = "hashed_xi_api_key"


def _cell_time(value: Any, unit: str | None) -> datetime | None:
    """A time cell: a number in the column's unit (ms unless it says s), or a date-time string (ISO 8601)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value) / TIME_UNITS.get(unit or "ms", 1000), tz=UTC)
    text = str(value).strip()
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return _cell_time(float(text), unit)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _usage_columns(data: dict[str, Any]) -> tuple[int, int, int, int | None]:
    """(time, key hash, amount, requests) column indexes, chosen by what each column is (``column_types`` and
    ``column_units``), not by a name the platform does not fix. The amount is the credits column, or on a
    cost-billed account (``billing: cost``) the cost in its currency. Raises PlatformError with a clear message
    when a needed column is missing: an answer without credits must never read as zero usage."""
    columns = [str(c) for c in data.get("columns") or []]
    types = list(data.get("column_types") or [])
    units = list(data.get("column_units") or [])
    types += [None] * (len(columns) - len(types))
    units += [None] * (len(columns) - len(units))

    def first(test: Any) -> int | None:
        return next((i for i in range(len(columns)) if test(i)), None)

    i_time = first(lambda i: types[i] == "DateTime")
    if i_time is None:
        i_time = first(lambda i: units[i] in TIME_UNITS and types[i] in ("Int", "Float", None))
    i_hash = first(lambda i: columns[i] == KEY_COLUMN)
    if i_hash is None:
        i_hash = first(lambda i: KEY_COLUMN in columns[i].lower())
    i_amount = first(lambda i: units[i] == "credits")
    if i_amount is None and data.get("billing") == "cost":
        i_amount = first(lambda i: units[i] in CURRENCY_UNITS)
    numeric = {"Int", "Float"}
    taken = {i_time, i_hash, i_amount}
    i_requests = first(lambda i: i not in taken and types[i] in numeric and units[i] is None
                       and ("request" in columns[i].lower() or "count" in columns[i].lower()))
    missing = [what for what, index in (("time", i_time), ("hashed_xi_api_key", i_hash),
                                        ("credits" if data.get("billing") != "cost" else "cost", i_amount))
               if index is None]
    if missing:
        raise errors.PlatformError(
            f"the platform's usage answer has no {' or '.join(missing)} column (columns: {', '.join(columns)}); "
            "usage was not read rather than read as zero", code="invalid_response")
    return i_time, i_hash, i_amount, i_requests  # type: ignore[return-value]


def parse_usage(data: dict[str, Any]) -> list[UsageRow]:
    """The platform's tabular answer: columns picked by unit and type (``_usage_columns``), times as numbers or
    date-time strings; rows without a key hash (usage made some other way) are left out."""
    i_time, i_hash, i_amount, i_requests = _usage_columns(data)
    unit = (list(data.get("column_units") or []) + [None] * (i_time + 1))[i_time]
    rows = []
    for row in data.get("rows") or []:
        hashed = str(row[i_hash] or "")
        if not hashed:
            continue
        try:
            began = _cell_time(row[i_time], unit)
        except (TypeError, ValueError, OverflowError):
            raise errors.PlatformError(f"the platform's usage answer has a time Keyward cannot read: {row[i_time]!r}",
                                       code="invalid_response") from None
        if began is None:
            continue
        rows.append(UsageRow(
            hashed=hashed, began=began, credits=Decimal(str(row[i_amount] or 0)),
            requests=int(float(row[i_requests] or 0)) if i_requests is not None else 0))
    return rows


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _totals() -> list[Any]:
    return [Decimal(0), 0]


def api_key_usage_ingest(*, client: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The one usage ingest. Asks the platform once for the usage per key (grouped by hashed_xi_api_key, matched
    to the keys' platform hashes by ``keys_by_platform_hash``, never to their digests) over ``usage_window`` in
    ``usage_read_interval`` buckets, and in one transaction:

    - replaces each (key, UTC hour) row of KeyUsageHourly whose figures are new or revised, flagging it for
      detection's rules (``awaiting_rules``), whichever caller ingested it;
    - replaces each (key, UTC day) row of KeyUsageDaily with that day's totals, and moves the burn aggregates the
      posture dashboard reads (keys.services.burn) by the same changes;
    - moves each key's ``last_used_at`` forward (never back) to the end of its newest API_KEY_USAGE_BUCKET_SECONDS
      bucket with traffic.

    Idempotent (re-running writes nothing new). Platform data, not anyone's change: no audit, nothing enqueued.
    Raises the platform's errors (the caller decides whether stale usage blocks it). Called by detection's
    periodic watch and by the keys sweep before it ends rotation overlaps.

    Returns counts (``rows``: day rows written, ``hours``: hour rows written, ``keys``, ``unknown_hashes``) and
    ``changed``: the ids of the hour rows written.
    """
    from project.platform.client import accounts_with_workspaces, client_for_account

    now = now or timezone.now()
    bucket = settings.API_KEY_USAGE_BUCKET_SECONDS
    start, end = usage_window(now)
    # Each platform account is asked once (its keys' usage is on its own account); one account failing leaves
    # the others' usage to be stored, and is raised only when no account answered.
    clients = [client] if client is not None else [client_for_account(a) for a in accounts_with_workspaces()]
    reported: list[Any] = []
    failures: list[PlatformError] = []
    for account_client in clients:
        try:
            data = account_client.usage_by_api_key(start_ms=int(start.timestamp() * 1000),
                                                   end_ms=int(end.timestamp() * 1000),
                                                   interval_seconds=usage_read_interval())
        except PlatformError as exc:
            failures.append(exc)
            continue
        reported.extend(parse_usage(data))
    if failures and len(failures) == len(clients):
        raise failures[0]
    hours: dict[tuple[str, datetime], list[Any]] = defaultdict(_totals)
    days: dict[tuple[str, Any], list[Any]] = defaultdict(_totals)
    last_used: dict[str, datetime] = {}
    for row in reported:
        for totals in (hours[(row.hashed, _floor(row.began, HOUR))], days[(row.hashed, row.began.date())]):
            totals[0] += row.credits
            totals[1] += row.requests
        if row.credits > 0 or row.requests > 0:
            ended = min(_floor(row.began, bucket) + timedelta(seconds=bucket), now)
            last_used[row.hashed] = max(last_used.get(row.hashed, ended), ended)
    hashes = sorted({h for h, _ in days})
    if hashes:
        # A key whose platform hash is not known yet would match nothing: read it first (no call when none lacks it).
        api_keys_fill_platform_hashes(client=client)
    keys = keys_by_platform_hash(hashes)
    key_pks = sorted({keys[h].pk for h in hashes if h in keys})
    new_hours, changed_hours = _hours_to_write(
        {(keys[h].pk, hour): totals for (h, hour), totals in hours.items() if h in keys}, key_pks, start)
    new_days, changed_days, burn = _days_to_write(
        {(keys[h].pk, day): totals for (h, day), totals in days.items() if h in keys}, key_pks, start, now)
    moved = []
    for hashed, when in last_used.items():
        key = keys.get(hashed)
        if key is not None and (key.last_used_at is None or key.last_used_at < when):
            key.last_used_at = when  # only ever forward: an older window never makes a key look idle again
            moved.append(key)
    with transaction.atomic():
        created = KeyUsageHourly.objects.bulk_create(new_hours, batch_size=DIGEST_BATCH)
        KeyUsageHourly.objects.bulk_update(changed_hours, ["credits", "requests", "awaiting_rules"],
                                           batch_size=DIGEST_BATCH)
        KeyUsageDaily.objects.bulk_create(new_days, batch_size=DIGEST_BATCH)
        KeyUsageDaily.objects.bulk_update(changed_days, ["credits", "requests", "updated_at"], batch_size=DIGEST_BATCH)
        usage_burn_apply(burn)  # the dashboard's burn per environment and per key, moved by the same changes
        ApiKey.objects.bulk_update(moved, ["last_used_at"], batch_size=DIGEST_BATCH)
    ids = [row.pk for row in changed_hours] + [row.pk for row in created if row.pk is not None]
    if any(row.pk is None for row in created):  # a backend that returns no ids from a bulk insert: take them all
        for i in range(0, len(key_pks), DIGEST_BATCH):
            ids += KeyUsageHourly.objects.filter(key_id__in=key_pks[i:i + DIGEST_BATCH], hour__gte=start,
                                                 awaiting_rules=True).values_list("pk", flat=True)
    result = {"rows": len(new_days) + len(changed_days), "hours": len(new_hours) + len(changed_hours),
              "keys": len(key_pks), "unknown_hashes": len(set(hashes) - set(keys)), "changed": sorted(set(ids))}
    if failures:
        result["failed_accounts"] = len(failures)
    return result


def _hours_to_write(wanted: dict[tuple[int, datetime], list[Any]], key_pks: list[int],
                    start: datetime) -> tuple[list[KeyUsageHourly], list[KeyUsageHourly]]:
    existing: dict[tuple[int, datetime], KeyUsageHourly] = {}
    for i in range(0, len(key_pks), DIGEST_BATCH):
        existing.update(((u.key_id, u.hour), u) for u in KeyUsageHourly.objects.filter(
            key_id__in=key_pks[i:i + DIGEST_BATCH], hour__gte=start))
    new, changed = [], []
    for (key_pk, hour), (credits, requests) in wanted.items():
        row = existing.get((key_pk, hour))
        if row is None:
            new.append(KeyUsageHourly(key_id=key_pk, hour=hour, credits=credits, requests=requests,
                                      awaiting_rules=True))
        elif (row.credits, row.requests) != (credits, requests):
            row.credits, row.requests, row.awaiting_rules = credits, requests, True
            changed.append(row)
    return new, changed


def _days_to_write(wanted: dict[tuple[int, Any], list[Any]], key_pks: list[int], start: datetime,
                   now: datetime) -> tuple[list[KeyUsageDaily], list[KeyUsageDaily], dict[tuple[int, Any], Decimal]]:
    """The day rows to create and to update, and by how much each (key, day)'s credits move (for the burn
    aggregates, keys.services.burn)."""
    existing: dict[tuple[int, Any], KeyUsageDaily] = {}
    for i in range(0, len(key_pks), DIGEST_BATCH):
        existing.update(((u.key_id, u.day), u) for u in KeyUsageDaily.objects.filter(
            key_id__in=key_pks[i:i + DIGEST_BATCH], day__gte=start.date()))
    new, changed, burn = [], [], {}
    for (key_pk, day), (credits, requests) in wanted.items():
        row = existing.get((key_pk, day))
        if row is None:
            new.append(KeyUsageDaily(key_id=key_pk, day=day, credits=credits, requests=requests))
            burn[(key_pk, day)] = credits
        elif (row.credits, row.requests) != (credits, requests):
            burn[(key_pk, day)] = credits - row.credits
            row.credits, row.requests, row.updated_at = credits, requests, now
            changed.append(row)
    return new, changed, burn


# --- sweeps ---------------------------------------------------------------------------------------------------
def api_keys_sweep(*, client: Any = None, now: datetime | None = None) -> dict[str, int]:
    """The periodic pass: expire keys past their expiry; end rotation overlaps (after refreshing usage: without
    fresh usage nobody can say a key has gone quiet, so overlaps wait for the next pass); raise rotation-due and
    idle alerts. Each key in its own transaction."""
    from keys.selectors import keys_needing_attention, keys_past_expiry, keys_past_overlap, policy_of_row

    now = now or timezone.now()
    result = {"expired": 0, "revoked": 0, "in_use": 0, "alerts": 0, "overlaps_waiting": 0}
    for key in keys_past_expiry(now).only("pk"):
        result["expired"] += api_key_expire(actor=SYSTEM, key=key)
    due = list(keys_past_overlap(now).only("pk"))
    if due:
        try:
            api_key_usage_ingest(client=client, now=now)
        except errors.PlatformError as exc:
            logger.warning("usage ingest failed (%s): %d rotation overlap(s) wait for the next sweep", exc.code,
                           len(due))
            result["overlaps_waiting"] = len(due)
            due = []
    for key in due:
        outcome = api_key_retire(actor=SYSTEM, key=key)
        if outcome in ("revoked", "in_use"):
            result[outcome] += 1
    for key in keys_needing_attention(now).select_related("workspace__key_policy", "service_account",
                                                            "environment"):
        result["alerts"] += api_key_raise_hygiene_alerts(key=key, policy=policy_of_row(key), now=now)
    return result
