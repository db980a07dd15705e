"""Fixtures of the secrets_app tests: the outbox drained against the emulator, an OAuth provider and its token
endpoint. Objects are built by tests/factories.py; the people come from tests/conftest.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.fernet import Fernet

from project.sync.services import outbox_drain
from secrets_app import oauth
from tests.factories import make_oauth_provider


@pytest.fixture
def unrelated_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def drain(platform) -> Callable[[], int]:
    """Run every due outbox job against the emulator, now."""
    return lambda: outbox_drain(client=platform)


@dataclass
class TokenEndpoint:
    """A tiny OAuth provider: answers refresh_token grants at /token with what the test scripted."""

    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    clients_seen: set[int] = field(default_factory=set)
    issued: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.requests.append({"url": str(request.url), "form": form, "auth": request.headers.get("authorization")})
        if self.replies:
            status, body = self.replies.pop(0)
        else:
            self.issued += 1
            status, body = 200, {"access_token": f"at-fresh-{self.issued:04d}-Qx7", "expires_in": 3600,
                                 "token_type": "Bearer"}
        return httpx.Response(status, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    client = httpx.Client(transport=httpx.MockTransport(endpoint.handle), follow_redirects=False)
    oauth.set_client(client)
    yield endpoint
    oauth.set_client(None)
    client.close()


@pytest.fixture
def provider(workspace):
    return make_oauth_provider(workspace, token_url="https://provider.test/token", client_id="kw-client",
                               client_secret="provider-client-secret-Zk41", send_client_secret_in_header=False)
