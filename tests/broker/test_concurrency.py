"""Quota and rate limit hold exactly under concurrency (PostgreSQL: SQLite in memory has one connection)."""

import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.test import Client

from broker import limits
from broker.models import BrokerKeyUsage
from project.audit.models import AuditEvent
from workspaces.models import Role
from workspaces.permissions import BUILTIN_ROLES

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL: run with DATABASE_URL=postgres://... (SQLite in memory "
                    "gives each thread its own empty database)")
    # A transactional test's flush also removes the built-in roles the migration made: put them back.
    for name, permissions in BUILTIN_ROLES.items():
        Role.objects.get_or_create(workspace=None, name=name,
                                   defaults={"permissions": sorted(permissions), "is_builtin": True})


def _hammer(url: str, key: str, threads: int, requests: int) -> Counter:
    results: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        client = Client()
        seen: Counter = Counter()
        try:
            start.wait(timeout=30)
            for _ in range(requests):
                response = client.post(url, data="{}", content_type="application/json",
                                       HTTP_AUTHORIZATION=f"Bearer {key}")
                seen[(response.status_code, response.json().get("error", "ok"))] += 1
        finally:
            connections.close_all()
            with lock:
                results.update(seen)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in pool)
    return results


def test_16_threads_of_250_requests_against_a_quota_of_1000_get_exactly_1000(issue, signed_agent, emulator):
    issued = issue(session_quota=1000, rate_limit_per_minute=1_000_000)
    results = _hammer(f"/api/v1/agents/{signed_agent.remote_id}/session", issued.secret, threads=16, requests=250)
    assert sum(results.values()) == 4000
    assert results[(200, "ok")] == 1000, results
    assert results[(429, "quota_exhausted")] == 3000, results
    usage = BrokerKeyUsage.objects.get(pk=issued.key.pk)
    assert usage.quota_used == 1000 and usage.sessions_total == 1000
    assert AuditEvent.objects.filter(action="broker.session").count() == 1000
    assert emulator.call_counts["GET /v1/convai/conversation/get-signed-url"] == 1000


def test_the_rate_limit_is_exact_under_concurrency(issue, signed_agent, monkeypatch):
    monkeypatch.setattr(limits, "clock", lambda: 1_900_000_000.0)  # one minute for the whole run
    issued = issue(session_quota=100_000, rate_limit_per_minute=300)
    results = _hammer(f"/api/v1/agents/{signed_agent.remote_id}/session", issued.secret, threads=8, requests=60)
    assert results[(200, "ok")] == 300, results
    assert results[(429, "rate_limited")] == 180, results


def test_16_threads_minting_tokens_and_sessions_share_a_quota_of_1000_exactly(issue, signed_agent, emulator):
    issued = issue(session_quota=1000, rate_limit_per_minute=1_000_000, token_types=["tts_websocket"])
    results = Counter()
    threads = [threading.Thread(target=lambda url=url: results.update(_hammer(url, issued.secret, 8, 250)))
               for url in ("/api/v1/tokens/tts_websocket", f"/api/v1/agents/{signed_agent.remote_id}/session")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sum(results.values()) == 4000
    assert results[(200, "ok")] == 1000, results
    assert results[(429, "quota_exhausted")] == 3000, results
    minted = emulator.call_counts.get("POST /v1/single-use-token/{token_type}", 0)
    sessions = emulator.call_counts.get("GET /v1/convai/conversation/get-signed-url", 0)
    assert minted + sessions == 1000
    assert AuditEvent.objects.filter(action="broker.single_use_token").count() == minted
    assert AuditEvent.objects.filter(action="broker.session").count() == sessions
    usage = BrokerKeyUsage.objects.get(pk=issued.key.pk)
    assert usage.quota_used == 1000 and usage.sessions_total == 1000


def test_16_threads_of_token_mints_against_a_rate_limit_of_300_get_exactly_300(issue, monkeypatch):
    monkeypatch.setattr(limits, "clock", lambda: 1_900_000_000.0)  # one minute for the whole run
    issued = issue(session_quota=100_000, rate_limit_per_minute=300, token_types=["realtime_scribe"])
    results = _hammer("/api/v1/tokens/realtime_scribe", issued.secret, threads=16, requests=30)
    assert results[(200, "ok")] == 300, results
    assert results[(429, "rate_limited")] == 180, results
