"""``manage.py resync --kind agent``: queue a push of the local state of every object of a kind."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from project.actors import SYSTEM
from project.sync import registry, services
from project.sync.management.commands._progress import printer
from project.sync.models import ReconcileRun


class Command(BaseCommand):
    help = "Queue an upsert job for every object of a kind (the workers then push them), with progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kind", required=True, help=f"known: {', '.join(registry.resync_kinds())}")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = services.resync_start(actor=SYSTEM, kind=options["kind"], enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Re-sync #{run.pk}: every {options['kind']}")
        run = services.resync_run(run=run, on_progress=printer(self.stdout))
        if run.state != ReconcileRun.State.DONE:
            raise CommandError(f"re-sync #{run.pk} {run.state}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"Done: {run.jobs_enqueued} job(s) queued; the workers push them."))
