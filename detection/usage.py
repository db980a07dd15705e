"""Usage per key and hour from the platform: one read feeds detection's hourly table and keys' daily totals.

keys.services.api_key_usage_ingest already reads the platform's usage in hourly buckets but keeps only day
totals and "last used". The rules need the hours, so this ingest makes the one read, stores the hours, and hands
the very same answer to keys' ingest (through `_Answered`), so the platform is asked once per run, not twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from detection.models import KeyUsageHourly
from keys.models import ApiKey
from keys.services import api_key_usage_ingest
from project.platform import errors

logger = logging.getLogger(__name__)

HOUR = 3600
BATCH = 1000  # digests or key ids per IN (...): well under SQLite's and PostgreSQL's parameter limits


def usage_window(now: datetime) -> tuple[datetime, datetime]:
    """The window keys' daily ingest reads (midnight UTC API_KEY_USAGE_LOOKBACK_DAYS days ago until now): reading
    exactly that lets one answer serve both ingests."""
    start = datetime.combine((now - timedelta(days=settings.API_KEY_USAGE_LOOKBACK_DAYS)).astimezone(UTC).date(),
                             time.min, tzinfo=UTC)
    return start, now


class _Answered:
    """A stand-in client for keys' ingest: answers the usage question already asked, forwards anything else."""

    def __init__(self, client: Any, data: dict[str, Any], question: tuple[int, int, int]) -> None:
        self._client, self._data, self._question = client, data, question

    def usage_by_api_key(self, *, start_ms: int, end_ms: int, interval_seconds: int = 86400) -> dict[str, Any]:
        if (start_ms, end_ms, interval_seconds) == self._question:
            return self._data
        return self._client.usage_by_api_key(start_ms=start_ms, end_ms=end_ms, interval_seconds=interval_seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _index(columns: list[str], name: str) -> int | None:
    return columns.index(name) if name in columns else None


def parse_hours(data: dict[str, Any]) -> dict[tuple[str, datetime], list[Any]]:
    """{(hashed key, start of UTC hour): [credits, requests]} from the platform's tabular answer, columns read by
    name (time in ms, hashed_xi_api_key, credits, requests); finer buckets are summed into their hour."""
    columns = list(data.get("columns") or [])
    i_time, i_hash = _index(columns, "time"), _index(columns, "hashed_xi_api_key")
    i_credits, i_requests = _index(columns, "credits"), _index(columns, "requests")
    if i_hash is None or i_time is None:
        raise errors.PlatformError("usage answer has no time or hashed_xi_api_key column", code="invalid_response")
    hours: dict[tuple[str, datetime], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for row in data.get("rows") or []:
        hashed = str(row[i_hash] or "")
        if not hashed:
            continue
        seconds = int(row[i_time]) // 1000
        began = datetime.fromtimestamp(seconds - seconds % HOUR, tz=UTC)
        totals = hours[(hashed, began)]
        totals[0] += Decimal(str(row[i_credits] or 0)) if i_credits is not None else Decimal(0)
        totals[1] += int(row[i_requests] or 0) if i_requests is not None else 0
    return hours


def usage_ingest(*, client: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """Read the platform's usage per key in hourly buckets for keys' lookback window (one call), store each key's
    hours with traffic (rows replaced when the platform revises them), then run keys' daily ingest on the same
    answer (daily totals and "last used"). Platform data, not a change anyone made: not audited.

    Returns counts and ``changed``: the ids of the hourly rows created or changed, which the rules evaluate.
    Raises the platform's errors. The concurrency headers of the answer are sampled too.
    """
    from detection.concurrency import concurrency_sample_from
    from project.platform.client import get_client

    client = client or get_client()
    now = now or timezone.now()
    start, end = usage_window(now)
    question = (int(start.timestamp() * 1000), int(end.timestamp() * 1000), HOUR)
    data = client.usage_by_api_key(start_ms=question[0], end_ms=question[1], interval_seconds=HOUR)
    concurrency_sample_from(client, now=now)
    hours = parse_hours(data)
    hashes = sorted({h for h, _ in hours})
    keys: dict[str, int] = {}
    for i in range(0, len(hashes), BATCH):
        # exclude(digest="") lets PostgreSQL use the partial unique index on digest instead of a table scan.
        keys.update(ApiKey.objects.filter(digest__in=hashes[i:i + BATCH]).exclude(digest="").order_by()
                    .values_list("digest", "pk"))
    wanted = {(keys[h], hour): totals for (h, hour), totals in hours.items() if h in keys}
    key_ids = sorted({k for k, _ in wanted})
    existing: dict[tuple[int, datetime], KeyUsageHourly] = {}
    for i in range(0, len(key_ids), BATCH):
        existing.update(((u.key_id, u.hour), u) for u in KeyUsageHourly.objects.filter(
            key_id__in=key_ids[i:i + BATCH], hour__gte=start))
    new, changed = [], []
    for (key_id, hour), (credits, requests) in wanted.items():
        row = existing.get((key_id, hour))
        if row is None:
            new.append(KeyUsageHourly(key_id=key_id, hour=hour, credits=credits, requests=requests))
        elif (row.credits, row.requests) != (credits, requests):
            row.credits, row.requests = credits, requests
            changed.append(row)
    with transaction.atomic():
        created = KeyUsageHourly.objects.bulk_create(new, batch_size=BATCH)
        KeyUsageHourly.objects.bulk_update(changed, ["credits", "requests"], batch_size=BATCH)
    ids = [row.pk for row in changed] + [row.pk for row in created if row.pk is not None]
    if any(row.pk is None for row in created):  # a backend that returns no ids from a bulk insert: take them all
        for i in range(0, len(key_ids), BATCH):
            ids += KeyUsageHourly.objects.filter(key_id__in=key_ids[i:i + BATCH], hour__gte=start).values_list(
                "pk", flat=True)
    daily = api_key_usage_ingest(client=_Answered(client, data, question), now=now)
    return {"hours": len(new) + len(changed), "keys": len(key_ids), "unknown_hashes": len(set(hashes) - set(keys)),
            "days": daily["rows"], "changed": ids}


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete hourly rows older than DETECTION_HOURLY_RETENTION_DAYS (system housekeeping, not audited)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DETECTION_HOURLY_RETENTION_DAYS)
    deleted, _ = KeyUsageHourly.objects.filter(hour__lt=cutoff).delete()
    return deleted


def usage_watch(*, client: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The periodic pass: ingest (hourly and daily, one platform call), the usage rules over the hours that
    changed, the credit guard over every quota and budget, then the hourly retention prune."""
    from detection.guard import credit_guard_run
    from detection.rules import rules_evaluate

    now = now or timezone.now()
    ingested = usage_ingest(client=client, now=now)
    changed = ingested.pop("changed")
    rules = rules_evaluate(now=now, row_ids=changed)
    guard = credit_guard_run(now=now)
    return {**ingested, **{f"rules_{k}": v for k, v in rules.items()}, **{f"guard_{k}": v for k, v in guard.items()},
            "pruned": usage_prune(now=now)}
