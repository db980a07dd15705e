"""Fixtures of the detection tests: keys made directly as rows (rules need no platform), fixed usage series,
people in the roles that matter here, and the API-key fixtures (account, clock, emulator) for platform paths."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from detection.models import DetectionPolicy
from keys.models import ApiKey, KeyUsageDaily, KeyUsageHourly
from tests.factories import ServiceAccountFactory, UserFactory, grant
from tests.keys.apikey_fixtures import Clock, account, clock, globex_account  # noqa: F401  (fixtures)

_serial = itertools.count(1)

#: A fixed "now" for rule tests: Wednesday 2026-11-18, 12:00 UTC (winter: Berlin is UTC+1).
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def security_admin(workspace: Any) -> Any:
    user = UserFactory(username="secadmin")
    grant(user, "Security admin", workspace)
    return user


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """timezone.now() pinned to NOW (time moved by patching, never slept through)."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def make_key(workspace: Any, env_name: str = "prod", *, name: str | None = None, service_account: Any = None,
             activated: datetime | None = None, **fields: Any) -> ApiKey:
    """An active key as a row (no platform): digest of a made-up secret, activated 60 days before NOW."""
    n = next(_serial)
    service_account = service_account or ServiceAccountFactory(workspace=workspace, name=f"svc-{n}")
    activated = activated or NOW - timedelta(days=60)
    values: dict[str, Any] = {"scopes": ["text_to_speech"], "allowed_ips": ["10.0.0.0/8"], "credit_quota": None}
    values.update(fields)
    key = ApiKey.objects.create(
        workspace=workspace, service_account=service_account, environment=workspace.environments.get(name=env_name),
        name=name or f"key-{n}", state=ApiKey.State.ACTIVE, hint=f"{n:04d}"[-4:],
        digest=hashlib.sha256(f"secret-{n}".encode()).hexdigest(), remote_key_id=f"remote-{n}",
        activated_at=activated, **values)
    ApiKey.objects.filter(pk=key.pk).update(created_at=activated)
    key.refresh_from_db()
    return key


def hourly(key: ApiKey, hour: datetime, credits: float, requests: int = 1) -> KeyUsageHourly:
    return KeyUsageHourly.objects.create(key=key, hour=hour.replace(minute=0, second=0, microsecond=0),
                                         credits=Decimal(str(credits)), requests=requests)


def daily(key: ApiKey, day: date, credits: float, requests: int = 1) -> KeyUsageDaily:
    return KeyUsageDaily.objects.create(key=key, day=day, credits=Decimal(str(credits)), requests=requests)


def baseline(key: ApiKey, before: date, credits_per_day: float, days: int = 7) -> None:
    """The same spend on each of the `days` whole days before `before`."""
    for n in range(1, days + 1):
        daily(key, before - timedelta(days=n), credits_per_day, requests=10)


def policy(workspace: Any, **fields: Any) -> DetectionPolicy:
    obj, _ = DetectionPolicy.objects.get_or_create(workspace=workspace)
    for name, value in fields.items():
        setattr(obj, name, value)
    obj.full_clean()
    obj.save()
    return obj


__all__ = ["NOW", "Clock", "baseline", "daily", "hourly", "make_key", "policy"]
