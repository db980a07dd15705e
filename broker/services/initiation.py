"""The credential webhook's answer to the platform's call at conversation start (turning it on for an agent:
agents.services.agent_credential_webhook_set)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents.models import Agent
from broker.models import BrokerSession
from broker.validators import validate_end_user_id
from project.actors import SYSTEM, Actor, SystemActor
from project.audit.services import record

logger = logging.getLogger(__name__)

ANSWER_TYPE = "conversation_initiation_client_data"
SECRET_PREFIX = "secret__"
# How the webhook appears in the audit trail: the platform, authenticated by the agent's shared secret.
WEBHOOK_ACTOR = SystemActor("platform (conversation-initiation webhook)")


class WebhookRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _identify(agent: Agent, payload: dict[str, Any]) -> tuple[str, str, BrokerSession | None]:
    """(end user id, how it was found, the brokered session if any) from the platform's call, or ("", "none",
    None).

    1. ``conversation_id`` (or ``dynamic_variables.system__conversation_id``) of a session Keyward minted for
       this agent and which has not expired: the end user the app backend vouched for. Nothing the browser
       sends can choose it.
    2. Only for agents that trust caller ids: ``caller_id`` (or ``dynamic_variables.system__caller_id``), the
       phone number of a call, taken as the end user id.

    A ``user_id`` dynamic variable is deliberately *not* used: on web sessions the browser sets it, and
    trusting it would hand one user's tokens to whoever types another id.
    """
    variables = payload.get("dynamic_variables")
    variables = variables if isinstance(variables, dict) else {}
    conversation_id = _text(payload.get("conversation_id")) or _text(variables.get("system__conversation_id"))
    if conversation_id:
        session = (BrokerSession.objects.filter(agent=agent, conversation_id=conversation_id[:128],
                                                expires_at__gt=timezone.now())
                   .select_related("key").first())
        if session is not None and session.end_user_id:
            return session.end_user_id, "session", session
    if agent.credential_webhook_caller_id:
        caller = _text(payload.get("caller_id")) or _text(variables.get("system__caller_id"))
        try:
            validate_end_user_id(caller)
        except ValidationError:
            return "", "none", None
        return caller, "caller_id", None
    return "", "none", None


def _refuse(actor: Actor, agent: Agent, status: int, code: str, message: str, **details: Any) -> WebhookRefused:
    """A refusal after the agent's secret checked out: logged and audited (the platform, or whoever holds the
    agent's secret, asked for something it may not have)."""
    logger.warning("credential webhook refused for agent %s: %s", agent.pk, code)
    record(actor=actor, action="broker.webhook_refused", target=agent, workspace_id=agent.workspace_id,
           changes={"reason": code, **details})
    return WebhookRefused(status, code, message)


def _first_answer(session: BrokerSession) -> bool:
    """Claim the conversation's answer (a conditional UPDATE, so two calls at once cannot both be first); a
    repeat is allowed only within BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS of the session's opening."""
    now = timezone.now()
    if BrokerSession.objects.filter(pk=session.pk, answered_at__isnull=True).update(answered_at=now):
        return True
    window = timedelta(seconds=settings.BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS)
    return bool(window) and now <= session.created_at + window


def _fresh_tokens(agent: Agent, end_user_id: str, client: Any) -> dict[str, str]:
    try:
        from secrets_app.services import credential_fresh_tokens
    except ImportError as exc:
        raise WebhookRefused(503, "vault_unavailable", "The credential vault is not available.") from exc
    try:
        tokens = credential_fresh_tokens(actor=SYSTEM, workspace=agent.workspace, end_user_id=end_user_id,
                                         client=client)
    except DatabaseError as exc:
        raise WebhookRefused(503, "vault_unavailable", "The credential vault is not available.") from exc
    # The vault names its variables (secret__user_<provider>_token); a bare provider name gets the prefix, so
    # a value can only ever travel as a secret__ variable (tool headers, never the model or the browser).
    return {(name if name.startswith(SECRET_PREFIX) else f"{SECRET_PREFIX}{name}"): value
            for name, value in tokens.items() if isinstance(value, str) and value}


@sensitive_variables("variables")
def conversation_initiation_answer(*, actor: Actor, agent_uuid: uuid.UUID, payload: dict[str, Any],
                                   client: Any = None) -> dict[str, Any]:
    """Answer the platform's conversation-initiation call for an agent whose shared secret checked out:
    the identified end user's fresh vault tokens as ``secret__`` dynamic variables (refreshed first when they
    expire soon; revoked, expired or unreadable ones are left out, never sent stale).

    Audits who was served and which variables (names only). Not atomic: a refresh calls the OAuth provider
    between two short transactions of the vault's own. `actor` is WEBHOOK_ACTOR: the platform is the caller,
    a system actor with its own label in the trail.
    """
    agent = Agent.objects.select_related("workspace").filter(uuid=agent_uuid).first()
    if agent is None or not agent.credential_webhook:
        raise WebhookRefused(404, "webhook_not_enabled", "The credential webhook is not on for this agent.")
    platform_agent = _text(payload.get("agent_id"))
    conversation = _text(payload.get("conversation_id"))[:128]
    if not platform_agent:
        raise _refuse(actor, agent, 400, "agent_id_required", "The call must name the agent (agent_id).",
                      conversation_id=conversation)
    if not agent.remote_id or platform_agent != agent.remote_id:
        raise _refuse(actor, agent, 403, "agent_mismatch", "This secret belongs to another agent.",
                      agent_id=platform_agent[:128], conversation_id=conversation)
    end_user_id, identified_by, session = _identify(agent, payload)
    withheld = ""
    if session is not None:
        if not _first_answer(session):
            raise _refuse(actor, agent, 409, "already_answered", "This conversation was already answered.",
                          conversation_id=session.conversation_id, end_user_id=end_user_id)
        if not session.key.carries_vault_tokens:
            # Whoever holds a key without the vault right names any end user it likes: it gets no tokens.
            withheld = "the session's broker key does not carry vault tokens"
    variables = _fresh_tokens(agent, end_user_id, client) if end_user_id and not withheld else {}
    changes = {"end_user_id": end_user_id, "identified_by": identified_by, "variables": sorted(variables),
               "conversation_id": conversation}
    if withheld:
        changes["withheld"] = withheld
    record(actor=actor, action="broker.webhook_answer", target=agent, workspace_id=agent.workspace_id,
           changes=changes)
    return {"type": ANSWER_TYPE, "dynamic_variables": variables}
