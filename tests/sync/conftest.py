"""Fixtures for the sync tests: the emulator on loopback, a queue of our own, worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sync.workers import EMULATOR_KEY, RABBITMQ_URL, Workers, purge_broker, rabbitmq_problem


@pytest.fixture(autouse=True)
def _sync_test_kinds(sync_test_kinds: frozenset[str]) -> None:
    """The sync tests enqueue jobs of their own kinds (test_thing, claim_test, recon_test)."""


@pytest.fixture
def loopback_emulator(transactional_db: None) -> Iterator[Any]:
    """An emulator served on loopback for worker processes; yields (emulator, url). The default platform account
    (which the test database's workspaces are bound to) points at it: workers read its URL and key there."""
    from django.db.models import F

    from project.platform.emulator import Emulator
    from workspaces.models import PlatformAccount
    from workspaces.services.platform_accounts import default_account

    emulator = Emulator(api_key=EMULATOR_KEY)
    server = emulator.serve(host="127.0.0.1", port=0)
    PlatformAccount.objects.filter(pk=default_account().pk).update(
        base_url=server.url, api_key=EMULATOR_KEY, key_version=F("key_version") + 1)
    try:
        yield emulator, server.url
    finally:
        server.shutdown()


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A queue of our own, so these tests never take (or leave) messages on anybody else's queue. Name it
    before ``workers`` in a test's arguments: the queue is deleted after the workers stopped."""
    name = f"keyward-sync-tests-{uuid.uuid4().hex[:8]}"
    yield name
    if rabbitmq_problem(RABBITMQ_URL) is None:
        purge_broker(RABBITMQ_URL, name)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
