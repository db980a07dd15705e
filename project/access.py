"""The access policy seen from the ground floor (admin base, restricted querysets, audit, sync and alerts).

project/ imports no app. The tenancy app (workspaces) owns the policy and installs it here when Django starts
(`WorkspacesConfig.ready()` calls `install()`), the same way apps register their sync handlers. A policy
provides has_perm(actor, permission, workspace_id), workspaces_with(actor, permission) -> set[int] | None
(None = every workspace) and require(actor, permission, workspace_id). The system actor (project.actors.SYSTEM)
is answered here, before any policy is asked.
"""

from __future__ import annotations

from typing import Protocol

from django.core.exceptions import ImproperlyConfigured

from project.actors import Actor, checked, is_system


class AccessPolicy(Protocol):
    def has_perm(self, actor: Actor, permission: str, workspace_id: int | None) -> bool: ...

    def workspaces_with(self, actor: Actor, permission: str) -> set[int] | None: ...

    def require(self, actor: Actor, permission: str, workspace_id: int | None) -> None: ...


_installed: AccessPolicy | None = None


def install(policy: AccessPolicy) -> None:
    """Make `policy` the one the ground floor asks (called once, from the tenancy app's ready())."""
    global _installed
    _installed = policy


def policy() -> AccessPolicy:
    if _installed is None:
        raise ImproperlyConfigured("No access policy is installed: the workspaces app must be in INSTALLED_APPS.")
    return _installed


# SYSTEM holds every permission everywhere; None is refused (TypeError), never read as "the system".
def has_perm(actor: Actor, permission: str, workspace_id: int | None) -> bool:
    return True if is_system(actor) else policy().has_perm(checked(actor), permission, workspace_id)


def workspaces_with(actor: Actor, permission: str) -> set[int] | None:
    return None if is_system(actor) else policy().workspaces_with(checked(actor), permission)


def require(actor: Actor, permission: str, workspace_id: int | None) -> None:
    if not is_system(actor):
        policy().require(checked(actor), permission, workspace_id)
