"""Rate limit and session quota: one conditional UPDATE each, so they hold exactly under concurrency.

The store is the database row ``BrokerKeyUsage`` (one per key). Each check is a single statement::

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


def quota_reserve(key: BrokerKey, now: float, ip: str | None) -> tuple[bool, Window]:
    """Take one session from the key's quota for the current period: (granted, the period)."""
    window = quota_window(key.quota_period, now)
    w = window.number
    granted = rows.execute(
        f"UPDATE {_table()} SET quota_used = CASE WHEN quota_window >= %s THEN quota_used + 1 ELSE 1 END, "  # noqa: S608 - names from model metadata
        "quota_window = CASE WHEN quota_window >= %s THEN quota_window ELSE %s END, "
        "sessions_total = sessions_total + 1, last_used_at = %s, last_ip = %s "
        "WHERE key_id = %s AND (quota_window < %s OR quota_used < %s)",
        [w, w, w, _prep("last_used_at", timezone.now()), _prep("last_ip", ip), key.pk, w, key.session_quota])
    return granted == 1, window


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
