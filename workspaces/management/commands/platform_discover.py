"""platform_discover: list what a platform account holds that Keyward does not manage yet, and adopt it.

    python manage.py platform_discover --account NAME [--workspace SLUG] [--adopt all|none] [--dry-run]

Discovery reads every list of the account (paged; each agent once) and records what it saw; ``--adopt all``
then adopts every unmanaged object into the workspace (``--workspace``, or the account's only workspace).
``--dry-run`` prints the same report and what would be adopted where, and writes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from project.actors import SYSTEM
from project.sync import registry
from project.sync.models import DiscoveryRun, Observation
from project.sync.services.discovery import adopt, discovery_run, discovery_start, open_run
from workspaces.models import PlatformAccount, Workspace


class _DryRun(Exception):
    """Raised at the end of a dry run to roll everything back."""


class Command(BaseCommand):
    help = "Discover what a platform account holds that Keyward does not manage yet; optionally adopt it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--account", required=True, help="the platform account's name in Keyward")
        parser.add_argument("--workspace", help="the workspace (slug) to adopt into; default: the account's only one")
        parser.add_argument("--adopt", choices=["all", "none"], default="none",
                            help="adopt every object Keyward does not manage yet (default: none)")
        parser.add_argument("--dry-run", action="store_true", help="report, adopt nothing, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        account = PlatformAccount.objects.filter(name=options["account"]).first()
        if account is None:
            names = ", ".join(PlatformAccount.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"There is no platform account named “{options['account']}” (accounts: {names}).")
        workspace = self._workspace(account, options["workspace"], required=options["adopt"] == "all")
        if open_run(account.pk) is not None:
            raise CommandError(f"A discovery of “{account.name}” is already running; try again when it has finished.")
        try:
            with transaction.atomic():
                self._discover(account)
                if options["adopt"] == "all":
                    self._adopt(account, workspace, dry_run=options["dry_run"])
                if options["dry_run"]:
                    raise _DryRun
        except _DryRun:
            self.stdout.write("Dry run: nothing was written.")

    def _workspace(self, account: PlatformAccount, slug: str | None, *, required: bool) -> Workspace | None:
        bound = list(account.workspaces.order_by("slug"))
        if slug:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                raise CommandError(f"There is no workspace “{slug}”.")
            if workspace.platform_account_id != account.pk:
                raise CommandError(f"Workspace “{slug}” is bound to platform account "
                                   f"“{workspace.platform_account}”, not “{account.name}”: objects of this account "
                                   "cannot be adopted into it.")
            return workspace
        if len(bound) == 1:
            return bound[0]
        if required:
            choices = ", ".join(w.slug for w in bound) or "none: bind one to the account first"
            raise CommandError(f"Choose the workspace to adopt into with --workspace (bound to “{account.name}”: "
                               f"{choices}).")
        return None

    def _discover(self, account: PlatformAccount) -> DiscoveryRun:
        self.stdout.write(f"Discovering platform account “{account.name}” ({account.base_url}) …")
        shown: dict[str, int] = {}
        last = [0.0]

        def progress(run: DiscoveryRun) -> None:
            now = time.monotonic()
            if now - last[0] < 1.0 and run.state == DiscoveryRun.State.RUNNING:
                return
            last[0] = now
            changed = {k: v for k, v in run.counts.items() if shown.get(k) != v}
            if changed:
                shown.update(changed)
                self.stdout.write("  read so far: " + ", ".join(f"{k} {v}" for k, v in run.counts.items()))

        run = discovery_start(actor=SYSTEM, account_id=account.pk, enqueue=False)
        run = discovery_run(run=run, on_progress=progress)
        run.refresh_from_db()
        for discoverable in registry.discoverables():
            read = run.counts.get(discoverable.kind, 0)
            free = run.unmanaged.get(discoverable.kind, 0)
            flagged = Observation.objects.filter(account_id=account.pk, kind=discoverable.kind).exclude(
                findings=[]).count()
            line = f"  {discoverable.title}: {read} on the platform, {free} not managed by Keyward"
            if flagged:
                line += f", {flagged} breaking a guardrail"
            self.stdout.write(line)
        if run.gone_count:
            self.stdout.write(f"Deleted on the platform since the last discovery: {run.gone_count} "
                              f"({', '.join(run.gone[:10])}{', …' if run.gone_count > 10 else ''})")
        self.stdout.write(f"Platform calls: {run.calls}")
        if run.error:
            self.stderr.write(f"Some lists could not be read:\n{run.error}")
        return run

    def _adopt(self, account: PlatformAccount, workspace: Workspace | None, *, dry_run: bool) -> None:
        assert workspace is not None
        verb = "Would adopt" if dry_run else "Adopting"
        self.stdout.write(f"{verb} into workspace “{workspace.name}” …")
        try:
            report = adopt(actor=SYSTEM, account_id=account.pk, workspace_id=workspace.pk)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(report.summary())
        for label, reason in report.refused[:50]:
            self.stdout.write(f"  refused: {label}: {reason}")
