from __future__ import annotations

from celery import shared_task

from project.sync import services


@shared_task(name="sync.drain_outbox", ignore_result=True)
def drain_outbox(max_jobs: int = 1000) -> int:
    """Wake-up call: drain due outbox rows. Idempotent; safe to run on many workers at once."""
    return services.outbox_drain(max_jobs=max_jobs)
