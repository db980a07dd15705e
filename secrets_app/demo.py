"""Demo secrets, tools that reference them, one auth connection of each kind, an OAuth provider and end users'
credentials, in every demo workspace, through the services, idempotently (a second run creates nothing).

Values are random (``secrets.token_urlsafe``), never words: a demo value showing up anywhere is a finding.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from project.actors import SYSTEM
from secrets_app import services
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool, UserCredential

DEMO_SECRETS = (("crm_api_token", "Bearer token of the CRM's REST API"),
                ("calendar_api_key", "API key of the booking calendar"),
                ("webhook_signing_key", "Signs requests to the order-status service"))
DEMO_TOOLS = (
    ("lookup_customer", "Look up a customer in the CRM by phone number or e-mail.", "https://crm.{slug}.example/api"
     "/customers/search", "POST", {"Authorization": "{{ secret__crm_api_token }}",
                                   "Content-Type": "application/json"}),
    ("book_appointment", "Book an appointment slot for the caller.", "https://calendar.{slug}.example/v2/bookings",
     "POST", {"X-Api-Key": "{{ secret__calendar_api_key }}"}),
    ("order_status", "Tell the caller where their order is.", "https://orders.{slug}.example/status/{order_id}",
     "GET", {"X-Signature-Key": "{{ secret__webhook_signing_key }}",
             "X-Customer-Token": "{{ secret__user_google_token }}"}),
)
DEMO_USERS = ("cust-1001", "cust-1002", "cust-1003")


def _random() -> str:
    return secrets.token_urlsafe(24)


def _seeding(workspaces: list, fresh: set[int] | None) -> list:
    """The demo workspaces this run may seed: those it created (all when `fresh` is not given), so a restart never
    brings back a secret, tool, connection or credential someone deleted or revoked."""
    return [w for w in workspaces[:2] if fresh is None or w.pk in fresh]


def seed_secrets_and_tools(*, workspaces: list, fresh: set[int] | None = None, **context: Any) -> None:
    for workspace in _seeding(workspaces, fresh):
        existing = set(Secret.objects.filter(workspace=workspace).values_list("name", flat=True))
        for name, description in DEMO_SECRETS:
            if name not in existing:
                services.secret_create(actor=SYSTEM, workspace=workspace, name=name, description=description,
                                       value=f"demo_{_random()}")
        _provider(workspace)
        tools = set(Tool.objects.filter(workspace=workspace).values_list("name", flat=True))
        for name, description, url, method, headers in DEMO_TOOLS:
            if name not in tools:
                services.tool_create(actor=SYSTEM, workspace=workspace, name=name, description=description,
                                     url=url.replace("{slug}", workspace.slug), method=method, headers=headers)


def demo_token_url() -> str:
    """Where the demo provider refreshes tokens: the platform emulator's demo OAuth endpoint when the platform
    is the emulator on loopback (`make run`), so "Force refresh" works; Google's real one otherwise."""
    from project.platform.emulator.core import DEMO_OAUTH_TOKEN_PATH

    base = settings.PLATFORM_API_URL.rstrip("/")
    if urlsplit(base).scheme == "http" and urlsplit(base).hostname in {"127.0.0.1", "localhost", "::1"}:
        return base + DEMO_OAUTH_TOKEN_PATH
    return "https://oauth2.googleapis.com/token"


def _provider(workspace: Any) -> OAuthProvider:
    provider = OAuthProvider.objects.filter(workspace=workspace, slug="google").first()
    if provider is None:
        provider = services.provider_save(
            actor=SYSTEM, workspace=workspace, slug="google", name="Google", client_secret=_random(),
            token_url=demo_token_url(), client_id=f"{workspace.slug}-demo.apps.example",
            send_client_secret_in_header=False)
    return provider


def seed_auth_connections(*, workspaces: list, fresh: set[int] | None = None, **context: Any) -> None:
    kinds = AuthConnection.Kind
    specs: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("CRM service account", kinds.OAUTH2_CLIENT_CREDENTIALS,
         {"provider": "crm", "client_id": "keyward-demo", "token_url": "https://auth.crm.example/oauth/token",
          "scopes": ["customers.read", "notes.write"]}, {"secrets": {"client_secret": _random()}}),
        ("Data warehouse (JWT)", kinds.OAUTH2_JWT,
         {"provider": "warehouse", "token_url": "https://login.warehouse.example/token", "algorithm": "HS256",
          "claims": {"iss": "keyward-demo", "aud": "https://api.warehouse.example", "sub": "voice-agent"},
          "scopes": ["query"]}, {"secrets": {"signing_secret": _random()}}),
        ("Legacy billing", kinds.BASIC, {"provider": "billing", "username": "voice-agent"},
         {"secrets": {"password": _random()}}),
        ("Shipping API", kinds.BEARER, {"provider": "shipping"}, {"secrets": {"token": _random()}}),
        ("Partner gateway", kinds.CUSTOM_HEADERS, {"provider": "partner"},
         {"headers": {"X-Partner-Key": _random()}}),  # one header: the platform's custom-header kind holds one
    ]
    for workspace in _seeding(workspaces, fresh):
        existing = set(AuthConnection.objects.filter(workspace=workspace).values_list("name", flat=True))
        for name, kind, plain, secret_parts in specs:
            if name not in existing:
                services.auth_connection_save(actor=SYSTEM, workspace=workspace, name=name, kind=kind, **plain,
                                              **secret_parts)


def seed_vault(*, workspaces: list, fresh: set[int] | None = None, **context: Any) -> None:
    now = timezone.now()
    for workspace in _seeding(workspaces, fresh):
        provider = _provider(workspace)
        existing = set(UserCredential.objects.filter(provider=provider).values_list("end_user_id", flat=True))
        for number, end_user in enumerate(DEMO_USERS):
            if end_user in existing:
                continue
            # Far-off expiries: no refresh runs by itself; "Force refresh" asks the demo provider.
            services.credential_store(
                actor=SYSTEM, workspace=workspace, provider=provider, end_user_id=end_user,
                access_token=f"ya29.demo_{_random()}", refresh_token=f"1//demo_{_random()}",
                expires_at=now + timedelta(days=30 + number),
                scopes=["https://www.googleapis.com/auth/calendar.readonly", "openid"])


demo_seeders: list[Callable[..., None]] = [seed_secrets_and_tools, seed_auth_connections, seed_vault]
