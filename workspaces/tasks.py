"""Celery entry points of the tenancy app: thin and periodic; the services do the work."""

from __future__ import annotations

from celery import shared_task

from workspaces.services.platform_accounts import platform_accounts_sweep


@shared_task(name="workspaces.sweep_platform_accounts", ignore_result=True, soft_time_limit=300, time_limit=330)
def sweep_platform_accounts() -> dict[str, int]:
    """Revoke previous account keys gone quiet after their overlap; raise rotation-due alerts."""
    return platform_accounts_sweep()
