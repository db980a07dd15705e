"""Helpers shared by the secrets services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from project.actors import Actor
from project.fields import CANNOT_DECRYPT, field_state
from project.logging import register_secret_value


def user_or_none(actor: Actor) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None


def snapshot(obj: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


def remember(*values: str | None) -> None:
    """Secret values this process handles are redacted verbatim from every log line from now on."""
    for value in values:
        register_secret_value(value)


def keep_or_replace(obj: models.Model, field: str, new_value: str | None) -> bool:
    """Write-only semantics: None keeps the stored value, anything else replaces it. Returns "changed".

    Keeping a value that no configured key can decrypt is refused (nothing may write it back); a new
    value replaces it.
    """
    if new_value is None:
        if obj.pk is not None and field_state(obj, field) == "unreadable":
            raise ValidationError({field: f"{CANNOT_DECRYPT}. Restore the encryption key this value was "
                                          "written with, or enter a new value to replace it."},
                                  code="undecryptable")
        return False
    remember(new_value)
    if obj.pk is not None and field_state(obj, field) != "unreadable" and getattr(obj, field) == new_value:
        return False
    setattr(obj, field, new_value)
    return True
