"""Celery entry points of the API-key part: thin, periodic, idempotent. The services do the work."""

from __future__ import annotations

from celery import shared_task

from keys import services
from project.platform import errors

# A sweep walks every key due for expiry, retirement or an alert: allow it longer than a drain batch.
SWEEP_SOFT_LIMIT = 900
SWEEP_HARD_LIMIT = 960


@shared_task(name="keys.ingest_usage", ignore_result=True, autoretry_for=(errors.RateLimited, errors.Unavailable),
             retry_backoff=30, retry_jitter=True, max_retries=3, soft_time_limit=SWEEP_SOFT_LIMIT,
             time_limit=SWEEP_HARD_LIMIT)
def ingest_usage() -> dict[str, int]:
    """Store the platform's usage per key and day; moves each key's "last used" forward."""
    return services.api_key_usage_ingest()


@shared_task(name="keys.sweep", ignore_result=True, soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT)
def sweep() -> dict[str, int]:
    """Expire keys, end rotation overlaps of keys gone quiet (alert for the others), raise hygiene alerts."""
    return services.api_keys_sweep()
