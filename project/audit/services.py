"""record(): the one way to write the audit trail."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from project import context
from project.actors import Actor, checked, is_system
from project.audit import stream
from project.audit.models import AuditEvent
from project.bulk import build, bulk_insert

SECRET_CHANGED = "[changed]"
SECRET_SET = "[set]"


def actor_fields(actor: Actor) -> dict[str, Any]:
    """Who acted: a user, a service account (anything with `is_service_account`), or the system (SYSTEM, or
    another SystemActor with its own label). A missing actor (None) is a TypeError."""
    if is_system(checked(actor)):
        return {"actor_type": AuditEvent.ActorType.SYSTEM, "actor_user": None, "actor_label": str(actor)[:200]}
    if isinstance(actor, AnonymousUser):
        return {"actor_type": AuditEvent.ActorType.SYSTEM, "actor_user": None, "actor_label": "system"}
    if isinstance(actor, AbstractBaseUser):
        return {"actor_type": AuditEvent.ActorType.USER, "actor_user": actor,
                "actor_label": actor.get_username()[:200]}
    if getattr(actor, "is_service_account", False):
        return {"actor_type": AuditEvent.ActorType.SERVICE_ACCOUNT, "actor_user": None,
                "actor_label": f"service account {actor}"[:200]}
    return {"actor_type": AuditEvent.ActorType.SYSTEM, "actor_user": None, "actor_label": str(actor)[:200]}


def diff(before: Mapping[str, Any], after: Mapping[str, Any], *,
         secret_fields: Iterable[str] = ()) -> dict[str, Any]:
    """Field changes as {field: [old, new]}; a secret field records only that it changed."""
    secret = set(secret_fields)
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        changes[key] = SECRET_CHANGED if key in secret else [_plain(old), _plain(new)]
    return changes


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def event(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    object_repr: str | None = None,
    workspace_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """One audit event, not yet saved (record() saves it; a hot path may insert it with its own rows)."""
    if target is not None:
        object_type = object_type or target._meta.label_lower
        object_id = object_id if object_id is not None else target.pk
        object_repr = object_repr if object_repr is not None else str(target)
    ctx = context.current()
    return build(
        AuditEvent,
        **actor_fields(actor),
        action=action,
        object_type=object_type or "",
        object_id="" if object_id is None else str(object_id),
        object_repr=(object_repr or "")[:200],
        workspace_id=workspace_id,
        changes=_plain(dict(changes or {})),
        ip=ctx.ip if ctx else None,
        request_id=ctx.request_id if ctx else "",
    )


def record_many(events: list[AuditEvent]) -> None:
    """Append many events built with event() in one insert (adoption of a whole account audits each object)."""
    if events:
        bulk_insert(AuditEvent, events, batch_size=1000)
        if stream.enabled():
            stream.enqueue(events)


def record(
    *,
    actor: Actor,
    action: str,
    target: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    object_repr: str | None = None,
    workspace_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Callers pass field names, never secret values (see diff())."""
    audit_event = event(actor=actor, action=action, target=target, object_type=object_type, object_id=object_id,
                        object_repr=object_repr, workspace_id=workspace_id, changes=changes)
    audit_event.save(force_insert=True)
    if stream.enabled():
        stream.enqueue([audit_event])
    return audit_event
