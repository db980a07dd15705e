"""Helpers shared by the secrets services."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

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


def url_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit: where whatever is posted to it ends up."""
    parts = urlsplit(url or "")
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip(".").lower(), port


def url_host(url: str) -> str:
    """The host (and an explicit port) of a URL, for the audit trail and alerts: never a path or query."""
    parts = urlsplit(url or "")
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return host


def require_secret_again(obj: models.Model, field: str, new_value: str | None, *, label: str) -> None:
    """A secret is about to be sent to a new address: the person must type the stored secret again (a value no
    key can read may be replaced by any new one). Proves they already know it, so moving the address cannot
    harvest it. ValidationError on `field` otherwise."""
    state = field_state(obj, field)
    if state == "empty":
        return
    if not new_value:
        raise ValidationError({field: f"The token URL now points at another address: enter the current {label} "
                                      "again to confirm it may be sent there."}, code="secret_required")
    if state == "set" and not hmac.compare_digest(str(getattr(obj, field)).encode(), new_value.encode()):
        raise ValidationError({field: f"This is not the current {label}. To move the token URL, enter the current "
                                      f"{label}; change the {label} in a separate save."}, code="secret_mismatch")
