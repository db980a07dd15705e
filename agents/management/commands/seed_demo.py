"""Create the demo data, idempotently: `python manage.py seed_demo [--scale N]`.

Other apps add their own demo rows through `demo_seeders` (a list of callables in each app's `demo.py`),
so this command stays the one entry point.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from agents import services
from agents.models import Agent
from project.actors import SYSTEM
from workspaces import services as workspace_services
from workspaces.models import PlatformAccount, Workspace
from workspaces.services.platform_accounts import platform_account_create

DEMO_PASSWORD = "keyward-demo-2026"
DEMO_SECOND_ACCOUNT = "Globex (second emulated account)"
DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = "Create demo workspaces, agents and logins (idempotent). --scale N multiplies the rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", type=int, default=1, help="multiply the demo rows (for benchmarks)")
        parser.add_argument("--quiet", action="store_true", help="print only the logins")

    def handle(self, *args: Any, scale: int = 1, quiet: bool = False, **options: Any) -> None:
        if scale < 1:
            self.stderr.write("--scale must be at least 1")
            raise SystemExit(2)
        logins: list[tuple[str, str, str]] = []
        with transaction.atomic():
            user_model = get_user_model()
            admin_user, created = user_model.objects.get_or_create(
                username=DEMO_ADMIN, defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"})
            if created:
                admin_user.set_password(DEMO_PASSWORD)
                admin_user.save()
            logins.append((DEMO_ADMIN, DEMO_PASSWORD, "superuser: sees every workspace"))
            workspaces, fresh = self._workspaces(scale)
            for workspace in workspaces:
                if workspace.pk in fresh:  # seeded once, ever: a restart never brings back what someone removed
                    self._agents(workspace, scale)
            context = {"workspaces": workspaces, "fresh": fresh, "scale": scale, "logins": logins,
                       "password": DEMO_PASSWORD, "stdout": self.stdout}
            for config in apps.get_app_configs():
                try:
                    module = importlib.import_module(f"{config.name}.demo")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{config.name}.demo":
                        raise
                    continue
                for seeder in getattr(module, "demo_seeders", []):
                    seeder(**context)
        if not quiet:
            self.stdout.write(f"Demo data ready: {Workspace.objects.count()} workspaces, "
                              f"{Agent.objects.count()} agents.")
        self.stdout.write("Demo logins (development only):")
        for username, password, what in logins:
            self.stdout.write(f"  {username} / {password}   ({what})")

    def _workspaces(self, scale: int) -> tuple[list[Workspace], set[int]]:
        """The demo workspaces, and the ids of those this run created (only those get the demo's objects)."""
        specs = [("Acme Voice", "acme"), ("Globex Support", "globex")]
        specs += [(f"Demo Workspace {i:04d}", f"demo-{i:04d}") for i in range(1, max(0, scale // 10) + 1)]
        result, fresh = [], set()
        for name, slug in specs:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                account = self._second_account() if slug == "globex" else None
                workspace = workspace_services.workspace_create(actor=SYSTEM, name=name, slug=slug,
                                                                description="Demo workspace created by seed_demo",
                                                                platform_account=account)
                fresh.add(workspace.pk)
            result.append(workspace)
        return result, fresh

    def _second_account(self) -> PlatformAccount | None:
        """`make run` runs a second emulated platform account (KEYWARD_DEMO_SECOND_ACCOUNT_KEY): Globex lives there,
        so the demo shows two accounts side by side. Without it (or if it does not answer) Globex shares the default
        account."""
        key = os.environ.get("KEYWARD_DEMO_SECOND_ACCOUNT_KEY", "")
        if not key:
            return None
        existing = PlatformAccount.objects.filter(name=DEMO_SECOND_ACCOUNT).first()
        if existing is not None:
            return existing
        try:
            return platform_account_create(actor=SYSTEM, name=DEMO_SECOND_ACCOUNT,
                                           base_url=settings.PLATFORM_API_URL, api_key=key)
        except ValidationError as exc:
            self.stdout.write(f"The second demo platform account was not added ({' '.join(exc.messages)}); "
                              "Globex shares the default account.")
            return None

    def _agents(self, workspace: Workspace, scale: int) -> None:
        base = [
            ("Support line", dict(auth_mode=Agent.AuthMode.SIGNED, first_message="Hello, how can I help?")),
            ("Website concierge", dict(auth_mode=Agent.AuthMode.ALLOWLIST,
                                       allowlist=[f"www.{workspace.slug}.example", f"app.{workspace.slug}.example",
                                                  "localhost:3000"])),
            ("Public demo", dict(auth_mode=Agent.AuthMode.PUBLIC, max_duration_seconds=300)),
        ]
        existing = set(Agent.objects.filter(workspace=workspace).values_list("name", flat=True))
        for copy in range(scale):
            for name, fields in base:
                full_name = name if copy == 0 else f"{name} {copy:05d}"
                if full_name not in existing:
                    services.agent_create(actor=SYSTEM, workspace=workspace, name=full_name, **fields)
