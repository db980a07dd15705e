"""Handlers per kind of synced object. Apps register theirs in AppConfig.ready(); the outbox knows only
kinds and ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from project.platform.client import PlatformClient
    from project.sync.models import SyncJob


class Handler(Protocol):
    def __call__(self, job: SyncJob, client: PlatformClient) -> str | None:
        """Push the object's current state (or its deletion); return the remote id, if any."""


_handlers: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    def decorator(handler: Handler) -> Handler:
        _handlers[kind] = handler
        return handler

    return decorator


def handler_for(kind: str) -> Handler:
    try:
        return _handlers[kind]
    except KeyError:
        raise LookupError(f"no sync handler registered for kind {kind!r}") from None


def kinds() -> list[str]:
    return sorted(_handlers)
