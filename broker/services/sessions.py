"""Opening a conversation session for an app backend: the checks, the limits, the mint, the audit."""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents.models import Agent
from broker import limits, rows
from broker.models import BrokerKey, BrokerSession
from broker.validators import address_allowed, validate_end_user_id
from project import access
from project.actors import SYSTEM, Actor
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit import services as audit_services
from project.audit.services import record
from project.platform import errors as platform_errors
from workspaces import access as keys_access
from workspaces.models import Role, RoleAssignment, ServiceAccount

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
    #: Set when the agent's credential webhook cannot serve this session: why (the platform gave no conversation id
    #: to bind the end user to), for the app's developers.
    webhook_unavailable: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {self.mode: self.credential,
                                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                                "environment": self.environment, "agent_id": self.agent_id}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        if self.webhook_unavailable:
            body["credential_webhook"] = {"available": False, "reason": self.webhook_unavailable}
        return body


WEBHOOK_UNBOUND = ("The platform gave no conversation id with this signed URL, so Keyward cannot tell the agent's "
                   "credential webhook which end user this conversation is for: it will inject no user tokens. "
                   "Use mode=token (conversation tokens always carry the id) for agents that need them.")


@functools.cache
def _agent_sql(column: str, vendor: str) -> str:
    """The agent, whether the key may open sessions for it, and the role permissions the key's service account
    holds in the key's workspace (unexpired assignments; a JSON array of the roles' permission lists)."""
    agents = BrokerKey._meta.get_field("agents")
    through = agents.remote_field.through
    aggregate = "json_agg(r.permissions)::text" if vendor == "postgresql" else "json_group_array(json(r.permissions))"
    return (f"SELECT {rows.columns(Agent, 'a')}, "  # noqa: S608 - names from model metadata
            f"(SELECT {aggregate} FROM {rows.table(RoleAssignment)} ra JOIN {rows.table(Role)} r ON r.id = ra.role_id "
            "WHERE ra.service_account_id = %s AND ra.workspace_id = %s "
            "AND (ra.expires_at IS NULL OR ra.expires_at > %s)), "
            f"EXISTS(SELECT 1 FROM {rows.table(through)} t "
            f"WHERE t.{agents.m2m_column_name()} = %s AND t.{agents.m2m_reverse_name()} = a.id) "
            f"FROM {rows.table(Agent)} a WHERE a.workspace_id = %s AND a.{column} = %s")


def _agent_for(key: BrokerKey, agent_ref: str) -> tuple[Agent | None, bool]:
    """The agent of the key's workspace named by its Keyward id (a UUID) or its platform id (``agent_…`` or a
    legacy id), and whether the key may open sessions for it. One query, which also reads what the key's
    service account may do in the workspace (remembered on it for access.has_perm)."""
    try:
        column, value = "uuid", uuid.UUID(agent_ref)
    except ValueError:
        if not _PLATFORM_ID.match(agent_ref):
            return None, False
        column, value = "remote_id", agent_ref
    now = RoleAssignment._meta.get_field("expires_at").get_db_prep_value(timezone.now(), connection)
    row = rows.fetch_one(_agent_sql(column, connection.vendor), [
        key.service_account_id, key.workspace_id, now, key.pk, key.workspace_id,
        Agent._meta.get_field(column).get_db_prep_value(value, connection)])
    if row is None:
        return None, False
    held = json.loads(row[-2]) if row[-2] else []
    if key.service_account.workspace_id == key.workspace_id:  # the model forbids otherwise; never trust it blind
        keys_access.remember(key.service_account, key.workspace_id, held)
    return rows.build(Agent, "a", row[:-2]), bool(row[-1])


def check_caller(actor: ServiceAccount, key: BrokerKey, end_user_id: str, ip: str | None) -> None:
    """The checks every broker request makes before its limits (sessions and single-use tokens alike): the key is
    the caller's (401), the end user id is well formed (400, echoing no input), the address is in the key's
    allowlist (403, and a foreign address is recorded)."""
    if actor.pk != key.service_account_id:
        raise SessionRefused(401, "invalid_key", "The key does not belong to this service account.")
    if end_user_id:
        try:
            validate_end_user_id(end_user_id)
        except ValidationError as exc:  # its message states the rule and echoes no input
            raise SessionRefused(400, "invalid_request", " ".join(exc.messages)) from None
    if not address_allowed(key.allowed_networks, ip):
        _foreign_address(key, ip)
        logger.warning("broker key %s refused from address %s (outside its allowlist)", key.pk, ip)
        raise SessionRefused(403, "address_not_allowed", "This key may not be used from this address.")


def _foreign_address(key: BrokerKey, ip: str | None) -> None:
    """A key used from outside its networks is a leak signal: one alert per key and day."""
    day = timezone.now().date().isoformat()
    alert_raise(actor=SYSTEM, workspace=key.workspace, kind="broker_key_foreign_address", severity=Alert.Severity.HIGH,
                title=f"Broker key “{key.name}” used from an address outside its allowlist",
                dedup_key=f"broker_key_foreign_address:{key.pk}:{day}", target=key,
                details={"key": key.hint, "address": ip or "unknown"})


@dataclass(frozen=True)
class _Minted:
    value: str = field(repr=False)
    expires_at: datetime
    conversation_id: str


@sensitive_variables("url", "result")
def _mint(agent: Agent, key: BrokerKey, mode: str, client: Any) -> _Minted:
    """The platform call, with the server-held key, outside any transaction. The checks that the admin's mint
    (agents.services) repeats were made by _admit in this request; its audit event is replaced by the one
    broker.session event, which says more (key, end user, address)."""
    from project.platform.client import client_for_workspace

    client = client or client_for_workspace(agent.workspace_id)
    environment = key.environment.platform_environment
    if mode == "signed_url":
        # With include_conversation_id the platform makes the signature single-use, and the id lets the
        # credential webhook bind the conversation to the end user the app vouched for.
        # The id comes as a top-level field or in the URL's query; when the platform gives neither, the session
        # has no binding (never an empty one) and the answer says the credential webhook cannot serve it.
        url, conversation_id = client.get_signed_url_with_conversation(agent.remote_id, environment=environment)
        expires_at = timezone.now() + timedelta(seconds=settings.SIGNED_URL_TTL_SECONDS)
        return _Minted(url, expires_at, conversation_id)
    # The end user id stays with Keyward (it may be an e-mail address): the platform gets no participant name.
    result = client.get_conversation_token(agent.remote_id, environment=environment, participant_name=None)
    # The platform publishes no lifetime for conversation tokens; the signed-URL window is the time within
    # which the conversation must start.
    expires_at = timezone.now() + timedelta(seconds=settings.SIGNED_URL_TTL_SECONDS)
    return _Minted(result["token"], expires_at, str(result.get("conversation_id") or "")[:128])


def _refusal_for_mint_failure(exc: platform_errors.PlatformError) -> SessionRefused:
    if isinstance(exc, platform_errors.TRANSIENT):
        retry = int(exc.retry_after + 0.999) if exc.retry_after is not None else None
        return SessionRefused(503, "platform_unavailable", "The platform could not mint a credential just now; "
                              "try again shortly.", retry_after=max(1, retry or 5))
    return SessionRefused(502, "platform_refused", f"The platform refused to mint a credential ({exc.code}).")


def _session_record(*, actor: ServiceAccount, key: BrokerKey, agent: Agent, minted: _Minted,
                    mode: str, end_user_id: str, conversation_id: str, ip: str | None) -> None:
    """The session binding (when there is an end user and a conversation) and the audit event, all or none.

    Inserted as prepared rows (rows.insert: one statement on PostgreSQL). The values were checked before the
    platform call (end user id) or come from it cut to size (conversation id); the key, agent and
    environment were loaded by this request, and the unique (agent, conversation) constraint is the
    database's to enforce.
    """
    audit_event = audit_services.event(
        actor=actor, action="broker.session", target=key, workspace_id=key.workspace_id,
        changes={"key": key.hint, "agent": agent.name, "agent_id": agent.remote_id,
                 "environment": key.environment.name, "end_user_id": end_user_id, "mode": mode,
                 "conversation_id": conversation_id, "address": ip or ""})
    if end_user_id and conversation_id:
        session = BrokerSession(key=key, agent=agent, environment=key.environment, end_user_id=end_user_id,
                                conversation_id=conversation_id, mode=mode, expires_at=minted.expires_at)
        rows.insert(session, audit_event)
    else:
        rows.insert(audit_event)


def _admit(actor: ServiceAccount, key: BrokerKey, agent_ref: str, ip: str | None,
           now: float) -> tuple[Agent, limits.Window]:
    """Every check before the platform call, with the counters: two statements, no explicit transaction.

    The agent (with the key's right to it and the service account's permissions) is read first; a request
    refused for its agent still counts against the rate limit (one conditional UPDATE), and says 429 if the
    minute was already full. A request for a good agent takes its minute and its session in one statement
    (limits.admit). The refusals keep their documented order: rate limit, agent, quota.
    """
    agent, may = _agent_for(key, agent_ref)
    refusal = _agent_refusal(actor, key, agent, may)
    if refusal is not None:
        allowed, minute = limits.rate_consume(key, now)
        if not allowed:
            raise _rate_limited(key, minute, now)
        raise refusal
    assert agent is not None
    outcome, minute, period = limits.admit(key, now, ip)
    if outcome == limits.Outcome.RATE_LIMITED:
        raise _rate_limited(key, minute, now)
    if outcome == limits.Outcome.QUOTA_EXHAUSTED:
        raise SessionRefused(429, "quota_exhausted", f"This key's quota of {key.session_quota} sessions "
                             f"{key.get_quota_period_display()} is used up.", retry_after=period.retry_after(now))
    return agent, period


def _rate_limited(key: BrokerKey, minute: limits.Window, now: float) -> SessionRefused:
    return SessionRefused(429, "rate_limited", f"This key is limited to {key.rate_limit_per_minute} requests per "
                          "minute.", retry_after=minute.retry_after(now))


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
    platform call; then one transaction recording the session binding and the one audit event of the mint
    (key, agent, environment, end user, address, conversation id; never the credential). Nothing is enqueued.

    Two short transactions, deliberately not one: the checks and counters commit before the platform call,
    which must run outside any transaction (held across HTTP it would keep SQLite's write lock and a
    PostgreSQL connection); a failed mint gives its session back.
    """
    if mode not in MODES and actor.pk == key.service_account_id:
        raise SessionRefused(400, "invalid_request", f"mode must be one of: {', '.join(MODES)}.")
    check_caller(actor, key, end_user_id, ip)
    agent, period = _admit(actor, key, agent_ref, ip, limits.clock())
    try:
        minted = _mint(agent, key, mode, client)
    except platform_errors.PlatformError as exc:
        limits.quota_refund(key, period)
        refusal = _refusal_for_mint_failure(exc)
        logger.warning("broker key %s: session for agent %s refused at mint: %s", key.pk, agent.pk, refusal.code)
        raise refusal from None
    conversation_id = minted.conversation_id
    try:
        _session_record(actor=actor, key=key, agent=agent, minted=minted, mode=mode, end_user_id=end_user_id,
                        conversation_id=conversation_id, ip=ip)
    except DatabaseError:
        # Not audited means not handed out: the credential is dropped and the session given back.
        limits.quota_refund(key, period)
        raise
    unbound = WEBHOOK_UNBOUND if agent.credential_webhook and end_user_id and not conversation_id else ""
    if unbound:
        logger.warning("broker key %s: signed URL for agent %s came without a conversation id; the credential "
                       "webhook cannot serve this session", key.pk, agent.pk)
    return SessionGrant(mode=mode, credential=minted.value, expires_at=minted.expires_at,
                        environment=key.environment.name, agent_id=agent.remote_id, conversation_id=conversation_id,
                        webhook_unavailable=unbound)


#: How many of a workspace's latest session events the agent page looks through for the agent's latest signed URL.
SIGNED_URL_LOOKBACK = 200


def latest_signed_url_session(agent: Agent) -> bool | None:
    """Whether the agent's latest signed-URL session (among its workspace's latest SIGNED_URL_LOOKBACK session
    events) came with a conversation id the credential webhook can bind: True, False, or None when none was found.
    One bounded query on the audit trail (the session events say mode and conversation id, never the URL)."""
    from project.audit.models import AuditEvent

    events = (AuditEvent.objects.filter(workspace_id=agent.workspace_id, action="broker.session")
              .order_by("-id").values_list("changes", flat=True)[:SIGNED_URL_LOOKBACK])
    for changes in events:
        if changes.get("agent_id") == agent.remote_id and changes.get("mode") == "signed_url":
            return bool(changes.get("conversation_id"))
    return None


PRUNE_BATCH = 5000


def broker_sessions_prune(*, actor: Actor, older_than: timedelta | None = None,
                          batch: int = PRUNE_BATCH) -> int:
    """Delete session bindings that expired more than `older_than` ago (default BROKER_SESSION_RETENTION_HOURS;
    the webhook no longer accepts them; the audit trail keeps the record of each session). Deletes in batches of
    `batch` rows, oldest first, one short transaction each, so a large backlog never holds a long lock or a huge
    transaction; audited once with the count. Returns the count."""
    if older_than is None:
        older_than = timedelta(hours=settings.BROKER_SESSION_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    total = 0
    while True:
        with transaction.atomic():
            # Oldest first by primary key: expired rows are the lowest ids, so this reads the head of the pk index.
            ids = list(BrokerSession.objects.filter(expires_at__lt=cutoff).order_by("id")
                       .values_list("id", flat=True)[:batch])
            if not ids:
                break
            total += BrokerSession.objects.filter(id__in=ids).delete()[0]
        if len(ids) < batch:
            break
    if total:
        record(actor=actor, action="broker.sessions_prune", object_type="broker.brokersession",
               changes={"deleted": total, "expired_before": cutoff.isoformat()})
    return total
