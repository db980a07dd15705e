"""Fresh tokens in the middle of a conversation: the token-refresh tool (added to and removed from an agent
through the outbox) and Keyward's answer when the platform calls it.

The tool is a platform webhook tool. It authenticates like the credential webhook (the agent's shared-secret
header, by reference to the platform workspace secret that holds it), sends the conversation and agent ids from
the platform's own system variables and the provider as a constant, and assigns the answer's ``access_token`` to
``secret__user_<provider>_token`` with ``sanitize`` on, so the token reaches the next tool calls' headers and never
the model or the transcript.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from agents.models import Agent
from broker.models import BrokerSession, RefreshTool
from broker.services._common import user_or_none
from broker.services.initiation import WebhookRefused
from project import access
from project.actors import SYSTEM, Actor, SystemActor
from project.audit.services import record
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue

logger = logging.getLogger(__name__)

REFRESH_TOOL_KIND = SyncKind.REFRESH_TOOL
PATH = "/api/v1/platform/token-refresh"
# The token-refresh tools' names on the platform start with this (broker.models.RefreshTool.tool_name); the
# secrets app's tool reconcile leaves them to the broker's.
TOOL_NAME_PREFIX = "kw_refresh_"
# How the tool's calls appear in the audit trail: the platform, authenticated by the agent's shared secret.
REFRESH_ACTOR = SystemActor("platform (token-refresh tool)")
DEFAULT_MAX_DURATION = 600  # the platform's default conversation limit, which Keyward pushes when none is set


def refresh_url() -> str:
    return settings.BROKER_PUBLIC_URL.rstrip("/") + PATH


def tool_config(tool: RefreshTool) -> dict[str, Any]:
    """The platform's webhook tool config for this agent and provider (no secret value: the header references the
    agent's webhook secret by its platform id)."""
    from agents.webhook import HEADER
    from secrets_app.validators import vault_variable

    agent, slug = tool.agent, tool.provider.slug
    if not agent.webhook_secret_remote_id:
        raise ValueError("the agent's webhook secret is not on the platform yet")
    return {
        "type": "webhook",
        "name": tool.tool_name,
        "description": (f"Fetch a fresh {tool.provider.name} access token for this conversation's user. Call it "
                        f"before a {tool.provider.name} tool call when the last one failed with an expired token, "
                        "or when the conversation has run for a long time."),
        "response_timeout_secs": 20,
        "api_schema": {
            "url": refresh_url(),
            "method": "POST",
            "request_headers": {HEADER: {"secret_id": agent.webhook_secret_remote_id}},
            "request_body_schema": {
                "type": "object",
                "required": ["conversation_id", "agent_id", "provider"],
                "properties": {
                    "conversation_id": {"type": "string", "dynamic_variable": "system__conversation_id"},
                    "agent_id": {"type": "string", "dynamic_variable": "system__agent_id"},
                    "provider": {"type": "string", "constant_value": slug},
                },
            },
        },
        "assignments": [{"source": "response", "dynamic_variable": vault_variable(slug), "value_path": "access_token",
                         "sanitize": True}],
    }


# --- adding and removing the tool (the agent's page) ------------------------------------------------------------
@transaction.atomic
def refresh_tool_add(*, actor: Actor, agent: Agent, provider: Any) -> RefreshTool:
    """Add the token-refresh tool for `provider` to `agent` (needs agents.manage): audited, and the outbox creates
    the tool on the platform and attaches it to the agent. Idempotent: adding it again returns the existing row
    and enqueues its sync again. Needs the credential webhook on (the tool authenticates with its secret)."""
    access.require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if provider.workspace_id != agent.workspace_id:
        raise ValidationError({"provider": "This provider belongs to another workspace."})
    if not agent.credential_webhook:
        raise ValidationError(f"Turn the credential webhook on for “{agent}” first: the token-refresh tool "
                              "authenticates with the agent's webhook secret and serves the conversations Keyward "
                              "brokered.")
    tool, created = RefreshTool.objects.get_or_create(agent=agent, provider=provider,
                                                      defaults={"created_by": user_or_none(actor)})
    if created:
        record(actor=actor, action="agent.refresh_tool_add", target=agent, workspace_id=agent.workspace_id,
               changes={"provider": provider.slug, "tool": tool.tool_name})
    job_enqueue(kind=REFRESH_TOOL_KIND, object_id=tool.pk, workspace_id=agent.workspace_id,
                object_repr=f"{tool.tool_name} on {agent.name}")
    return tool


@transaction.atomic
def refresh_tool_remove(*, actor: Actor, tool: RefreshTool) -> None:
    """Remove the token-refresh tool (needs agents.manage): audited; the outbox detaches it from the agent and
    deletes it on the platform (a pending create is folded into the delete)."""
    access.require(actor, "agents.manage", tool.agent.workspace_id)
    tool = RefreshTool.objects.select_for_update().select_related("agent", "provider").get(pk=tool.pk)
    agent = tool.agent
    record(actor=actor, action="agent.refresh_tool_remove", target=agent, workspace_id=agent.workspace_id,
           changes={"provider": tool.provider.slug, "tool": tool.tool_name})
    job_enqueue(kind=REFRESH_TOOL_KIND, object_id=tool.pk, op=SyncJob.Op.DELETE, workspace_id=agent.workspace_id,
                object_repr=f"{tool.tool_name} on {agent.name}",
                payload={"tool_id": tool.remote_id, "name": tool.tool_name, "agent_remote_id": agent.remote_id})
    tool.delete()


# --- the platform's call during a conversation -----------------------------------------------------------------
@dataclass(frozen=True)
class _Request:
    conversation_id: str
    agent_id: str
    provider: str


def _text(value: Any, limit: int = 128) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _parse(payload: dict[str, Any]) -> _Request:
    request = _Request(_text(payload.get("conversation_id")), _text(payload.get("agent_id")),
                       _text(payload.get("provider"), 40))
    if not request.conversation_id or not request.provider:
        raise WebhookRefused(400, "invalid_request", "conversation_id and provider are required.")
    return request


def _bookkeep(agent: Agent, provider: str, failure: str = "") -> None:
    """The tool's last call (and last failure) on its row, for the agent's page; not audited (the call is)."""
    now = timezone.now()
    changes: dict[str, Any] = {"last_call_at": now}
    if failure:
        changes.update(last_failure_at=now, last_failure=failure[:200])
    RefreshTool.objects.filter(agent=agent, provider__slug=provider).update(**changes)


def _refuse(actor: Actor, agent: Agent, request: _Request, status: int, code: str, message: str) -> WebhookRefused:
    record(actor=actor, action="broker.token_refresh_refused", target=agent, workspace_id=agent.workspace_id,
           changes={"reason": code, "conversation_id": request.conversation_id, "provider": request.provider,
                    "agent_id": request.agent_id})
    _bookkeep(agent, request.provider, f"{code}: {message}")
    return WebhookRefused(status, code, message)


def conversation_ended(session: BrokerSession, agent: Agent) -> bool:
    """Whether the conversation is over for certain: it had to start within its session's window and lasts at
    most the agent's maximum duration (which Keyward pushes to the platform)."""
    limit = agent.max_duration_seconds or DEFAULT_MAX_DURATION
    return timezone.now() > session.expires_at + timedelta(seconds=limit)


@sensitive_variables("token")
def token_refresh_answer(*, actor: Actor, agent_uuid: uuid.UUID, payload: dict[str, Any],
                         client: Any = None) -> dict[str, Any]:
    """Answer the token-refresh tool for an agent whose shared secret checked out: the access token of the end user
    bound to the conversation (by the session Keyward brokered, never a user named in the body) at the provider,
    refreshed through the vault first when it expires soon.

    Refused, and audited (``broker.token_refresh_refused``) with the reason: an agent id that does not match the
    secret's agent (403), a conversation Keyward did not broker for this agent (404: another workspace's or
    another agent's conversation included), a conversation that has ended (409), a provider the end user has not
    connected (404), a token the vault could not refresh (502). A success is audited as ``broker.token_refresh``
    (end user, provider, conversation, expiry; never the token).
    """
    request = _parse(payload)
    agent = Agent.objects.select_related("workspace").filter(uuid=agent_uuid).first()
    if agent is None or not agent.credential_webhook:
        raise WebhookRefused(404, "webhook_not_enabled", "The credential webhook is not on for this agent.")
    if not agent.remote_id or request.agent_id != agent.remote_id:
        raise _refuse(actor, agent, request, 403, "agent_mismatch", "This secret belongs to another agent.")
    session = (BrokerSession.objects.filter(agent=agent, conversation_id=request.conversation_id)
               .select_related("key").only("end_user_id", "expires_at", "created_at", "key__carries_vault_tokens")
               .first())
    if session is None:
        raise _refuse(actor, agent, request, 404, "conversation_not_brokered",
                      "Keyward brokered no such conversation for this agent.")
    if conversation_ended(session, agent):
        raise _refuse(actor, agent, request, 409, "conversation_ended", "This conversation has ended.")
    if not session.key.carries_vault_tokens:
        # The app named this end user with a key that has no vault right (issue 19): no token, as at initiation.
        raise _refuse(actor, agent, request, 403, "key_without_vault_right",
                      "The session was opened with a broker key that does not carry vault tokens.")
    try:
        from secrets_app.services import credential_fresh_token

        token, expires_at = credential_fresh_token(actor=SYSTEM, workspace=agent.workspace,
                                                   end_user_id=session.end_user_id, provider_slug=request.provider,
                                                   client=client)
    except ValidationError as exc:
        if exc.code == "not_connected":
            raise _refuse(actor, agent, request, 404, "provider_not_connected",
                          "The conversation's user has not connected this provider.") from None
        raise _refuse(actor, agent, request, 502, "refresh_failed",
                      "The provider did not renew the token; the user may need to sign in again.") from None
    except DatabaseError as exc:
        raise WebhookRefused(503, "vault_unavailable", "The credential vault is not available.") from exc
    record(actor=actor, action="broker.token_refresh", target=agent, workspace_id=agent.workspace_id,
           changes={"end_user_id": session.end_user_id, "provider": request.provider,
                    "conversation_id": request.conversation_id,
                    "expires_at": expires_at.isoformat() if expires_at else None})
    _bookkeep(agent, request.provider)
    return {"access_token": token, "provider": request.provider,
            "expires_at": expires_at.isoformat() if expires_at else None}
