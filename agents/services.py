"""Every write to agents: their connection policy and their credential webhook; each one audited and synced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from project import access
from project.actors import Actor
from project.audit.services import diff, record
from project.platform import errors as platform_errors
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from workspaces.models import Environment, Workspace

AGENT_KIND = SyncKind.AGENT
AGENT_FIELDS = ("name", "first_message", "auth_mode", "allowlist", "require_origin_header", "max_duration_seconds",
                "allow_shareable_link")


def _snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}




# --- agents --------------------------------------------------------------------------------------------
def _enqueue_agent(agent: Agent, op: str = SyncJob.Op.UPSERT, payload: dict | None = None) -> None:
    job_enqueue(kind=AGENT_KIND, object_id=agent.pk, op=op, workspace_id=agent.workspace_id,
                object_repr=agent.name, payload=payload)


@transaction.atomic
def agent_create(*, actor: Actor, workspace: Workspace, name: str, auth_mode: str = Agent.AuthMode.SIGNED,
                 allowlist: list[str] | None = None, require_origin_header: bool = True,
                 max_duration_seconds: int | None = None, first_message: str = "",
                 allow_shareable_link: bool = False) -> Agent:
    """Create an agent with its connection policy; audits the creation and enqueues the platform create."""
    access.require(actor, "agents.manage", workspace.pk)
    agent = Agent(workspace=workspace, name=name, auth_mode=auth_mode, allowlist=list(allowlist or []),
                  require_origin_header=require_origin_header, max_duration_seconds=max_duration_seconds,
                  first_message=first_message, allow_shareable_link=allow_shareable_link,
                  created_by=actor if getattr(actor, "is_authenticated", False) else None)
    agent.full_clean()
    agent.save()
    record(actor=actor, action="agent.create", target=agent, workspace_id=workspace.pk,
           changes=diff({}, _snapshot(agent, AGENT_FIELDS)))
    _enqueue_agent(agent)
    return agent


@transaction.atomic
def agent_update(*, actor: Actor, agent: Agent, **fields: Any) -> Agent:
    """Change an agent's name, first message or connection policy; audits the field changes and enqueues
    the platform update (coalesced with any pending one)."""
    access.require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before = _snapshot(agent, AGENT_FIELDS)
    for key, value in fields.items():
        if key not in AGENT_FIELDS:
            raise TypeError(f"agent_update() got an unexpected field {key!r}")
        setattr(agent, key, list(value) if key == "allowlist" else value)
    agent.full_clean()
    changes = diff(before, _snapshot(agent, AGENT_FIELDS))
    if not changes:
        return agent
    agent.save()
    record(actor=actor, action="agent.update", target=agent, workspace_id=agent.workspace_id, changes=changes)
    _enqueue_agent(agent)
    return agent


@transaction.atomic
def agent_delete(*, actor: Actor, agent: Agent) -> None:
    """Delete an agent Keyward created, here and on the platform (by remote id, if it has one); audited.

    An adopted agent (built on the platform) is only forgotten: Keyward stops governing it and the platform keeps
    it untouched, with whatever security settings it has (audited as agent.forget)."""
    access.require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    forget = agent.origin == Agent.Origin.ADOPTED
    record(actor=actor, action="agent.forget" if forget else "agent.delete", target=agent,
           workspace_id=agent.workspace_id, changes=diff(_snapshot(agent, AGENT_FIELDS), {}))
    payload = {"remote_id": agent.remote_id, "sync_tag": agent.sync_tag, "name": agent.name,
               "webhook_secret_id": "" if forget else agent.webhook_secret_remote_id}
    if forget:
        payload["forget"] = True
    _enqueue_agent(agent, op=SyncJob.Op.DELETE, payload=payload)
    agent.delete()


@transaction.atomic
def agent_recreate(*, actor: Actor, agent: Agent) -> Agent:
    """Make an agent Keyward created again on the platform after it was deleted there (the drift page's
    "Recreate from Keyward"). Refused for an adopted agent: its content was the team's, and Keyward never had it.
    Audited; enqueues the create."""
    access.require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.origin != Agent.Origin.KEYWARD:
        raise ValidationError("Only an agent Keyward created can be recreated from Keyward; forget this one, or "
                              "adopt the platform's copy again if it comes back.")
    old = agent.remote_id
    agent.remote_id, agent.missing_since = "", None
    agent.save(update_fields=["remote_id", "missing_since", "updated_at"])
    record(actor=actor, action="agent.recreate", target=agent, workspace_id=agent.workspace_id,
           changes={"remote_id": [old, None]})
    _enqueue_agent(agent)
    return agent


@transaction.atomic
def agent_policy_restore(*, actor: Actor, agent: Agent, reason: str) -> bool:
    """Push the agent's policy as Keyward holds it to the platform again (a guardrail in enforce mode found the
    platform's copy changed). Nothing changes locally. Audited as ``agent.policy_restore`` with the reason (the
    rule's name); enqueues the push. False (nothing done) for an agent not on the platform."""
    access.require(actor, "agents.manage", agent.workspace_id)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if not agent.remote_id or agent.missing_since is not None:
        return False
    record(actor=actor, action="agent.policy_restore", target=agent, workspace_id=agent.workspace_id,
           changes={"reason": reason})
    _enqueue_agent(agent)
    return True


def agent_mark_missing(*, agent_id: int, missing: bool = True) -> None:
    """For the outbox: the platform no longer has the agent (or has it again). Bookkeeping, not audited: the
    drift report and the agent's page show it, and a person decides (recreate or forget)."""
    Agent.objects.filter(pk=agent_id).update(missing_since=timezone.now() if missing else None,
                                             updated_at=timezone.now())


def agent_mark_synced(*, agent_id: int, remote_id: str) -> None:
    """Store the platform's agent id after a create (a system bookkeeping write, not audited as a change)."""
    Agent.objects.filter(pk=agent_id).exclude(remote_id=remote_id).update(remote_id=remote_id,
                                                                          updated_at=timezone.now())


# --- the session broker ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MintedCredential:
    """A short-lived credential for one conversation. Shown once to the caller; never stored or logged."""

    kind: str
    value: str
    expires_at: datetime | None
    conversation_id: str = ""
    environment: str = ""


def _mintable(actor: Actor, agent: Agent, environment: Environment) -> Agent:
    access.require(actor, "sessions.mint", agent.workspace_id)
    agent = Agent.objects.select_related("workspace").get(pk=agent.pk)
    if environment.workspace_id != agent.workspace_id:
        raise ValidationError({"environment": "This environment belongs to another workspace."})
    if agent.auth_mode != Agent.AuthMode.SIGNED:
        raise ValidationError(f"“{agent}” uses the {agent.get_auth_mode_display().lower()} policy; signed URLs and "
                              "conversation tokens exist only for signed-URL agents.")
    if not agent.remote_id:
        raise ValidationError(f"“{agent}” has not reached the platform yet (sync pending); try again shortly.")
    return agent


def _mint_failed(exc: platform_errors.PlatformError) -> ValidationError:
    return ValidationError(f"The platform refused to mint a credential: {exc.message or exc.code}")


def agent_mint_signed_url(*, actor: Actor, agent: Agent, environment: Environment,
                          client: Any = None) -> MintedCredential:
    """Ask the platform for a signed URL (valid 15 minutes) with the server-held key; audits the mint
    without the URL. Nothing is stored and nothing is enqueued."""
    from project.platform.client import client_for_workspace

    agent = _mintable(actor, agent, environment)
    try:
        url = (client or client_for_workspace(agent.workspace_id)).get_signed_url(
            agent.remote_id, environment=environment.platform_environment)
    except platform_errors.PlatformError as exc:
        raise _mint_failed(exc) from exc
    expires_at = timezone.now() + timedelta(seconds=settings.SIGNED_URL_TTL_SECONDS)
    record(actor=actor, action="agent.mint_signed_url", target=agent, workspace_id=agent.workspace_id,
           changes={"environment": environment.name, "expires_at": expires_at.isoformat()})
    return MintedCredential("signed_url", url, expires_at, environment=environment.name)


def agent_mint_conversation_token(*, actor: Actor, agent: Agent, environment: Environment,
                                  participant_name: str | None = None, client: Any = None) -> MintedCredential:
    """Ask the platform for a WebRTC conversation token; audits the mint (conversation id, never the token)."""
    from project.platform.client import client_for_workspace

    agent = _mintable(actor, agent, environment)
    try:
        result = (client or client_for_workspace(agent.workspace_id)).get_conversation_token(
            agent.remote_id, environment=environment.platform_environment, participant_name=participant_name)
    except platform_errors.PlatformError as exc:
        raise _mint_failed(exc) from exc
    # The platform publishes no lifetime for conversation tokens; Keyward shows the signed-URL window as the
    # time within which the conversation must start.
    expires_at = timezone.now() + timedelta(seconds=settings.SIGNED_URL_TTL_SECONDS)
    record(actor=actor, action="agent.mint_conversation_token", target=agent, workspace_id=agent.workspace_id,
           changes={"environment": environment.name, "conversation_id": result.get("conversation_id", "")})
    return MintedCredential("conversation_token", result["token"], expires_at,
                            conversation_id=result.get("conversation_id", ""), environment=environment.name)


# --- the credential webhook (answered by the broker app) ------------------------------------------------
WEBHOOK_FIELDS = ("credential_webhook", "credential_webhook_caller_id")


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
def agent_credential_webhook_set(*, actor: Actor, agent: Agent, enabled: bool, trust_caller_id: bool = False) -> Agent:
    """Turn the conversation-initiation webhook on or off for an agent (needs agents.manage). Audits the change
    and enqueues the agent's sync, which sets ``workspace_overrides.conversation_initiation_client_data_webhook``
    (Keyward's URL and the agent's shared-secret header) and
    ``overrides.enable_conversation_initiation_client_data_from_webhook`` on the platform, or clears both.

    End users are identified by the sessions Keyward mints (signed-URL agents), or, when `trust_caller_id`, by
    a phone call's caller id; an agent with neither could identify nobody, so that is refused.
    """
    access.require(actor, "agents.manage", agent.workspace_id)
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
def agent_credential_webhooks_push(*, actor: Actor) -> int:
    """Enqueue the sync of every agent whose webhook Keyward manages (after BROKER_WEBHOOK_KEY or
    BROKER_PUBLIC_URL changed, the platform must get the new header or URL). System actor; audited per run."""
    ids = list(Agent.objects.filter(credential_webhook_changed_at__isnull=False)
               .values_list("pk", "workspace_id", "name"))
    for pk, workspace_id, name in ids:
        job_enqueue(kind=AGENT_KIND, object_id=pk, workspace_id=workspace_id, object_repr=name)
    record(actor=actor, action="agent.credential_webhooks_push", object_type="agents.agent",
           changes={"agents": len(ids)})
    return len(ids)
