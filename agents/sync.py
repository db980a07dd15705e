"""Turns an agent row into platform calls for the outbox, and compares agents with the platform's copies."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from agents.models import Agent
from agents.services import AGENT_KIND, agent_mark_synced
from project.platform import errors
from project.sync.models import SyncJob
from project.sync.registry import (
    DIFFERS,
    MISSING_REMOTELY,
    UNKNOWN_LOCALLY,
    DriftItem,
    LocalObject,
    register,
    register_objects,
    register_reconciler,
    report_progress,
)
from project.sync.selectors import attempted_before

DEFAULT_MAX_DURATION = 600  # the platform's default; sent explicitly so a removed limit is removed remotely


def agent_payload(agent: Agent) -> dict[str, Any]:
    conversation_config: dict[str, Any] = {
        "conversation": {"max_duration_seconds": agent.max_duration_seconds or DEFAULT_MAX_DURATION},
    }
    if agent.first_message:
        conversation_config["agent"] = {"first_message": agent.first_message}
    platform_settings: dict[str, Any] = {"auth": agent.platform_auth()}
    if agent.credential_webhook_changed_at is not None:
        # Only once Keyward has managed the initiation webhook: a webhook set by hand on the platform survives.
        # Imported here: the broker app builds on agents, not the other way round.
        from broker.webhook import platform_settings as webhook_settings

        platform_settings.update(webhook_settings(agent))
    return {
        "name": agent.name,
        "conversation_config": conversation_config,
        "platform_settings": platform_settings,
        "tags": [agent.sync_tag],
    }


def _find_by_tag(client: Any, tag: str) -> str | None:
    """An earlier attempt may have created the agent and lost the response: find it by its tag."""
    for summary in client.iter_agents():
        if tag in (summary.get("tags") or []):
            return summary["agent_id"]
    return None


@register(AGENT_KIND)
def push_agent(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        remote_id = job.payload.get("remote_id")
        if not remote_id and attempted_before(job):
            # A create may have landed unrecorded; an agent no job ever tried was never created (no listing).
            remote_id = _find_by_tag(client, job.payload.get("sync_tag", ""))
        if remote_id:
            try:
                client.delete_agent(remote_id)
            except errors.NotFound:
                pass  # already gone: the delete is done
        return remote_id
    try:
        # get(), not first(): first() would order by the model's ordering, a join with the workspace per job.
        agent = Agent.objects.get(pk=job.object_id)
    except Agent.DoesNotExist:
        return None  # deleted since; its delete job carries the remote id
    body = agent_payload(agent)
    remote_id = agent.remote_id
    if remote_id:
        try:
            client.update_agent(remote_id, **body)
            return remote_id
        except errors.NotFound:
            # Deleted on the platform behind Keyward's back: the database is the truth, so recreate it.
            remote_id = ""
    if agent.remote_id or attempted_before(job):
        remote_id = _find_by_tag(client, agent.sync_tag) or ""
    if not remote_id:
        remote_id = client.create_agent(idempotency_key=str(job.idempotency_key), **body)
    else:
        client.update_agent(remote_id, **body)
    agent_mark_synced(agent_id=agent.pk, remote_id=remote_id)
    return remote_id


# --- reconcile -----------------------------------------------------------------------------------------------
TAG_PREFIX = "keyward-"
AUTH_FIELDS = ("enable_auth", "allowlist", "require_origin_header")


WEBHOOK_ENABLED = "platform_settings.overrides.enable_conversation_initiation_client_data_from_webhook"
WEBHOOK_URL = "platform_settings.workspace_overrides.conversation_initiation_client_data_webhook.url"
WEBHOOK_SECRET = "platform_settings.workspace_overrides.conversation_initiation_client_data_webhook.secret_header"
# The webhook's secret header is compared, never reported: drift shows one of these labels, not the value.
SECRET_CURRENT, SECRET_OTHER, SECRET_NONE = "Keyward's current secret", "another value", "none"


def _comparable(agent: Agent) -> dict[str, Any]:
    auth = agent.platform_auth()
    state: dict[str, Any] = {"name": agent.name,
                             "max_duration_seconds": agent.max_duration_seconds or DEFAULT_MAX_DURATION}
    for name in AUTH_FIELDS:
        state[f"platform_settings.auth.{name}"] = auth[name]
    if agent.credential_webhook_changed_at is not None:
        # Compared only once Keyward manages the initiation webhook (as agent_payload sends it only then).
        from broker.webhook import webhook_url

        enabled = bool(agent.credential_webhook)
        state[WEBHOOK_ENABLED] = enabled
        state[WEBHOOK_URL] = webhook_url() if enabled else None
        state[WEBHOOK_SECRET] = SECRET_CURRENT if enabled else SECRET_NONE
    return state


def _remote_comparable(remote: dict[str, Any], agent: Agent) -> dict[str, Any]:
    # Only what Keyward owns; shareable_token and the rest of the agent are the platform's business.
    platform_settings = remote.get("platform_settings") or {}
    auth = platform_settings.get("auth") or {}
    conversation = (remote.get("conversation_config") or {}).get("conversation") or {}
    state: dict[str, Any] = {"name": remote.get("name"),
                             "max_duration_seconds": conversation.get("max_duration_seconds")}
    for name in AUTH_FIELDS:
        state[f"platform_settings.auth.{name}"] = auth.get(name)
    if agent.credential_webhook_changed_at is not None:
        from broker.webhook import HEADER, agent_secret

        overrides = platform_settings.get("overrides") or {}
        hook = (platform_settings.get("workspace_overrides") or {}).get("conversation_initiation_client_data_webhook")
        hook = hook if isinstance(hook, dict) else {}
        headers = hook.get("request_headers") or {}
        presented = next((v for k, v in headers.items() if k.lower() == HEADER.lower()), None)
        state[WEBHOOK_ENABLED] = bool(overrides.get("enable_conversation_initiation_client_data_from_webhook"))
        state[WEBHOOK_URL] = hook.get("url") or None
        if not presented:
            state[WEBHOOK_SECRET] = SECRET_NONE
        elif not isinstance(presented, str):
            state[WEBHOOK_SECRET] = SECRET_OTHER  # e.g. a platform secret reference set by hand
        else:
            # Signed with an older BROKER_WEBHOOK_KEY still verifies, but is reported so the agent is re-pushed
            # before that key is dropped.
            current = hmac.compare_digest(presented.encode("utf-8"), agent_secret(agent).encode("utf-8"))
            state[WEBHOOK_SECRET] = SECRET_CURRENT if current else SECRET_OTHER
    return state


def _normalised(field: str, value: Any) -> Any:
    if field == "platform_settings.auth.allowlist":
        # Order carries no meaning on the platform; compare the hostnames as a set, report them sorted.
        return sorted(h.get("hostname", "") if isinstance(h, dict) else str(h) for h in (value or []))
    return value


def agent_differences(agent: Agent, remote: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [local, remote]} for the fields Keyward sets on the platform (no secret among them: the
    webhook's secret header is reported as a label, never as its value)."""
    local, theirs = _comparable(agent), _remote_comparable(remote, agent)
    differences = {}
    for field, value in local.items():
        mine, other = _normalised(field, value), _normalised(field, theirs[field])
        if mine != other:
            differences[field] = [mine, other]
    return differences


@register_reconciler(AGENT_KIND)
def reconcile_agents(client: Any) -> Iterator[DriftItem]:
    """Every local agent against its remote copy (by remote id, else by its Keyward tag), then every remote
    agent no local agent accounts for: untagged, tagged for an agent Keyward no longer has, or a duplicate."""
    remote = {summary["agent_id"]: summary for summary in client.iter_agents()}
    by_tag: dict[str, list[str]] = {}
    for agent_id, summary in remote.items():
        for tag in summary.get("tags") or []:
            if tag.startswith(TAG_PREFIX):
                by_tag.setdefault(tag, []).append(agent_id)
    local = list(Agent.objects.order_by("pk"))
    matched: set[str] = set()
    report_progress(0, len(local))
    for done, agent in enumerate(local, 1):
        remote_id = agent.remote_id or next(iter(by_tag.get(agent.sync_tag, [])), "")
        found = None
        if remote_id:
            try:
                # Also finds an archived agent, which the default listing leaves out.
                found = client.get_agent(remote_id)
            except errors.NotFound:
                found = None
        item = dict(kind=AGENT_KIND, object_id=agent.pk, workspace_id=agent.workspace_id, label=agent.name)
        if found is None:
            yield DriftItem(remote_id=agent.remote_id or None, problem=MISSING_REMOTELY, **item)
        else:
            matched.add(remote_id)
            differences = agent_differences(agent, found)
            if remote_id != agent.remote_id:
                differences["remote_id"] = [agent.remote_id, remote_id]
            if differences:
                yield DriftItem(remote_id=remote_id, problem=DIFFERS, fields=differences, **item)
        report_progress(done, len(local))
    for agent_id, summary in remote.items():
        if agent_id not in matched:
            yield DriftItem(kind=AGENT_KIND, object_id=None, remote_id=agent_id, problem=UNKNOWN_LOCALLY,
                            label=summary.get("name") or "")


@register_objects(AGENT_KIND)
def agent_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in Agent.objects.order_by("pk").values_list("pk", "workspace_id", "name").iterator():
        yield LocalObject(pk, workspace_id, name)
