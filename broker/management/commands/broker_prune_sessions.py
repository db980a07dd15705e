from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from broker.services import broker_sessions_prune
from project.actors import SYSTEM


class Command(BaseCommand):
    help = ("Delete conversation/end-user bindings of brokered sessions that expired more than --days ago "
            "(default BROKER_SESSION_RETENTION_HOURS; the beat schedule runs the same prune every "
            "BROKER_PRUNE_INTERVAL_SECONDS).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] is not None and options["days"] < 0:
            raise CommandError("--days must not be negative")
        older_than = timedelta(days=options["days"]) if options["days"] is not None else None
        count = broker_sessions_prune(actor=SYSTEM, older_than=older_than)
        self.stdout.write(f"{count} expired session binding(s) deleted.")
