"""Webhook tools and their secret references, kept in step in the same transaction as every tool save."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from project import access
from project.actors import Actor
from project.audit.services import diff, record
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from secrets_app.models import OAuthProvider, Secret, Tool, ToolSecretReference
from secrets_app.services._common import snapshot, user_or_none
from secrets_app.validators import HeaderSpec, parse_headers
from workspaces.models import Workspace

TOOL_KIND = SyncKind.TOOL
TOOL_FIELDS = ("name", "description", "url", "method", "headers", "response_timeout_secs")
PERMISSION = "secrets.manage"


def resolve_headers(*, workspace: Workspace, headers: Any, lock: bool = False) -> tuple[list[HeaderSpec],
                                                                                         dict[str, Secret]]:
    """Parse header templates and resolve their references in this workspace.

    Raises ValidationError({"headers": [...]}) naming each bad header: syntax, mixed text around a
    reference, an inline credential, an unknown secret or an unknown vault provider. With lock=True the
    referenced secrets are locked, so none can be deleted or renamed before this transaction commits.
    """
    try:
        specs = parse_headers(headers)
    except ValidationError as exc:
        raise ValidationError({"headers": exc.messages}) from None
    names = {s.text for s in specs if s.kind == "secret"}
    query = Secret.objects.filter(workspace=workspace, name__in=names).defer("value").order_by("pk")
    if lock:
        query = query.select_for_update()
    found = {s.name: s for s in query} if names else {}
    slugs = {s.text for s in specs if s.kind == "vault"}
    providers = set(OAuthProvider.objects.filter(workspace=workspace, slug__in=slugs).values_list("slug", flat=True))
    problems = []
    for spec in specs:
        if spec.kind == "secret" and spec.text not in found:
            problems.append(f"Header {spec.name}: there is no secret named “{spec.text}” in this workspace "
                            "(create it first, or fix the name).")
        if spec.kind == "vault" and spec.text not in providers:
            problems.append(f"Header {spec.name}: there is no OAuth provider “{spec.text}” in this workspace, so "
                            f"secret__user_{spec.text}_token will never be set.")
    if problems:
        raise ValidationError({"headers": problems})
    return specs, found


def _index_references(tool: Tool, specs: list[HeaderSpec], secrets: dict[str, Secret]) -> None:
    """Rebuild the tool's reference rows from its headers (same transaction as the tool save)."""
    ToolSecretReference.objects.filter(tool=tool).delete()
    ToolSecretReference.objects.bulk_create(
        [ToolSecretReference(tool=tool, secret=secrets[s.text], header=s.name) for s in specs if s.kind == "secret"])


def _enqueue(tool: Tool, op: str = SyncJob.Op.UPSERT, payload: dict[str, Any] | None = None) -> None:
    job_enqueue(kind=TOOL_KIND, object_id=tool.pk, op=op, workspace_id=tool.workspace_id, object_repr=tool.name,
                payload=payload)


@transaction.atomic
def tool_create(*, actor: Actor, workspace: Workspace, name: str, description: str, url: str,
                method: str = Tool.Method.POST, headers: dict[str, str] | None = None,
                response_timeout_secs: int = 20) -> Tool:
    """Create a webhook tool and its reference rows. Audits the fields (headers hold templates, never
    values) and enqueues the platform create, which waits until the referenced secrets are synced."""
    access.require(actor, PERMISSION, workspace.pk)
    headers = dict(headers or {})
    specs, secrets = resolve_headers(workspace=workspace, headers=headers, lock=True)
    tool = Tool(workspace=workspace, name=name, description=description, url=url, method=method, headers=headers,
                response_timeout_secs=response_timeout_secs, last_changed_by=user_or_none(actor))
    tool.full_clean()
    tool.save()
    _index_references(tool, specs, secrets)
    record(actor=actor, action="tool.create", target=tool, workspace_id=workspace.pk,
           changes=diff({}, snapshot(tool, TOOL_FIELDS)))
    _enqueue(tool)
    return tool


@transaction.atomic
def tool_update(*, actor: Actor, tool: Tool, **fields: Any) -> Tool:
    """Change a tool; rebuilds its reference rows, audits the field changes and enqueues the update."""
    access.require(actor, PERMISSION, tool.workspace_id)
    tool = Tool.objects.select_for_update().select_related("workspace").get(pk=tool.pk)
    before = snapshot(tool, TOOL_FIELDS)
    for key, value in fields.items():
        if key not in TOOL_FIELDS:
            raise TypeError(f"tool_update() got an unexpected field {key!r}")
        setattr(tool, key, dict(value or {}) if key == "headers" else value)
    specs, secrets = resolve_headers(workspace=tool.workspace, headers=tool.headers, lock=True)
    tool.full_clean()
    changes = diff(before, snapshot(tool, TOOL_FIELDS))
    if not changes:
        return tool
    tool.last_changed_by = user_or_none(actor)
    tool.save()
    _index_references(tool, specs, secrets)
    record(actor=actor, action="tool.update", target=tool, workspace_id=tool.workspace_id, changes=changes)
    _enqueue(tool)
    return tool


@transaction.atomic
def tool_delete(*, actor: Actor, tool: Tool) -> None:
    """Delete a tool and its reference rows (which frees its secrets). Audited; enqueues the platform delete."""
    access.require(actor, PERMISSION, tool.workspace_id)
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    record(actor=actor, action="tool.delete", target=tool, workspace_id=tool.workspace_id,
           changes=diff(snapshot(tool, TOOL_FIELDS), {}))
    _enqueue(tool, op=SyncJob.Op.DELETE, payload={"remote_id": tool.remote_id, "name": tool.name, "url": tool.url})
    tool.delete()


def tool_mark_synced(*, tool_id: int, remote_id: str) -> None:
    """Store the platform's tool id after a create (system bookkeeping)."""
    Tool.objects.filter(pk=tool_id).exclude(remote_id=remote_id).update(remote_id=remote_id)
