"""Turns a token-refresh tool row into platform calls for the outbox: create (or find) the webhook tool, keep its
config current, attach it to the agent; on removal detach it and delete it."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

from broker.models import RefreshTool
from broker.services.refresh import REFRESH_TOOL_KIND, TOOL_NAME_PREFIX, tool_config
from project.platform import errors
from project.sync.models import SyncJob
from project.sync.registry import (
    DIFFERS,
    MISSING_REMOTELY,
    UNKNOWN_LOCALLY,
    DriftItem,
    LocalObject,
    in_scope,
    register,
    register_objects,
    register_reconciler,
)

logger = logging.getLogger(__name__)


class WaitingForAgent(errors.Unavailable):
    """The agent (or its webhook secret) is not on the platform yet: retried with backoff, not failed."""


def _tool_ids(remote_agent: dict[str, Any]) -> list[str]:
    prompt = ((remote_agent.get("conversation_config") or {}).get("agent") or {}).get("prompt") or {}
    ids = prompt.get("tool_ids") if isinstance(prompt, dict) else None
    return [t for t in ids if isinstance(t, str)] if isinstance(ids, list) else []


def _set_tool_ids(client: Any, agent_remote_id: str, remote_agent: dict[str, Any], tool_ids: list[str]) -> None:
    """Read-modify-write of the agent's conversation_config: only prompt.tool_ids changes, the rest is sent back
    as the platform has it (right whether PATCH merges nested objects or replaces them)."""
    config = copy.deepcopy(remote_agent.get("conversation_config") or {})
    agent_part = config.setdefault("agent", {})
    prompt = agent_part.get("prompt")
    if not isinstance(prompt, dict):
        prompt = agent_part["prompt"] = {}
    prompt["tool_ids"] = tool_ids
    client.update_agent(agent_remote_id, conversation_config=config)


def _find_by_name(client: Any, name: str) -> str:
    """A create whose answer was lost made the tool already: find it by its name (unique to agent and provider)."""
    return next((str(t["id"]) for t in client.iter_tools() if (t.get("tool_config") or {}).get("name") == name), "")


@register(REFRESH_TOOL_KIND)
def push_refresh_tool(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        tool_id = job.payload.get("tool_id") or _find_by_name(client, job.payload.get("name", ""))
        agent_remote_id = job.payload.get("agent_remote_id")
        if tool_id and agent_remote_id:
            try:
                remote_agent = client.get_agent(agent_remote_id)
                ids = _tool_ids(remote_agent)
                if tool_id in ids:
                    _set_tool_ids(client, agent_remote_id, remote_agent, [t for t in ids if t != tool_id])
            except errors.NotFound:
                pass  # the agent is gone: nothing to detach from
        if tool_id:
            try:
                client.delete_tool(tool_id)
            except errors.NotFound:
                pass  # already gone: the delete is done
        return tool_id or None
    tool = RefreshTool.objects.select_related("agent", "provider").filter(pk=job.object_id).first()
    if tool is None:
        return None  # removed since; its delete job carries the ids
    agent = tool.agent
    if not agent.remote_id or not agent.webhook_secret_remote_id:
        raise WaitingForAgent("waiting for the agent and its webhook secret to reach the platform",
                              code="waiting_for_agent")
    config = tool_config(tool)
    tool_id = tool.remote_id
    if tool_id:
        try:
            client.update_tool(tool_id, tool_config=config)
        except errors.NotFound:
            tool_id = ""  # deleted on the platform behind Keyward's back: make it again
    if not tool_id:
        tool_id = _find_by_name(client, tool.tool_name)
        if tool_id:
            client.update_tool(tool_id, tool_config=config)
        else:
            tool_id = str(client.create_tool(tool_config=config, idempotency_key=f"refresh-tool-{tool.pk}")["id"])
        if not RefreshTool.objects.filter(pk=tool.pk).update(remote_id=tool_id):
            client.delete_tool(tool_id)  # removed meanwhile: leave nothing behind
            return None
    remote_agent = client.get_agent(agent.remote_id)
    ids = _tool_ids(remote_agent)
    if tool_id not in ids:
        _set_tool_ids(client, agent.remote_id, remote_agent, [*ids, tool_id])
    RefreshTool.objects.filter(pk=tool.pk).update(state=RefreshTool.State.ATTACHED)
    return tool_id


# --- reconcile ----------------------------------------------------------------------------------------------------
def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    schema = config.get("api_schema") or {}
    return {"url": schema.get("url"), "method": schema.get("method") or "GET",
            "request_headers": schema.get("request_headers") or {}, "assignments": config.get("assignments") or []}


@register_reconciler(REFRESH_TOOL_KIND)
def reconcile_refresh_tools(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    """Every token-refresh tool against the platform: gone, changed (URL, header reference, assignment) or no longer
    attached to its agent; then every ``kw_refresh_…`` tool on the platform no row accounts for (left behind)."""
    remote = {str(t["id"]): t for t in client.iter_tools()
              if str((t.get("tool_config") or {}).get("name") or "").startswith(TOOL_NAME_PREFIX)}
    tools = in_scope(RefreshTool.objects.select_related("agent", "provider").order_by("pk"), workspace_ids,
                     "agent__workspace_id")
    matched: set[str] = set()
    for tool in tools:
        item = dict(kind=REFRESH_TOOL_KIND, object_id=tool.pk, workspace_id=tool.agent.workspace_id,
                    label=f"{tool.tool_name} on {tool.agent.name}")
        found = remote.get(tool.remote_id) if tool.remote_id else None
        if found is None:
            if tool.state == RefreshTool.State.ATTACHED or tool.remote_id:
                yield DriftItem(remote_id=tool.remote_id or None, problem=MISSING_REMOTELY, **item)
            continue
        matched.add(tool.remote_id)
        fields: dict[str, list[Any]] = {}
        try:
            mine = _comparable(tool_config(tool))
        except ValueError:
            mine = None  # the agent's webhook secret is not on the platform: the agent's own drift says so
        if mine is not None:
            theirs = _comparable(found.get("tool_config") or {})
            fields.update({k: [v, theirs[k]] for k, v in mine.items() if v != theirs[k]})
        if tool.agent.remote_id:
            try:
                attached = tool.remote_id in _tool_ids(client.get_agent(tool.agent.remote_id))
            except errors.NotFound:
                attached = False
            if not attached:
                fields["attached"] = [True, False]
        if fields:
            yield DriftItem(remote_id=tool.remote_id, problem=DIFFERS, fields=fields, **item)
    for tool_id, found in remote.items():
        if tool_id not in matched:
            yield DriftItem(kind=REFRESH_TOOL_KIND, object_id=None, remote_id=tool_id, problem=UNKNOWN_LOCALLY,
                            label=str((found.get("tool_config") or {}).get("name") or ""))


@register_objects(REFRESH_TOOL_KIND)
def refresh_tool_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in (RefreshTool.objects.order_by("pk")
                                   .values_list("pk", "agent__workspace_id", "agent__name").iterator()):
        yield LocalObject(pk, workspace_id, f"token-refresh tool on {name}")
