"""May this principal do P in workspace W? One query per request, whatever the number of workspaces.

The answer is cached on the user object, which Django builds once per request; call `forget(user)` after
changing that user's assignments in the same request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils import timezone

ALL_WORKSPACES = None  # the answer of workspaces_with() for superusers
_CACHE_ATTR = "_keyward_permissions"


def permissions_for(user: Any) -> dict[int, frozenset[str]]:
    """{workspace_id: permissions} for a signed-in user; {} for anonymous or inactive users."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return {}
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from keys.models import RoleAssignment

    rows = (RoleAssignment.objects.filter(user_id=user.pk)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .values_list("workspace_id", "role__permissions"))
    result: dict[int, set[str]] = {}
    for workspace_id, perms in rows:
        result.setdefault(workspace_id, set()).update(perms or [])
    frozen = {ws: frozenset(perms) for ws, perms in result.items()}
    setattr(user, _CACHE_ATTR, frozen)
    return frozen


def forget(user: Any) -> None:
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def is_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False) and getattr(user, "is_active", False))


def has_perm(user: Any, permission: str, workspace_id: int | None) -> bool:
    if is_superuser(user):
        return True
    if workspace_id is None:
        return False
    return permission in permissions_for(user).get(workspace_id, frozenset())


def workspaces_with(user: Any, permission: str) -> set[int] | None:
    """Ids of the workspaces where the user holds `permission`; None means every workspace (superuser)."""
    if is_superuser(user):
        return ALL_WORKSPACES
    return {ws for ws, perms in permissions_for(user).items() if permission in perms}


def has_any_role(user: Any) -> bool:
    return is_superuser(user) or bool(permissions_for(user))


def require(user: Any, permission: str, workspace_id: int | None) -> None:
    """Raise PermissionDenied (a 403 in views) unless the user holds the permission in the workspace."""
    if not has_perm(user, permission, workspace_id):
        raise PermissionDenied(f"You do not have the “{permission}” permission in this workspace.")
