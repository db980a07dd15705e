"""The access policy seen from the ground floor (admin base, restricted querysets, audit, sync and alerts).

project/ imports no app. The tenancy app (workspaces) owns the policy and installs it here when Django starts
(`WorkspacesConfig.ready()` calls `install()`), the same way apps register their sync handlers. A policy
provides has_perm(actor, permission, workspace_id), workspaces_with(actor, permission) -> set[int] | None
(None = every workspace) and require(actor, permission, workspace_id).
"""

from __future__ import annotations

from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured


class AccessPolicy(Protocol):
    def has_perm(self, actor: Any, permission: str, workspace_id: int | None) -> bool: ...

    def workspaces_with(self, actor: Any, permission: str) -> set[int] | None: ...

    def require(self, actor: Any, permission: str, workspace_id: int | None) -> None: ...


_installed: AccessPolicy | None = None


def install(policy: AccessPolicy) -> None:
    """Make `policy` the one the ground floor asks (called once, from the tenancy app's ready())."""
    global _installed
    _installed = policy


def policy() -> AccessPolicy:
    if _installed is None:
        raise ImproperlyConfigured("No access policy is installed: the workspaces app must be in INSTALLED_APPS.")
    return _installed


def has_perm(user: Any, permission: str, workspace_id: int | None) -> bool:
    return policy().has_perm(user, permission, workspace_id)


def workspaces_with(user: Any, permission: str) -> set[int] | None:
    return policy().workspaces_with(user, permission)


def require(user: Any, permission: str, workspace_id: int | None) -> None:
    policy().require(user, permission, workspace_id)
