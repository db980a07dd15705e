from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from agents.services import agent_credential_webhooks_push
from project.actors import SYSTEM


class Command(BaseCommand):
    help = ("Push the credential-webhook settings of every agent Keyward manages them for to the platform again "
            "(after BROKER_WEBHOOK_KEY or BROKER_PUBLIC_URL changed). Enqueues the agents' sync jobs.")

    def handle(self, *args: Any, **options: Any) -> None:
        count = agent_credential_webhooks_push(actor=SYSTEM)
        self.stdout.write(f"{count} agent(s) queued for sync.")
