"""Celery entry points of the API-key part: thin, periodic, idempotent. The services do the work."""

from __future__ import annotations

from celery import shared_task

from keys import services

# A sweep walks every key due for expiry, retirement or an alert: allow it longer than a drain batch.
SWEEP_SOFT_LIMIT = 900
SWEEP_HARD_LIMIT = 960


@shared_task(name="keys.sweep", ignore_result=True, soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT)
def sweep() -> dict[str, int]:
    """Expire keys, end rotation overlaps of keys gone quiet (alert for the others), raise hygiene alerts."""
    return services.api_keys_sweep()
