"""Opening a conversation session for an app backend: the checks, the limits, the mint, the audit."""

from __future__ import annotations

import functools
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents import services as agent_services
from agents.models import Agent
from broker import limits, rows
from broker.models import BrokerKey, BrokerSession
from broker.validators import address_allowed
from detection.models import Alert
from detection.services import alert_raise
from keys.models import ServiceAccount
from project import access
from project.audit.services import record
from project.platform import errors as platform_errors

logger = logging.getLogger(__name__)

MODES = ("signed_url", "conversation_token")
_PLATFORM_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class SessionRefused(Exception):
    """A documented refusal of the session API: HTTP status, stable code, human message, Retry-After."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class SessionGrant:
    """What the app gets: the credential (shown once, never stored or logged) and where it leads."""

    mode: str
    credential: str = field(repr=False)
    expires_at: datetime | None
    environment: str
    agent_id: str
    conversation_id: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {self.mode: self.credential,
                                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                                "environment": self.environment, "agent_id": self.agent_id}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        return body


class _SingleUseSignedUrls:
    """The platform client, asking for signed URLs that carry their conversation id.

    With ``include_conversation_id`` the platform makes the signature single-use, and the id lets the
    credential webhook bind the conversation to the end user the app vouched for.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def get_signed_url(self, agent_id: str, *, environment: str | None = None, **_: Any) -> str:
        return self._client.get_signed_url(agent_id, environment=environment, include_conversation_id=True)


def _conversation_id_of(signed_url: str) -> str:
    # UNCONFIRMED where the platform puts the id; the emulator (and, by its docs, the platform) uses the query.
    values = parse_qs(urlsplit(signed_url).query).get("conversation_id") or [""]
    return values[0][:128]


@functools.cache
def _agent_sql(column: str) -> str:
    agents = BrokerKey._meta.get_field("agents")
    through = agents.remote_field.through
    return (f"SELECT {rows.columns(Agent, 'a')}, EXISTS(SELECT 1 FROM {rows.table(through)} t "  # noqa: S608 - names from model metadata
            f"WHERE t.{agents.m2m_column_name()} = %s AND t.{agents.m2m_reverse_name()} = a.id) "
            f"FROM {rows.table(Agent)} a WHERE a.workspace_id = %s AND a.{column} = %s")


def _agent_for(key: BrokerKey, agent_ref: str) -> tuple[Agent | None, bool]:
    """The agent of the key's workspace named by its Keyward id (a UUID) or its platform id (``agent_…`` or a
    legacy id), and whether the key may open sessions for it. One query."""
    try:
        column, value = "uuid", uuid.UUID(agent_ref)
    except ValueError:
        if not _PLATFORM_ID.match(agent_ref):
            return None, False
        column, value = "remote_id", agent_ref
    row = rows.fetch_one(_agent_sql(column), [key.pk, key.workspace_id,
                                             Agent._meta.get_field(column).get_db_prep_value(value, connection)])
    if row is None:
        return None, False
    return rows.build(Agent, "a", row[:-1]), bool(row[-1])


def _foreign_address(key: BrokerKey, ip: str | None) -> None:
    """A key used from outside its networks is a leak signal: one alert per key and day."""
    day = timezone.now().date().isoformat()
    alert_raise(workspace=key.workspace, kind="broker_key_foreign_address", severity=Alert.Severity.HIGH,
                title=f"Broker key “{key.name}” used from an address outside its allowlist",
                dedup_key=f"broker_key_foreign_address:{key.pk}:{day}", target=key,
                details={"key": key.hint, "address": ip or "unknown"})


def _mint(actor: ServiceAccount, agent: Agent, key: BrokerKey, mode: str,
          client: Any) -> agent_services.MintedCredential:
    from project.platform.client import get_client

    client = client or get_client()
    if mode == "signed_url":
        return agent_services.agent_mint_signed_url(actor=actor, agent=agent, environment=key.environment,
                                                    client=_SingleUseSignedUrls(client))
    # The end user id stays with Keyward (it may be an e-mail address): the platform gets no participant name.
    return agent_services.agent_mint_conversation_token(actor=actor, agent=agent, environment=key.environment,
                                                        client=client)


def _refusal_for_mint_failure(exc: Exception) -> SessionRefused:
    cause = exc.__cause__
    if isinstance(cause, platform_errors.TRANSIENT):
        retry = int(cause.retry_after + 0.999) if cause.retry_after is not None else None
        return SessionRefused(503, "platform_unavailable", "The platform could not mint a credential just now; "
                              "try again shortly.", retry_after=max(1, retry or 5))
    if isinstance(cause, platform_errors.PlatformError):
        return SessionRefused(502, "platform_refused", f"The platform refused to mint a credential ({cause.code}).")
    if isinstance(exc, PermissionDenied):
        return SessionRefused(403, "not_permitted", "This key's service account may not open sessions here.")
    return SessionRefused(409, "agent_not_ready", "The agent cannot open sessions right now (it changed while "
                          "this request ran); try again.")


@transaction.atomic
def _session_record(*, actor: ServiceAccount, key: BrokerKey, agent: Agent, minted: agent_services.MintedCredential,
                    mode: str, end_user_id: str, conversation_id: str, ip: str | None) -> None:
    if end_user_id and conversation_id:
        session = BrokerSession(key=key, agent=agent, environment=key.environment, end_user_id=end_user_id,
                                conversation_id=conversation_id, mode=mode,
                                expires_at=minted.expires_at or timezone.now())
        # The key, agent and environment were loaded by this request: checking that they exist would cost three
        # queries; the unique (agent, conversation) constraint is the database's to enforce.
        session.full_clean(exclude=["key", "agent", "environment"], validate_unique=False,
                           validate_constraints=False)
        session.save()
    record(actor=actor, action="broker.session", target=key, workspace_id=key.workspace_id,
           changes={"key": key.hint, "agent": agent.name, "agent_id": agent.remote_id,
                    "environment": key.environment.name, "end_user_id": end_user_id, "mode": mode,
                    "conversation_id": conversation_id, "address": ip or ""})


def _admit(actor: ServiceAccount, key: BrokerKey, agent_ref: str, ip: str | None,
           now: float) -> tuple[Agent, limits.Window]:
    """Every check before the platform call, with the counters, in one short transaction (one commit).

    A refusal is decided inside and raised after the commit, so the request still counts against the rate
    limit. The usage row stays locked from the rate UPDATE to the commit: a few statements, no I/O.
    """
    refusal: SessionRefused | None = None
    agent: Agent | None = None
    period = limits.quota_window(key.quota_period, now)
    with transaction.atomic():
        allowed, minute = limits.rate_consume(key, now)
        if not allowed:
            refusal = SessionRefused(429, "rate_limited", f"This key is limited to {key.rate_limit_per_minute} "
                                     "requests per minute.", retry_after=minute.retry_after(now))
        else:
            agent, may = _agent_for(key, agent_ref)
            refusal = _agent_refusal(actor, key, agent, may)
            if refusal is None:
                granted, period = limits.quota_reserve(key, now, ip)
                if not granted:
                    refusal = SessionRefused(
                        429, "quota_exhausted", f"This key's quota of {key.session_quota} sessions "
                        f"{key.get_quota_period_display()} is used up.", retry_after=period.retry_after(now))
    if refusal is not None:
        raise refusal
    assert agent is not None
    return agent, period


def _agent_refusal(actor: ServiceAccount, key: BrokerKey, agent: Agent | None, may: bool) -> SessionRefused | None:
    if agent is None:
        return SessionRefused(404, "agent_not_found", "No such agent.")
    if not may:
        return SessionRefused(403, "agent_not_allowed", "This key may not open sessions for this agent.")
    if not access.has_perm(actor, "sessions.mint", key.workspace_id):
        return SessionRefused(403, "not_permitted", "This key's service account may not open sessions here.")
    if agent.auth_mode != Agent.AuthMode.SIGNED:
        return SessionRefused(409, "agent_not_signed", "This agent does not use signed URLs or conversation "
                              f"tokens (its policy is {agent.get_auth_mode_display().lower()}).")
    if not agent.remote_id:
        return SessionRefused(409, "agent_not_synced", "This agent has not reached the platform yet; try again "
                              "shortly.", retry_after=10)
    return None


@sensitive_variables("minted", "credential")
def session_open(*, actor: ServiceAccount, key: BrokerKey, agent_ref: str, mode: str = "signed_url",
                 end_user_id: str = "", ip: str | None = None, client: Any = None) -> SessionGrant:
    """Open a session for an app backend holding `key`: a signed URL or a conversation token for one agent,
    in the key's environment. Refusals raise SessionRefused with the documented status and code.

    Order of checks: address (403), rate limit (429), agent visible (404) and allowed for the key (403),
    the service account's sessions.mint (403), signed mode and synced (409), session quota (429); then the
    platform call (agents.services' mint, which re-checks and audits the mint itself); then one transaction
    recording the session binding and the broker audit event (key, agent, environment, end user, address;
    never the credential). Nothing is enqueued.

    Three short transactions, deliberately not one: the checks and counters commit before the platform call,
    which must run outside any transaction (held across HTTP it would keep SQLite's write lock and a
    PostgreSQL connection); a failed mint gives its session back.
    """
    if actor.pk != key.service_account_id:
        raise SessionRefused(401, "invalid_key", "The key does not belong to this service account.")
    if mode not in MODES:
        raise SessionRefused(400, "invalid_request", f"mode must be one of: {', '.join(MODES)}.")
    if not address_allowed(key.allowed_networks, ip):
        _foreign_address(key, ip)
        logger.warning("broker key %s refused from address %s (outside its allowlist)", key.pk, ip)
        raise SessionRefused(403, "address_not_allowed", "This key may not be used from this address.")
    agent, period = _admit(actor, key, agent_ref, ip, limits.clock())
    try:
        minted = _mint(actor, agent, key, mode, client)
    except (ValidationError, PermissionDenied) as exc:
        limits.quota_refund(key, period)
        refusal = _refusal_for_mint_failure(exc)
        logger.warning("broker key %s: session for agent %s refused at mint: %s", key.pk, agent.pk, refusal.code)
        raise refusal from None
    conversation_id = minted.conversation_id or (_conversation_id_of(minted.value) if mode == "signed_url" else "")
    try:
        _session_record(actor=actor, key=key, agent=agent, minted=minted, mode=mode, end_user_id=end_user_id,
                        conversation_id=conversation_id, ip=ip)
    except DatabaseError:
        # Not audited means not handed out: the credential is dropped and the session given back.
        limits.quota_refund(key, period)
        raise
    return SessionGrant(mode=mode, credential=minted.value, expires_at=minted.expires_at,
                        environment=key.environment.name, agent_id=agent.remote_id, conversation_id=conversation_id)


@transaction.atomic
def broker_sessions_prune(*, actor: Any = None, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete session bindings that expired more than `older_than` ago (the webhook no longer accepts them; the
    audit trail keeps the record of each session). System actor; audited with the count. Returns the count."""
    cutoff = timezone.now() - older_than
    count, _ = BrokerSession.objects.filter(expires_at__lt=cutoff).delete()
    if count:
        record(actor=actor, action="broker.sessions_prune", object_type="broker.brokersession",
               changes={"deleted": count, "expired_before": cutoff.isoformat()})
    return count
