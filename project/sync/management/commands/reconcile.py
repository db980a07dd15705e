"""``manage.py reconcile [--kind agent]``: compare local objects with the platform's and report drift."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.actors import SYSTEM
from project.sync import registry, services
from project.sync.management.commands._progress import printer
from project.sync.models import Drift, ReconcileRun


class Command(BaseCommand):
    help = "Compare every local object with the platform's copy and replace the drift report, with progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", action="append", dest="kinds", metavar="KIND",
                            help=f"only this kind (repeatable); known: {', '.join(registry.reconciler_kinds())}")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = services.reconcile_start(actor=SYSTEM, kinds=options["kinds"], enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Reconcile #{run.pk}: {', '.join(run.kinds)}")
        run = services.reconcile_run(run=run, on_progress=printer(self.stdout))
        for kind in run.kinds:
            rows = Drift.objects.filter(kind=kind)
            counts = {label: rows.filter(problem=value).count() for value, label in Drift.Problem.choices}
            detail = ", ".join(f"{label.lower()}: {n}" for label, n in counts.items())
            self.stdout.write(f"{kind}: {detail}")
        if run.state != ReconcileRun.State.DONE:
            raise CommandError(f"reconcile #{run.pk} {run.state}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"Done: {run.drift_found} drift item(s); see Platform sync › Drift."))
