"""The access policy seen from project-level code (admin base, audit and sync admin).

project/ imports no app, so the policy module is named in settings (ACCESS_POLICY, `keys.access` by
default) and loaded on first use. It must provide has_perm(user, perm, workspace_id) and
workspaces_with(user, perm) -> set[int] | None (None = every workspace).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_module


@cache
def _policy() -> ModuleType:
    return import_module(getattr(settings, "ACCESS_POLICY", "keys.access"))


def has_perm(user: Any, permission: str, workspace_id: int | None) -> bool:
    return _policy().has_perm(user, permission, workspace_id)


def workspaces_with(user: Any, permission: str) -> set[int] | None:
    return _policy().workspaces_with(user, permission)


def require(user: Any, permission: str, workspace_id: int | None) -> None:
    _policy().require(user, permission, workspace_id)
