"""Workspace secrets: create, update, delete; each audited without the value and synced via the outbox."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from project import access
from project.actors import Actor
from project.audit.services import SECRET_CHANGED, SECRET_SET, diff, record
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from secrets_app.models import Secret, Tool
from secrets_app.services._common import keep_or_replace, remember, snapshot, user_or_none
from workspaces.models import Workspace

SECRET_KIND = SyncKind.SECRET
SECRET_FIELDS = ("name", "description")
PERMISSION = "secrets.manage"


def tools_using(secret: Secret) -> list[str]:
    """Names of the tools whose headers reference this secret, sorted."""
    return sorted(Tool.objects.filter(secret_references__secret=secret).distinct().values_list("name", flat=True))


def in_use_message(secret: Secret, tools: list[str]) -> str:
    return (f"The secret “{secret.name}” is used by the tool{'s' if len(tools) > 1 else ''} {', '.join(tools)}. "
            "Remove the reference from those tools' headers first.")


def _enqueue(secret: Secret, op: str = SyncJob.Op.UPSERT, payload: dict[str, Any] | None = None) -> None:
    job_enqueue(kind=SECRET_KIND, object_id=secret.pk, op=op, workspace_id=secret.workspace_id,
                object_repr=secret.name, payload=payload)


@transaction.atomic
def secret_create(*, actor: Actor, workspace: Workspace, name: str, value: str, description: str = "") -> Secret:
    """Create a secret. Audits the name and description and that a value was set (never the value);
    enqueues the platform create (type "new")."""
    access.require(actor, PERMISSION, workspace.pk)
    if not value:
        raise ValidationError({"value": "Enter the secret's value."})
    remember(value)
    secret = Secret(workspace=workspace, name=name, description=description, value=value,
                    last_changed_at=timezone.now(), last_changed_by=user_or_none(actor))
    secret.full_clean()
    secret.save()
    record(actor=actor, action="secret.create", target=secret, workspace_id=workspace.pk,
           changes={**diff({}, snapshot(secret, SECRET_FIELDS)), "value": SECRET_SET})
    _enqueue(secret)
    return secret


@transaction.atomic
def secret_update(*, actor: Actor, secret: Secret, name: str | None = None, description: str | None = None,
                  value: str | None = None) -> Secret:
    """Change a secret's name, description or value (value None or "" keeps the current one).

    Audits which fields changed (the value only as "[changed]") and enqueues the platform update, which
    sends name and value together as the platform requires. Renaming a secret that tools reference is
    refused: their headers name it.
    """
    access.require(actor, PERMISSION, secret.workspace_id)
    secret = Secret.objects.select_for_update().select_related("workspace").get(pk=secret.pk)
    before = snapshot(secret, SECRET_FIELDS)
    if name is not None and name != secret.name:
        users = tools_using(secret)
        if users:
            raise ValidationError({"name": f"The secret is used by {', '.join(users)}; their headers reference "
                                           f"{secret.reference}. Change those headers first, then rename."})
        if not secret.value_known and not value:
            raise ValidationError({"name": "This secret's value is held by the platform only, and the platform "
                                           "renames a secret only with its value: enter a new value to rename it."})
        secret.name = name
        secret.platform_name = ""  # renamed in Keyward: the platform gets Keyward's name for it
    if description is not None:
        secret.description = description
    if secret.value_known:
        value_changed = keep_or_replace(secret, "value", value or None)
    elif value:  # adopted, value held by the platform only: fully managed from its first new value
        remember(value)
        secret.value, secret.value_known, value_changed = value, True, True
    else:
        value_changed = False
    changes = diff(before, snapshot(secret, SECRET_FIELDS))
    if value_changed:
        changes["value"] = SECRET_CHANGED
    if not changes:
        return secret
    secret.last_changed_at, secret.last_changed_by = timezone.now(), user_or_none(actor)
    secret.full_clean(exclude=None if secret.value_known else ["value"])  # adopted: no value held here yet
    secret.save()
    record(actor=actor, action="secret.update", target=secret, workspace_id=secret.workspace_id, changes=changes)
    _enqueue(secret)
    return secret


@transaction.atomic
def secret_delete(*, actor: Actor, secret: Secret) -> None:
    """Delete a secret that no tool references (otherwise refused, naming the tools). Audited; enqueues
    the platform delete by remote id (or workspace-qualified name, if the create's answer was lost)."""
    access.require(actor, PERMISSION, secret.workspace_id)
    secret = Secret.objects.select_for_update().select_related("workspace").defer("value").get(pk=secret.pk)
    users = tools_using(secret)
    if users:
        raise ValidationError(in_use_message(secret, users), code="secret_in_use")
    record(actor=actor, action="secret.delete", target=secret, workspace_id=secret.workspace_id,
           changes=diff(snapshot(secret, SECRET_FIELDS), {}))
    _enqueue(secret, op=SyncJob.Op.DELETE, payload={"remote_id": secret.remote_id, "remote_name": secret.remote_name})
    secret.delete()


def secret_mark_synced(*, secret_id: int, remote_id: str) -> None:
    """Store the platform's secret_id after a create (system bookkeeping, not a change to audit)."""
    Secret.objects.filter(pk=secret_id).exclude(remote_id=remote_id).update(remote_id=remote_id)
