"""Fixtures of the notification tests: a real HTTP receiver on loopback, retries due at once (no backoff wait), and
helpers to make channels and rules through the services."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import pytest

from project.actors import SYSTEM
from project.alerts import services
from project.alerts.models import NotificationChannel
from project.sync.services import outbox_drain
from tests.receivers import HttpReceiver, http_receiver

PUBLIC_URL = "https://keyward.example.test"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    yield from http_receiver()


@pytest.fixture(autouse=True)
def _notify_settings(settings: Any, receiver: HttpReceiver) -> None:
    settings.PUBLIC_URL = PUBLIC_URL
    settings.PAGERDUTY_EVENTS_URL = f"{receiver.url}/v2/enqueue"
    settings.SYNC_BACKOFF_BASE_SECONDS = 0  # a failed delivery is due again at once: retries without waiting
    settings.SYNC_MAX_ATTEMPTS = 3


def deliver() -> int:
    """The worker's drain, as the periodic task runs it."""
    return outbox_drain(time_budget=30)


def channel(workspace: Any, kind: str, name: str | None = None, **values: Any) -> tuple[NotificationChannel, str]:
    return services.notification_channel_save(actor=SYSTEM, workspace=workspace, name=name or kind, kind=kind,
                                              **values)


def rule(workspace: Any, name: str, channels: list[NotificationChannel], *, severities: tuple[str, ...] = (),
         kinds: tuple[str, ...] = (), is_default: bool = False) -> Any:
    return services.notification_rule_save(actor=SYSTEM, workspace=workspace, name=name, severities=list(severities),
                                           kinds=list(kinds), channels=channels, is_default=is_default)


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """Verification written from the Standard Webhooks specification (independent of project.webhooks): the key is
    the base64 after "whsec_"; the signed content is "{id}.{timestamp}.{payload}"; webhook-signature is a
    space-separated list of "v1,<base64 HMAC-SHA256>"; the timestamp must be recent."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{msg_id}.{timestamp}.{body.decode('utf-8')}".encode()
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers["webhook-signature"].split(" ") if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, sig) for sig in given)
