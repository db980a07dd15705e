"""Fixtures of the broker tests: a synced signed agent, an app backend (service account with sessions.mint),
a broker key issued to it, and a client that calls the session API as that backend. Objects are built by
tests/factories.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from agents import services as agent_services
from broker import limits
from broker.services import IssuedKey
from tests.factories import ServiceAccountFactory, make_agent, make_broker_key, make_oauth_provider
from workspaces.models import ServiceAccount

SESSION_URL = "/api/v1/agents/{agent}/session"
WEBHOOK_URL = "/api/v1/platform/conversation-initiation"
TOKEN_URL = "/api/v1/tokens/{token_type}"
REFRESH_URL = "/api/v1/platform/token-refresh"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Logins are not under test here; PBKDF2 would dominate every fixture that makes a person.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def signed_agent(workspace, platform):
    agent = make_agent(workspace, "Support", synced=True, auth_mode="signed")
    assert agent.remote_id
    return agent


@pytest.fixture
def second_agent(workspace, platform):
    return make_agent(workspace, "Sales", synced=True, auth_mode="signed")


@pytest.fixture
def backend(workspace) -> ServiceAccount:
    """The app backend: a service account holding Developer (which carries sessions.mint)."""
    return ServiceAccountFactory(workspace=workspace, name="web-backend", role="Developer")


@pytest.fixture
def key_fields(workspace, backend, signed_agent) -> dict[str, Any]:
    """What the issue form would send for a key of the web backend, for the Support agent, in prod."""
    return {"workspace": workspace, "service_account": backend, "environment": workspace.environments.get(name="prod"),
            "name": "web app", "agents": [signed_agent], "rate_limit_per_minute": 1000, "session_quota": 1000}


@pytest.fixture
def issue(owner, key_fields) -> Callable[..., IssuedKey]:
    def _issue(**overrides: Any) -> IssuedKey:
        # The owner (Admin, so secrets.manage) issues with the vault right unless a test says otherwise.
        return make_broker_key(actor=owner, **{"carries_vault_tokens": True, **key_fields, **overrides})

    return _issue


@pytest.fixture
def issued(issue) -> IssuedKey:
    return issue()


class Api:
    """Calls the session API as an app backend would (no cookies, no CSRF token)."""

    def __init__(self) -> None:
        self.client = Client(enforce_csrf_checks=True)

    def session(self, agent: str, key: str | None, body: Any = None, *, remote_addr: str = "127.0.0.1",
                raw: bytes | None = None, **headers: str) -> Any:
        extra = {"REMOTE_ADDR": remote_addr, **headers}
        if key is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(SESSION_URL.format(agent=agent), data=data, content_type="application/json",
                                **extra)

    def token(self, token_type: str, key: str | None, body: Any = None, *, remote_addr: str = "127.0.0.1",
              raw: bytes | None = None) -> Any:
        extra = {"REMOTE_ADDR": remote_addr}
        if key is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(TOKEN_URL.format(token_type=token_type), data=data,
                                content_type="application/json", **extra)

    def refresh(self, body: Any, secret: str | None) -> Any:
        extra = {"HTTP_X_KEYWARD_WEBHOOK_SECRET": secret} if secret is not None else {}
        return self.client.post(REFRESH_URL, data=json.dumps(body), content_type="application/json", **extra)

    def webhook(self, body: Any, secret: str | None, **headers: str) -> Any:
        extra = dict(headers)
        if secret is not None:
            extra["HTTP_X_KEYWARD_WEBHOOK_SECRET"] = secret
        return self.client.post(WEBHOOK_URL, data=json.dumps(body), content_type="application/json", **extra)


@pytest.fixture
def api() -> Api:
    return Api()


class FrozenClock:
    """limits.clock, patched: tests move time forward instead of sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Iterator[FrozenClock]:
    frozen = FrozenClock(1_900_000_000.0)  # 2030-03-17 17:46:40 UTC, 40 s into a minute
    monkeypatch.setattr(limits, "clock", frozen)
    yield frozen


# --- the credential vault and its OAuth provider --------------------------------------------------------------
class TokenEndpoint:
    """A provider's token URL: answers refreshes with the next fresh token and counts them."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.fail = False

    def handle(self, request: Any) -> Any:
        import httpx

        self.refreshes += 1
        if self.fail:
            return httpx.Response(400, json={"error": "invalid_grant"})
        return httpx.Response(200, json={"access_token": f"fresh-google-token-{self.refreshes:04d}-Zx81q",
                                         "expires_in": 3600, "token_type": "Bearer"})


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    import httpx

    from secrets_app import oauth

    endpoint = TokenEndpoint()
    client = httpx.Client(transport=httpx.MockTransport(endpoint.handle))
    oauth.set_client(client)
    yield endpoint
    oauth.set_client(None)
    client.close()


@pytest.fixture
def google(workspace) -> Any:
    return make_oauth_provider(workspace, token_url="https://oauth.example.test/token", client_id="keyward-client",
                               client_secret="google-client-secret-Q7w")


@pytest.fixture
def webhook_agent(signed_agent, owner, django_capture_on_commit_callbacks) -> Any:
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_credential_webhook_set(actor=owner, agent=signed_agent, enabled=True)
    signed_agent.refresh_from_db()
    return signed_agent
