from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from broker.services import broker_sessions_prune


class Command(BaseCommand):
    help = ("Delete conversation/end-user bindings of brokered sessions that expired more than --days ago "
            "(run daily, e.g. from cron or the beat schedule).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=1.0)

    def handle(self, *args: Any, **options: Any) -> None:
        count = broker_sessions_prune(actor=None, older_than=timedelta(days=options["days"]))
        self.stdout.write(f"{count} expired session binding(s) deleted.")
