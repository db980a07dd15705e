"""Rate limit and session quota: conditional UPDATEs, so they hold exactly under concurrency.

The store is the database row ``BrokerKeyUsage`` (one per key). The rate check alone (for a request refused
before it could take a session) is a single statement; admit() makes both checks in one. The rate check::

    UPDATE broker_brokerkeyusage
       SET used   = CASE WHEN window >= :w THEN used + 1 ELSE 1 END,
           window = CASE WHEN window >= :w THEN window ELSE :w END
     WHERE key_id = :k AND (window < :w OR used < :limit)

One row changed means "granted", none means "refused". There is no read-modify-write: PostgreSQL
re-evaluates the WHERE clause on the newest row version when concurrent updates queue on the row lock,
and SQLite serialises writers, so N concurrent requests against a limit L grant exactly min(N, L).
A database error propagates (the caller answers 503): quota checks fail closed.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import F
from django.utils import timezone

from broker import rows
from broker.models import BrokerKey, BrokerKeyUsage

# Tests patch this (never sleep): the windows are computed from it.
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Window:
    number: int
    ends_at: float  # unix seconds

    def retry_after(self, now: float) -> int:
        return max(1, int(self.ends_at - now + 0.999))


def minute_window(now: float) -> Window:
    number = int(now // 60)
    return Window(number, (number + 1) * 60.0)


def quota_window(period: str, now: float) -> Window:
    if period == BrokerKey.QuotaPeriod.HOUR:
        number = int(now // 3600)
        return Window(number, (number + 1) * 3600.0)
    if period == BrokerKey.QuotaPeriod.DAY:
        number = int(now // 86400)
        return Window(number, (number + 1) * 86400.0)
    moment = datetime.fromtimestamp(now, tz=UTC)
    number = moment.year * 12 + moment.month - 1
    next_year, next_month = divmod(number + 1, 12)
    return Window(number, float(calendar.timegm((next_year, next_month + 1, 1, 0, 0, 0))))


def _table() -> str:
    return rows.table(BrokerKeyUsage)


def _prep(field: str, value: Any) -> Any:
    return BrokerKeyUsage._meta.get_field(field).get_db_prep_value(value, connection)


def rate_consume(key: BrokerKey, now: float) -> tuple[bool, Window]:
    """Count one request in the key's current minute: (allowed, the minute)."""
    window = minute_window(now)
    w = window.number
    granted = rows.execute(
        f"UPDATE {_table()} SET rate_used = CASE WHEN rate_window >= %s THEN rate_used + 1 ELSE 1 END, "  # noqa: S608 - names from model metadata
        "rate_window = CASE WHEN rate_window >= %s THEN rate_window ELSE %s END "
        "WHERE key_id = %s AND (rate_window < %s OR rate_used < %s)",
        [w, w, w, key.pk, w, key.rate_limit_per_minute])
    return granted == 1, window


class Outcome:
    GRANTED = "granted"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"


def admit(key: BrokerKey, now: float, ip: str | None) -> tuple[str, Window, Window]:
    """Count one request in the key's minute and, when the minute allows it, take one session from the quota
    of its period: (outcome, the minute, the period). One statement, so one round trip and one commit::

        UPDATE usage SET <rate counters as in rate_consume>,
               <quota counters, sessions_total, last_used_at, last_ip: changed only WHEN quota_ok>,
               last_granted = quota_ok
         WHERE key_id = :k AND (rate_window < :w OR rate_used < :limit)      -- the rate gate
        RETURNING last_granted

    No row means the minute is full (rate limited); ``last_granted`` false means the period is used up. Every
    SET expression reads the row as it was before the statement, and the row lock serialises concurrent
    statements exactly as for the two separate UPDATEs this replaces.
    """
    minute = minute_window(now)
    period = quota_window(key.quota_period, now)
    w, q = minute.number, period.number
    quota_ok = "(quota_window < %s OR quota_used < %s)"
    quota_params = [q, key.session_quota]
    row = rows.fetch_one(
        f"UPDATE {_table()} SET rate_used = CASE WHEN rate_window >= %s THEN rate_used + 1 ELSE 1 END, "  # noqa: S608 - names from model metadata
        "rate_window = CASE WHEN rate_window >= %s THEN rate_window ELSE %s END, "
        f"quota_used = CASE WHEN {quota_ok} THEN CASE WHEN quota_window >= %s THEN quota_used + 1 ELSE 1 END "
        "ELSE quota_used END, "
        f"quota_window = CASE WHEN {quota_ok} THEN CASE WHEN quota_window >= %s THEN quota_window ELSE %s END "
        "ELSE quota_window END, "
        f"sessions_total = sessions_total + CASE WHEN {quota_ok} THEN 1 ELSE 0 END, "
        f"last_used_at = CASE WHEN {quota_ok} THEN %s ELSE last_used_at END, "
        f"last_ip = CASE WHEN {quota_ok} THEN %s ELSE last_ip END, "
        f"last_granted = {quota_ok} "
        "WHERE key_id = %s AND (rate_window < %s OR rate_used < %s) RETURNING last_granted",
        [w, w, w,
         *quota_params, q,
         *quota_params, q, q,
         *quota_params,
         *quota_params, _prep("last_used_at", timezone.now()),
         *quota_params, _prep("last_ip", ip),
         *quota_params,
         key.pk, w, key.rate_limit_per_minute])
    if row is None:
        return Outcome.RATE_LIMITED, minute, period
    return (Outcome.GRANTED if row[0] else Outcome.QUOTA_EXHAUSTED), minute, period


def quota_refund(key: BrokerKey, window: Window) -> None:
    """Give back a session the platform did not mint (only while its period is still the current one)."""
    (BrokerKeyUsage.objects.filter(pk=key.pk, quota_window=window.number, quota_used__gt=0)
     .update(quota_used=F("quota_used") - 1, sessions_total=F("sessions_total") - 1))


def current_usage(usage: BrokerKeyUsage | None, key: BrokerKey, now: float | None = None) -> tuple[int, int]:
    """(sessions used this quota period, requests this minute) as the admin shows them."""
    if usage is None:
        return 0, 0
    now = clock() if now is None else now
    used = usage.quota_used if usage.quota_window >= quota_window(key.quota_period, now).number else 0
    rate = usage.rate_used if usage.rate_window >= minute_window(now).number else 0
    return used, rate
