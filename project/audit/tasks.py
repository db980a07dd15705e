"""Celery entry points of the audit trail: thin wake-up calls."""

from __future__ import annotations

from celery import shared_task

from project.audit import stream


@shared_task(name="audit.stream_sweep", ignore_result=True)
def stream_sweep() -> bool:
    """Periodic (AUDIT_STREAM_SWEEP_SECONDS): queue the audit stream's job when events wait and none is queued."""
    return stream.sweep()
