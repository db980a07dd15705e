"""Turns an agent row into platform calls for the outbox."""

from __future__ import annotations

from typing import Any

from agents.models import Agent
from agents.services import AGENT_KIND, agent_mark_synced
from project.platform import errors
from project.sync.models import SyncJob
from project.sync.registry import register

DEFAULT_MAX_DURATION = 600  # the platform's default; sent explicitly so a removed limit is removed remotely


def agent_payload(agent: Agent) -> dict[str, Any]:
    conversation_config: dict[str, Any] = {
        "conversation": {"max_duration_seconds": agent.max_duration_seconds or DEFAULT_MAX_DURATION},
    }
    if agent.first_message:
        conversation_config["agent"] = {"first_message": agent.first_message}
    return {
        "name": agent.name,
        "conversation_config": conversation_config,
        "platform_settings": {"auth": agent.platform_auth()},
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
        remote_id = job.payload.get("remote_id") or _find_by_tag(client, job.payload.get("sync_tag", ""))
        if remote_id:
            try:
                client.delete_agent(remote_id)
            except errors.NotFound:
                pass  # already gone: the delete is done
        return remote_id
    agent = Agent.objects.filter(pk=job.object_id).first()
    if agent is None:
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
    if job.attempts > 1 or agent.remote_id:
        remote_id = _find_by_tag(client, agent.sync_tag) or ""
    if not remote_id:
        remote_id = client.create_agent(idempotency_key=str(job.idempotency_key), **body)
    else:
        client.update_agent(remote_id, **body)
    agent_mark_synced(agent_id=agent.pk, remote_id=remote_id)
    return remote_id
