"""Celery entry points for the broker: thin, the work is in broker.services."""

from __future__ import annotations

from celery import shared_task

from broker.services import broker_sessions_prune
from project.actors import SYSTEM


@shared_task(name="broker.prune_sessions", ignore_result=True, soft_time_limit=600, time_limit=660)
def prune_sessions() -> int:
    """Periodic (BROKER_PRUNE_INTERVAL_SECONDS): delete bindings expired over BROKER_SESSION_RETENTION_HOURS ago."""
    return broker_sessions_prune(actor=SYSTEM)
