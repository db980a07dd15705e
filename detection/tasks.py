"""Celery entry points of detection: thin, periodic, idempotent. The services do the work."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from detection.concurrency import concurrency_watch
from detection.usage import usage_watch
from project.platform import errors

# One pass reads a few days of usage and walks every key with a quota: allow it longer than a drain batch.
WATCH_SOFT_LIMIT = 900
WATCH_HARD_LIMIT = 960


@shared_task(name="detection.watch_usage", ignore_result=True,
             autoretry_for=(errors.RateLimited, errors.Unavailable), retry_backoff=30, retry_jitter=True,
             max_retries=3, soft_time_limit=WATCH_SOFT_LIMIT, time_limit=WATCH_HARD_LIMIT)
def watch_usage() -> dict[str, Any]:
    """Usage per key and hour (and keys' daily totals from the same answer), the usage rules, the credit guard."""
    return usage_watch()


@shared_task(name="detection.watch_concurrency", ignore_result=True, soft_time_limit=60, time_limit=75)
def watch_concurrency() -> dict[str, int]:
    """One sample of the platform's concurrency headers and the pinned-at-maximum rule. Not retried: the next
    sample is a minute away."""
    return concurrency_watch()
