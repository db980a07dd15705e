"""May this principal do P in workspace W? One query per request, whatever the number of workspaces.

A principal is a user or a service account (anything with `is_service_account`). The answer is cached on
the principal object, which Django builds once per request (the broker API loads the service account once
per call); call `forget(principal)` after changing that principal's assignments in the same request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils import timezone

from project.actors import checked, is_system
from workspaces.permissions import ALL

ALL_WORKSPACES = None  # the answer of workspaces_with() for superusers
_CACHE_ATTR = "_keyward_permissions"


def permissions_for(user: Any) -> dict[int, frozenset[str]]:
    """{workspace_id: permissions} for a signed-in user; {} for anonymous or inactive users."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return {}
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from workspaces.models import RoleAssignment

    return _load(user, RoleAssignment.objects.filter(user_id=user.pk))


def permissions_for_service_account(service_account: Any) -> dict[int, frozenset[str]]:
    """{workspace_id: permissions} for an enabled service account; {} once it is disabled.

    Same shape and cost as permissions_for(): one query, cached on the object. Only assignments in the
    account's own workspace count (the model refuses others; this is the second lock on that door).
    """
    if service_account is None or service_account.pk is None or not getattr(service_account, "is_active", False):
        return {}
    cached = getattr(service_account, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from workspaces.models import RoleAssignment

    return _load(service_account, RoleAssignment.objects.filter(service_account_id=service_account.pk,
                                                                workspace_id=service_account.workspace_id))


def unexpired() -> Q:
    """Assignments that still grant something: no expiry, or one still ahead."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())


def _load(principal: Any, assignments: Any) -> dict[int, frozenset[str]]:
    rows = assignments.filter(unexpired()).values_list("workspace_id", "role__permissions")
    result: dict[int, set[str]] = {}
    for workspace_id, perms in rows:
        result.setdefault(workspace_id, set()).update(perms or [])
    frozen = {ws: frozenset(perms) for ws, perms in result.items()}
    setattr(principal, _CACHE_ATTR, frozen)
    return frozen


def remember(principal: Any, workspace_id: int, role_permissions: Any) -> None:
    """Cache what a service account holds in its workspace when a caller read its unexpired assignments'
    role permissions itself (the session API folds that read into its agent query): the same answer
    permissions_for_service_account() would load, without its query."""
    perms: set[str] = set()
    for role in role_permissions or []:
        perms.update(role or [])
    setattr(principal, _CACHE_ATTR, {workspace_id: frozenset(perms)} if role_permissions else {})


def remember_assignments(principal: Any, pairs: Any) -> None:
    """Cache a person's permissions read by the caller: [workspace_id, role permissions] per unexpired
    assignment, the rows _load() would read (accounts.backends reads them with the user)."""
    result: dict[int, set[str]] = {}
    for workspace_id, perms in pairs:
        result.setdefault(int(workspace_id), set()).update(perms or [])
    setattr(principal, _CACHE_ATTR, {ws: frozenset(perms) for ws, perms in result.items()})


def _permissions(principal: Any) -> dict[int, frozenset[str]]:
    if getattr(principal, "is_service_account", False):
        return permissions_for_service_account(principal)
    return permissions_for(principal)


def forget(principal: Any) -> None:
    if hasattr(principal, _CACHE_ATTR):
        delattr(principal, _CACHE_ATTR)


def is_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False) and getattr(user, "is_active", False))


def has_perm(user: Any, permission: str, workspace_id: int | None) -> bool:
    if is_system(checked(user)) or is_superuser(user):
        return True
    if workspace_id is None:
        return False
    return permission in _permissions(user).get(workspace_id, frozenset())


def permissions_in(principal: Any, workspace_id: int | None) -> frozenset[str]:
    """Everything the principal may do in one workspace (the whole catalogue for a superuser or the system)."""
    if is_system(checked(principal)) or is_superuser(principal):
        return ALL
    if workspace_id is None:
        return frozenset()
    return _permissions(principal).get(workspace_id, frozenset())


def workspaces_with(user: Any, permission: str) -> set[int] | None:
    """Ids of the workspaces where the user holds `permission`; None means every workspace (superuser, system)."""
    if is_system(checked(user)) or is_superuser(user):
        return ALL_WORKSPACES
    return {ws for ws, perms in _permissions(user).items() if permission in perms}


def has_any_role(user: Any) -> bool:
    return is_superuser(user) or bool(_permissions(user))


def require(user: Any, permission: str, workspace_id: int | None) -> None:
    """Raise PermissionDenied (a 403 in views) unless the user holds the permission in the workspace."""
    if not has_perm(user, permission, workspace_id):
        raise MissingPermission(permission, workspace_id)


class MissingPermission(PermissionDenied):
    """A refusal that names what was missing where: the refusal page (project/views.py) shows it with a way back."""

    def __init__(self, permission: str, workspace_id: int | None) -> None:
        from workspaces.models import Workspace

        self.permission = permission
        self.workspace_name = (Workspace.objects.filter(pk=workspace_id).values_list("name", flat=True).first()
                               if workspace_id is not None else None)
        where = (f"the workspace “{self.workspace_name}”" if self.workspace_name
                 else "Keyward as a whole (superusers only)")
        super().__init__(f"You do not have the “{permission}” permission in {where}.")
