"""Who acts on Keyward: a person (a Django user), a service account, or Keyward itself.

Every service takes the acting party as `actor=` and it is never optional. Keyward's own work (seeding,
migrations, sweeps, the outbox, answering the platform's webhook) passes `SYSTEM`, an explicit actor that holds
every permission and is audited as "system". `None` is not an actor: a permission check or an audit record
handed `None` raises `TypeError`, so a forgotten actor fails loudly instead of silently skipping the check.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser


@runtime_checkable
class Principal(Protocol):
    """A machine identity that holds roles (workspaces.models.ServiceAccount)."""

    is_service_account: bool
    is_active: bool
    pk: Any
    workspace_id: int


class SystemActor:
    """Keyward itself. Holds every permission; is no person and no service account. Audited under `label`."""

    is_system = True
    is_service_account = False
    is_superuser = False
    is_active = True
    pk = None

    __slots__ = ("label",)

    def __init__(self, label: str = "system") -> None:
        self.label = label

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return "SYSTEM" if self.label == "system" else f"SystemActor({self.label!r})"


#: Keyward itself, for work nobody asked for in a request: seeds, sweeps, the outbox, migrations.
SYSTEM = SystemActor()

#: What a service's `actor=` accepts.
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | Principal | SystemActor


def is_system(actor: object) -> bool:
    return isinstance(actor, SystemActor)


def checked(actor: Any) -> Any:
    """The actor itself, or TypeError when it is missing (None): there is no implicit system actor."""
    if actor is None:
        raise TypeError("actor is required: pass the signed-in user, the service account, or project.actors.SYSTEM")
    return actor
