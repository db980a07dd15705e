from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from detection import services
from detection.models import Alert
from project import access
from project.admin_base import ReadOnlyScopedAdmin


@admin.register(Alert)
class AlertAdmin(ReadOnlyScopedAdmin):
    list_display = ("created_at", "severity", "title", "workspace", "kind", "state", "acknowledged_by",
                    "resolved_by")
    list_select_related = ("workspace", "acknowledged_by", "resolved_by")
    list_filter = ("state", "severity")
    search_fields = ("title", "=object_id")
    readonly_fields = ("workspace", "kind", "severity", "state", "title", "details", "object_type", "object_id",
                       "object_repr", "created_at", "acknowledged_by", "acknowledged_at", "resolved_by",
                       "resolved_at")
    exclude = ("dedup_key",)
    actions = ["acknowledge", "resolve"]

    def _act(self, request: HttpRequest, queryset: QuerySet, fn, verb: str) -> None:  # type: ignore[no-untyped-def]
        done = 0
        for alert in queryset:
            if not access.has_perm(request.user, "incidents.manage", alert.workspace_id):
                self.message_user(request, f"“{alert.title}”: you lack incidents.manage in its workspace.",
                                  level=messages.WARNING)
                continue
            try:
                fn(actor=request.user, alert=alert)
                done += 1
            except ValueError as exc:
                self.message_user(request, f"“{alert.title}”: {exc}", level=messages.WARNING)
        if done:
            self.message_user(request, f"{done} alert(s) {verb}.")

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, services.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, services.alert_resolve, "resolved")
