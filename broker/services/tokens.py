"""Single-use tokens for speech clients, minted for an app backend holding a broker key: the checks, the limits
(the same counters as sessions), the platform call through the workspace's platform account, the audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from broker import limits, rows
from broker.models import BrokerKey, TokenType
from broker.services.sessions import (
    SessionRefused,
    _rate_limited,
    _refusal_for_mint_failure,
    check_caller,
)
from project import access
from project.audit import services as audit_services
from project.platform import errors as platform_errors
from workspaces.models import ServiceAccount

logger = logging.getLogger(__name__)

TOKEN_TYPES = tuple(TokenType.values)
# "A time bound single use token that expires after 15 minutes. Will be consumed on use." (the platform's spec)
TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class TokenGrant:
    """What the app gets: the token (shown once, never stored or logged), its type, lifetime and environment."""

    token_type: str
    token: str = field(repr=False)
    expires_at: datetime
    environment: str

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "token_type": self.token_type, "expires_at": self.expires_at.isoformat(),
                "environment": self.environment}


def _type_refusal(actor: ServiceAccount, key: BrokerKey, token_type: str) -> SessionRefused | None:
    if token_type not in TOKEN_TYPES:
        return SessionRefused(404, "token_type_not_found", f"No such token type; the types are "
                              f"{', '.join(TOKEN_TYPES)}.")
    if token_type not in (key.token_types or []):
        return SessionRefused(403, "token_type_not_allowed", "This key may not mint this token type.")
    if not access.has_perm(actor, "sessions.mint", key.workspace_id):
        return SessionRefused(403, "not_permitted", "This key's service account may not mint tokens here.")
    return None


def _admit(actor: ServiceAccount, key: BrokerKey, token_type: str, ip: str | None, now: float) -> limits.Window:
    """The checks before the platform call with the counters, in the session API's order: a request refused for
    its token type still counts against the rate limit (and says 429 when the minute was full); an allowed one
    takes its minute and one unit of the quota in one statement (limits.admit), so mints and sessions share
    the key's limits exactly."""
    refusal = _type_refusal(actor, key, token_type)
    if refusal is not None:
        allowed, minute = limits.rate_consume(key, now)
        if not allowed:
            raise _rate_limited(key, minute, now)
        raise refusal
    outcome, minute, period = limits.admit(key, now, ip)
    if outcome == limits.Outcome.RATE_LIMITED:
        raise _rate_limited(key, minute, now)
    if outcome == limits.Outcome.QUOTA_EXHAUSTED:
        raise SessionRefused(429, "quota_exhausted", f"This key's quota of {key.session_quota} sessions and tokens "
                             f"{key.get_quota_period_display()} is used up.", retry_after=period.retry_after(now))
    return period


@sensitive_variables("token")
def _mint(key: BrokerKey, token_type: str, client: Any) -> str:
    from project.platform.client import client_for_workspace

    return (client or client_for_workspace(key.workspace_id)).create_single_use_token(token_type)


@sensitive_variables("token", "grant")
def single_use_token_mint(*, actor: ServiceAccount, key: BrokerKey, token_type: str, end_user_id: str = "",
                          ip: str | None = None, client: Any = None) -> TokenGrant:
    """Mint a single-use token for a speech client (``tts_websocket``, ``realtime_scribe``, ``batch_scribe``)
    for an app backend holding `key`, through the workspace's platform account. Refusals raise SessionRefused
    with the session API's statuses and codes.

    Order of checks: address (403), rate limit (429), token type known (404), allowed for the key (403), the
    service account's sessions.mint (403), quota (429); then the platform call outside any transaction (a
    failed mint gives its unit of quota back); then the one audit event ``broker.single_use_token`` (key hint,
    token type, environment, end user, address; never the token). Not audited means not handed out. Nothing is
    enqueued.
    """
    check_caller(actor, key, end_user_id, ip)
    period = _admit(actor, key, token_type, ip, limits.clock())
    try:
        token = _mint(key, token_type, client)
    except platform_errors.PlatformError as exc:
        limits.quota_refund(key, period)
        refusal = _refusal_for_mint_failure(exc)
        logger.warning("broker key %s: %s token refused at mint: %s", key.pk, token_type, refusal.code)
        raise refusal from None
    expires_at = timezone.now() + TOKEN_TTL
    try:
        rows.insert(audit_services.event(
            actor=actor, action="broker.single_use_token", target=key, workspace_id=key.workspace_id,
            changes={"key": key.hint, "token_type": token_type, "environment": key.environment.name,
                     "end_user_id": end_user_id, "address": ip or ""}))
    except DatabaseError:
        limits.quota_refund(key, period)
        raise
    return TokenGrant(token_type=token_type, token=token, expires_at=expires_at, environment=key.environment.name)
