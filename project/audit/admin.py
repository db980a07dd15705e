from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from project.admin_base import ReadOnlyScopedAdmin
from project.audit.models import AuditEvent


class ObjectTypeFilter(admin.SimpleListFilter):
    """Fixed choices from the model registry: no DISTINCT scan over the event table."""

    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        from django.apps import apps

        return sorted((m._meta.label_lower, m._meta.verbose_name.capitalize()) for m in apps.get_models()
                      if m._meta.app_label in {"agents", "keys", "secrets_app", "sync", "auth"})

    def queryset(self, request: HttpRequest, queryset):  # type: ignore[no-untyped-def]
        return queryset.filter(object_type=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyScopedAdmin):
    view_permission = "audit.view"
    list_display = ("created_at", "actor_label", "actor_type", "action", "object_type", "object_repr", "ip")
    list_filter = ("actor_type", ObjectTypeFilter)
    search_fields = ("=object_id", "action", "actor_label", "object_repr")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    list_per_page = 50
