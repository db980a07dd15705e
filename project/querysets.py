"""One restricted queryset for every workspace-owned model, in the spirit of NetBox's RestrictedQuerySet.

``Model.objects.restrict(actor, permission)`` keeps the rows of the workspaces where ``actor`` holds
``permission``: every row for a superuser or the system, none for a person without roles. Selectors, the admin
base, list filters, autocompletes and form choices all go through it, so "filter by the actor's workspaces" is
written once, here.

A model says how one of its rows reaches its workspace with the class attribute ``workspace_path``, a lookup to
the workspace's id: ``"workspace_id"`` (the default), ``"agent__workspace_id"`` for a row that belongs to an
agent, ``"id"`` for the workspace itself. Rows whose path is null (an audit event of no workspace) are seen by
superusers and the system only.
"""

from __future__ import annotations

from typing import Any, Self

from django.apps import apps
from django.db import models

from project import access
from project.actors import Actor

DEFAULT_PATH = "workspace_id"


def workspace_path(model: type[models.Model]) -> str:
    return getattr(model, "workspace_path", DEFAULT_PATH)


def workspace_id_of(obj: models.Model) -> int | None:
    """The workspace id of one row, following its model's ``workspace_path`` (no query when the path is a column
    of the row or of a related row already loaded)."""
    value: Any = obj
    for part in workspace_path(type(obj)).split("__"):
        if value is None:
            return None
        value = getattr(value, part, None)
    return value


def workspace_model() -> type[models.Model]:
    """The tenancy app's Workspace, by name: the ground floor imports no app."""
    return apps.get_model("workspaces", "Workspace")


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, actor: Actor, permission: str = "workspace.view") -> Self:
        """The rows in the workspaces where ``actor`` holds ``permission``."""
        allowed = access.workspaces_with(actor, permission)
        if allowed is None:
            return self
        if not allowed:
            return self.none()
        return self.filter(**{f"{workspace_path(self.model)}__in": allowed})


class RestrictedManager(models.Manager.from_queryset(RestrictedQuerySet)):  # type: ignore[misc]
    """The default manager of every workspace-owned model."""
