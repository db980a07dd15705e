"""Pieces shared by the detection admin pages."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from project import access
from project.admin_base import badge
from workspaces.models import Workspace

SEVERITY_TONES = {"info": "quiet", "low": "info", "medium": "warn", "high": "bad", "critical": "critical"}


class WorkspaceFilter(admin.SimpleListFilter):
    """The workspaces the person may view, by name: fixed choices, not a scan of the listed table."""

    title = "workspace"
    parameter_name = "workspace"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        allowed = access.workspaces_with(request.user, model_admin.view_permission)
        workspaces = Workspace.objects.order_by("name")
        if allowed is not None:
            workspaces = workspaces.filter(pk__in=allowed)
        return [(str(pk), name) for pk, name in workspaces.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(workspace_id=int(value)) if value and value.isdigit() else queryset


def severity_badge(severity: str, label: str) -> str:
    return badge(label, SEVERITY_TONES.get(severity, "quiet"), tag="strong")
