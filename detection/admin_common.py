"""Pieces shared by the detection admin pages."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from project import access
from workspaces.models import Workspace

SEVERITY_COLOURS = {"info": "#555", "low": "#1565c0", "medium": "#b8860b", "high": "#c62828", "critical": "#8b0000"}


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
    return format_html('<strong style="color:{}">{}</strong>', SEVERITY_COLOURS.get(severity, "#555"), label)
