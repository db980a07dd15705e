"""Helpers shared by the broker's services."""

from __future__ import annotations

from typing import Any

from project import access


def require(actor: Any, permission: str, workspace_id: int) -> None:
    """Re-check the actor's permission inside the service; None is the system itself."""
    if actor is not None:
        access.require(actor, permission, workspace_id)


def user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None
