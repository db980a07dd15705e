"""The credential webhook: turning it on for an agent, and answering the platform's call at conversation start."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents.models import Agent
from agents.services import AGENT_KIND
from broker.models import BrokerSession
from broker.services._common import require
from broker.validators import validate_end_user_id
from project.audit.services import diff, record
from project.sync.services import job_enqueue

logger = logging.getLogger(__name__)

ANSWER_TYPE = "conversation_initiation_client_data"
SECRET_PREFIX = "secret__"
# How the webhook appears in the audit trail: the platform, authenticated by the agent's shared secret.
WEBHOOK_ACTOR = "platform (conversation-initiation webhook)"
WEBHOOK_FIELDS = ("credential_webhook", "credential_webhook_caller_id")


class WebhookRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def webhook_problem(agent: Agent, *, enabled: bool, trust_caller_id: bool) -> str | None:
    """Why the webhook cannot be turned on for this agent, or None (the admin form asks before saving)."""
    if not enabled:
        return None
    if agent.auth_mode != Agent.AuthMode.SIGNED and not trust_caller_id:
        return (f"“{agent}” is not a signed-URL agent, so Keyward mints none of its sessions and could identify "
                "no end user: use the signed policy, or identify phone callers by caller id.")
    if getattr(settings, "PRODUCTION", False) and not settings.BROKER_PUBLIC_URL.startswith("https://"):
        return "BROKER_PUBLIC_URL must be an https URL before the platform may call the webhook."
    return None


@transaction.atomic
def agent_credential_webhook_set(*, actor: Any, agent: Agent, enabled: bool, trust_caller_id: bool = False) -> Agent:
    """Turn the conversation-initiation webhook on or off for an agent (needs agents.manage). Audits the change
    and enqueues the agent's sync, which sets ``workspace_overrides.conversation_initiation_client_data_webhook``
    (Keyward's URL and the agent's shared-secret header) and
    ``overrides.enable_conversation_initiation_client_data_from_webhook`` on the platform, or clears both.

    End users are identified by the sessions Keyward mints (signed-URL agents), or, when `trust_caller_id`, by
    a phone call's caller id; an agent with neither could identify nobody, so that is refused.
    """
    require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before = {f: getattr(agent, f) for f in WEBHOOK_FIELDS}
    trust_caller_id = bool(enabled and trust_caller_id)
    problem = webhook_problem(agent, enabled=enabled, trust_caller_id=trust_caller_id)
    if problem:
        raise ValidationError(problem)
    agent.credential_webhook, agent.credential_webhook_caller_id = bool(enabled), trust_caller_id
    changes = diff(before, {f: getattr(agent, f) for f in WEBHOOK_FIELDS})
    if not changes:
        return agent
    agent.credential_webhook_changed_at = timezone.now()
    agent.full_clean()
    agent.save(update_fields=[*WEBHOOK_FIELDS, "credential_webhook_changed_at", "updated_at"])
    record(actor=actor, action="agent.credential_webhook", target=agent, workspace_id=agent.workspace_id,
           changes=changes)
    job_enqueue(kind=AGENT_KIND, object_id=agent.pk, workspace_id=agent.workspace_id, object_repr=agent.name)
    return agent


@transaction.atomic
def agent_credential_webhooks_push(*, actor: Any = None) -> int:
    """Enqueue the sync of every agent whose webhook Keyward manages (after BROKER_WEBHOOK_KEY or
    BROKER_PUBLIC_URL changed, the platform must get the new header or URL). System actor; audited per run."""
    ids = list(Agent.objects.filter(credential_webhook_changed_at__isnull=False)
               .values_list("pk", "workspace_id", "name"))
    for pk, workspace_id, name in ids:
        job_enqueue(kind=AGENT_KIND, object_id=pk, workspace_id=workspace_id, object_repr=name)
    record(actor=actor, action="agent.credential_webhooks_push", object_type="agents.agent",
           changes={"agents": len(ids)})
    return len(ids)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _identify(agent: Agent, payload: dict[str, Any]) -> tuple[str, str]:
    """(end user id, how it was found) from the platform's call, or ("", "none").

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
        end_user = (BrokerSession.objects.filter(agent=agent, conversation_id=conversation_id[:128],
                                                 expires_at__gt=timezone.now())
                    .values_list("end_user_id", flat=True).first())
        if end_user:
            return end_user, "session"
    if agent.credential_webhook_caller_id:
        caller = _text(payload.get("caller_id")) or _text(variables.get("system__caller_id"))
        try:
            validate_end_user_id(caller)
        except ValidationError:
            return "", "none"
        return caller, "caller_id"
    return "", "none"


def _fresh_tokens(agent: Agent, end_user_id: str, client: Any) -> dict[str, str]:
    try:
        from secrets_app.services import credential_fresh_tokens
    except ImportError as exc:
        raise WebhookRefused(503, "vault_unavailable", "The credential vault is not available.") from exc
    try:
        tokens = credential_fresh_tokens(actor=None, workspace=agent.workspace, end_user_id=end_user_id,
                                         client=client)
    except DatabaseError as exc:
        raise WebhookRefused(503, "vault_unavailable", "The credential vault is not available.") from exc
    # The vault names its variables (secret__user_<provider>_token); a bare provider name gets the prefix, so
    # a value can only ever travel as a secret__ variable (tool headers, never the model or the browser).
    return {(name if name.startswith(SECRET_PREFIX) else f"{SECRET_PREFIX}{name}"): value
            for name, value in tokens.items() if isinstance(value, str) and value}


@sensitive_variables("variables")
def conversation_initiation_answer(*, actor: Any = None, agent_uuid: uuid.UUID, payload: dict[str, Any],
                                   client: Any = None) -> dict[str, Any]:
    """Answer the platform's conversation-initiation call for an agent whose shared secret checked out:
    the identified end user's fresh vault tokens as ``secret__`` dynamic variables (refreshed first when they
    expire soon; revoked, expired or unreadable ones are left out, never sent stale).

    Audits who was served and which variables (names only). Not atomic: a refresh calls the OAuth provider
    between two short transactions of the vault's own. `actor` is the system (None): the platform is the
    caller, recorded as WEBHOOK_ACTOR.
    """
    agent = Agent.objects.select_related("workspace").filter(uuid=agent_uuid).first()
    if agent is None or not agent.credential_webhook:
        raise WebhookRefused(404, "webhook_not_enabled", "The credential webhook is not on for this agent.")
    platform_agent = _text(payload.get("agent_id"))
    if platform_agent and agent.remote_id and platform_agent != agent.remote_id:
        raise WebhookRefused(403, "agent_mismatch", "This secret belongs to another agent.")
    end_user_id, identified_by = _identify(agent, payload)
    variables = _fresh_tokens(agent, end_user_id, client) if end_user_id else {}
    record(actor=actor or WEBHOOK_ACTOR, action="broker.webhook_answer", target=agent,
           workspace_id=agent.workspace_id,
           changes={"end_user_id": end_user_id, "identified_by": identified_by, "variables": sorted(variables),
                    "conversation_id": _text(payload.get("conversation_id"))[:128]})
    return {"type": ANSWER_TYPE, "dynamic_variables": variables}
