"""Fixtures of the detection tests: time pinned to NOW for the rules (keys and usage are built as rows by
tests/factories.py: rules need no platform). The people and the API-key fixtures for platform paths (account,
clock, emulator) come from tests/conftest.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from tests.factories import NOW


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """timezone.now() pinned to NOW (time moved by patching, never slept through)."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW
