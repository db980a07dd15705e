"""Helpers shared by the broker's services."""

from __future__ import annotations

from typing import Any

from project.actors import Actor


def user_or_none(actor: Actor) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None
