"""Usage per key and day from the platform, and the periodic sweep."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from keys.models import ApiKey, KeyUsageDaily
from keys.services.common import DIGEST_BATCH
from keys.services.lifecycle import api_key_expire, api_key_raise_hygiene_alerts, api_key_retire
from project.actors import SYSTEM
from project.platform import errors

logger = logging.getLogger(__name__)


# --- usage ---------------------------------------------------------------------------------------------------------
def _column(columns: list[str], name: str, default: int | None = None) -> int | None:
    return columns.index(name) if name in columns else default


def api_key_usage_ingest(*, client: Any = None, now: datetime | None = None) -> dict[str, int]:
    """Read the platform's usage per key (grouped by hashed_xi_api_key, matched to the keys' digests) for the
    last API_KEY_USAGE_LOOKBACK_DAYS days in API_KEY_USAGE_BUCKET_SECONDS buckets; replace each (key, day) row
    with that day's totals and move ``last_used_at`` forward to the end of the newest bucket with traffic.

    Idempotent (re-running writes the same figures). Platform data, not anyone's change: no audit. Raises the
    platform's errors (the caller decides whether stale usage blocks it).
    """
    from project.platform.client import get_client

    client = client or get_client()
    now = now or timezone.now()
    bucket = settings.API_KEY_USAGE_BUCKET_SECONDS
    start = datetime.combine((now - timedelta(days=settings.API_KEY_USAGE_LOOKBACK_DAYS)).astimezone(UTC).date(),
                             datetime.min.time(), tzinfo=UTC)
    data = client.usage_by_api_key(start_ms=int(start.timestamp() * 1000), end_ms=int(now.timestamp() * 1000),
                                   interval_seconds=bucket)
    columns = list(data.get("columns") or [])
    i_time, i_hash = _column(columns, "time", 0), _column(columns, "hashed_xi_api_key")
    i_credits, i_requests = _column(columns, "credits"), _column(columns, "requests")
    if i_hash is None:
        raise errors.PlatformError("usage answer has no hashed_xi_api_key column", code="invalid_response")
    days: dict[tuple[str, Any], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    last_used: dict[str, datetime] = {}
    for row in data.get("rows") or []:
        hashed = str(row[i_hash] or "")
        began = datetime.fromtimestamp(int(row[i_time]) / 1000, tz=UTC)
        credits = Decimal(str(row[i_credits] or 0)) if i_credits is not None else Decimal(0)
        requests = int(row[i_requests] or 0) if i_requests is not None else 0
        totals = days[(hashed, began.date())]
        totals[0] += credits
        totals[1] += requests
        if credits > 0 or requests > 0:
            ended = min(began + timedelta(seconds=bucket), now)
            last_used[hashed] = max(last_used.get(hashed, ended), ended)
    hashes = sorted({h for h, _ in days})
    keys: dict[str, ApiKey] = {}
    for i in range(0, len(hashes), DIGEST_BATCH):
        # exclude(digest="") lets PostgreSQL use the partial unique index on digest instead of a table scan.
        keys.update((k.digest, k) for k in ApiKey.objects.filter(digest__in=hashes[i:i + DIGEST_BATCH])
                    .exclude(digest="").order_by().only("pk", "digest", "last_used_at"))
    wanted = {(keys[h].pk, day): totals for (h, day), totals in days.items() if h in keys}
    key_pks = sorted({k for k, _ in wanted})
    existing: dict[tuple[int, Any], KeyUsageDaily] = {}
    for i in range(0, len(key_pks), DIGEST_BATCH):
        existing.update(((u.key_id, u.day), u) for u in KeyUsageDaily.objects.filter(
            key_id__in=key_pks[i:i + DIGEST_BATCH], day__gte=start.date()))
    changed, new = [], []
    for (key_pk, day), (credits, requests) in wanted.items():
        row = existing.get((key_pk, day))
        if row is None:
            new.append(KeyUsageDaily(key_id=key_pk, day=day, credits=credits, requests=requests))
        elif (row.credits, row.requests) != (credits, requests):
            row.credits, row.requests, row.updated_at = credits, requests, now
            changed.append(row)
    moved = []
    for hashed, when in last_used.items():
        key = keys.get(hashed)
        if key is not None and (key.last_used_at is None or key.last_used_at < when):
            key.last_used_at = when  # only ever forward: an older window never makes a key look idle again
            moved.append(key)
    with transaction.atomic():
        KeyUsageDaily.objects.bulk_create(new, batch_size=DIGEST_BATCH)
        KeyUsageDaily.objects.bulk_update(changed, ["credits", "requests", "updated_at"], batch_size=DIGEST_BATCH)
        ApiKey.objects.bulk_update(moved, ["last_used_at"], batch_size=DIGEST_BATCH)
    return {"rows": len(new) + len(changed), "keys": len(key_pks), "unknown_hashes": len(set(hashes) - set(keys))}


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
