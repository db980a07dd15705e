"""Celery entry points for the vault: thin, no arguments that could carry a token."""

from __future__ import annotations

from celery import shared_task

from project.actors import SYSTEM
from secrets_app import services

# One sweep refreshes every due credential, one HTTP call each (10 s timeout): allow it longer than a drain.
SWEEP_SOFT_LIMIT = 600
SWEEP_HARD_LIMIT = 660


@shared_task(name="secrets_app.refresh_credentials", ignore_result=True, soft_time_limit=SWEEP_SOFT_LIMIT,
             time_limit=SWEEP_HARD_LIMIT)
def refresh_credentials() -> dict[str, int]:
    """Periodic: refresh end users' tokens expiring within VAULT_REFRESH_WINDOW_SECONDS."""
    return services.credentials_refresh_due(actor=SYSTEM)
