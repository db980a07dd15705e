"""The periodic usage watch: keys' usage ingest (one platform read: hours, day totals, "last used"), the rules
over every hour whose figures changed since they last looked, the credit guard, and the hourly retention prune."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from keys.models import KeyUsageHourly
from keys.services import api_key_usage_ingest


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete hourly rows older than DETECTION_HOURLY_RETENTION_DAYS (system housekeeping, not audited)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DETECTION_HOURLY_RETENTION_DAYS)
    deleted, _ = KeyUsageHourly.objects.filter(hour__lt=cutoff).delete()
    return deleted


def usage_watch(*, client: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The periodic pass: the usage ingest (hourly and daily, one platform call, whose answer's concurrency
    headers are sampled too), the usage rules over the hours awaiting them (this ingest's, and any a keys sweep
    stored since the last pass), the credit guard over every quota and budget, keys the platform disabled on its
    own (``platform_disabled_keys_check``: a critical alert and an incident each), then the hourly retention prune.
    Raises the platform's errors from the ingest (the task retries)."""
    from detection.concurrency import concurrency_sample_from
    from detection.guard import credit_guard_run
    from detection.rules import rules_evaluate_awaiting
    from project.platform.client import accounts_with_workspaces, client_for_account

    now = now or timezone.now()
    ingested = api_key_usage_ingest(client=client, now=now)
    for account_id in ([None] if client is not None else list(accounts_with_workspaces())):
        concurrency_sample_from(client or client_for_account(account_id), now=now, account_id=account_id)
    ingested.pop("changed")
    from detection.platform_keys import platform_disabled_keys_check

    disabled = platform_disabled_keys_check(client=client)
    rules = rules_evaluate_awaiting(now=now)
    guard = credit_guard_run(now=now)
    return {**ingested, **{f"rules_{k}": v for k, v in rules.items()}, **{f"guard_{k}": v for k, v in guard.items()},
            **{f"platform_{k}": v for k, v in disabled.items()}, "pruned": usage_prune(now=now)}
