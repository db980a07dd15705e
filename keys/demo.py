"""Demo API keys for seed_demo: one per demo service account in every environment of the first two demo
workspaces, with budgets and a key policy, through the services and idempotently.

Keys are issued on the platform (the emulator under `make run`), so the platform must answer; otherwise the
seeder says so and issues nothing. Their secrets are not kept anywhere, so nothing can print them later: to see
a secret, issue or rotate a key in the admin.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from keys import services
from keys.models import ALL_SCOPES, ApiKey, KeyPolicy
from project.actors import SYSTEM
from project.platform import errors
from workspaces.models import ServiceAccount, Workspace
from workspaces.services import service_account_ensure_remote

#: service account -> (description, scopes, quota per environment name, allowed IPs in production)
DEMO_KEYS: dict[str, tuple[str, Any, dict[str, int], list[str]]] = {
    "support-backend": ("Mints sessions for the support web app", ["convai_read", "convai_write"],
                        {"dev": 5_000, "staging": 20_000, "prod": 200_000}, ["203.0.113.0/24", "2001:db8:1::/48"]),
    # Deliberately sloppy in production (every scope, any network) so the list's flags have something to show.
    "ci-deployer": ("Deploys agents from CI", ["convai_read", "convai_write", "workspace_read"],
                    {"dev": 2_000, "staging": 5_000, "prod": 20_000}, []),
}
DEMO_BUDGETS = {"dev": 20_000, "staging": 50_000, "prod": 500_000}
OTHER_ENVIRONMENT_QUOTA = 1_000


def _service_account(workspace: Workspace, name: str, description: str) -> ServiceAccount:
    account = ServiceAccount.objects.filter(workspace=workspace, name=name).first()
    if account is not None:
        return account
    from workspaces import services as roles_services

    return roles_services.service_account_create(actor=SYSTEM, workspace=workspace, name=name, description=description)


def seed_api_keys(*, workspaces: list[Workspace], stdout: Any = None, client: Any = None, **context: Any) -> None:
    from project.platform.client import client_for_workspace

    try:
        for workspace in workspaces[:2]:
            (client or client_for_workspace(workspace.pk)).list_service_accounts()
    except errors.PlatformError as exc:
        if stdout is not None:
            stdout.write(f"Demo API keys skipped: the platform did not answer ({exc.code}). Start the emulator "
                         "(make emulator) and run seed_demo again.")
        return
    issued = 0
    for workspace in workspaces[:2]:
        if not KeyPolicy.objects.filter(workspace=workspace).exists():
            services.key_policy_save(actor=SYSTEM, workspace=workspace)
        environments = list(workspace.environments.order_by("name"))
        budgets = {env.pk: DEMO_BUDGETS[env.name] for env in environments
                   if env.name in DEMO_BUDGETS and env.credit_budget is None}
        if budgets:
            services.environment_budgets_set(actor=SYSTEM, budgets=budgets)
        for name, (description, scopes, quotas, prod_ips) in DEMO_KEYS.items():
            account = _service_account(workspace, name, description)
            if not account.is_active:
                continue
            service_account_ensure_remote(actor=SYSTEM, service_account=account,
                                          client=client or client_for_workspace(workspace.pk))
            for env in environments:
                key_name = f"{name} {env.name}"
                # Ever issued, whatever it became: a restart never re-issues a key someone revoked.
                if ApiKey.objects.filter(service_account=account, environment=env, name=key_name).exists():
                    continue
                sloppy = env.is_production and not prod_ips
                try:
                    services.api_key_issue(
                        actor=SYSTEM, service_account=account, environment=env, name=key_name,
                        scopes=ALL_SCOPES if sloppy else scopes,
                        credit_quota=quotas.get(env.name, OTHER_ENVIRONMENT_QUOTA),
                        allowed_ips=prod_ips if env.is_production else [], client=client)
                except ValidationError as exc:  # a budget or cap someone set differently: say so, go on
                    if stdout is not None:
                        stdout.write(f"Demo key {key_name} in {workspace} not issued: {' '.join(exc.messages)}")
                    continue
                issued += 1  # the secret is dropped here, unseen: only its hint and digest remain
    if stdout is not None and issued:
        stdout.write(f"Demo API keys: {issued} issued. Their secrets were not kept; issue or rotate a key in the "
                     "admin to see one.")


DEMO_USAGE_DAYS = 30


def seed_usage(*, workspaces: list[Workspace], stdout: Any = None, now: Any = None, **context: Any) -> None:
    """30 days of hourly usage for each live demo key that has none yet, so the dashboard's charts and the keys'
    "last used" show something on a fresh `make run`: a working-hours curve with day-to-day noise, production
    busiest, deterministic per key. Written as already seen by the detection rules (demo figures raise no
    alerts), with the matching day totals. The usage ingest later replaces the hours it re-reads from the
    platform, as it would real figures."""
    import random
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from keys.models import KeyUsageDaily, KeyUsageHourly

    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    keys = (ApiKey.objects.filter(workspace__in=workspaces[:2], state__in=ApiKey.LIVE_STATES)
            .exclude(usage_hours__isnull=False).select_related("environment"))
    seeded = 0
    for key in keys:
        rng = random.Random(key.pk)
        scale = {"prod": 40.0, "staging": 6.0}.get(key.environment.name, 1.5)
        hours, days = [], {}
        for h in range(DEMO_USAGE_DAYS * 24, 0, -1):
            hour = now - timedelta(hours=h)
            busy = 1.0 if 8 <= hour.hour < 19 and hour.weekday() < 5 else 0.15
            credits = Decimal(str(round(scale * busy * rng.uniform(0.5, 1.5), 3)))
            requests = max(1, int(float(credits) * rng.uniform(2, 4)))
            hours.append(KeyUsageHourly(key=key, hour=hour, credits=credits, requests=requests,
                                        awaiting_rules=False))
            total = days.setdefault(hour.date(), [Decimal(0), 0])
            total[0] += credits
            total[1] += requests
        KeyUsageHourly.objects.bulk_create(hours, batch_size=1000)
        KeyUsageDaily.objects.bulk_create([KeyUsageDaily(key=key, day=day, credits=c, requests=r)
                                           for day, (c, r) in days.items()], ignore_conflicts=True)
        ApiKey.objects.filter(pk=key.pk, last_used_at__isnull=True).update(last_used_at=hours[-1].hour)
        seeded += 1
    if seeded:
        from keys.services.burn import usage_burn_rebuild

        usage_burn_rebuild()  # the dashboard's burn aggregates, from the day rows written above
    if stdout is not None and seeded:
        stdout.write(f"Demo usage: {DEMO_USAGE_DAYS} days of hourly figures for {seeded} keys.")


demo_seeders = [seed_api_keys, seed_usage]
