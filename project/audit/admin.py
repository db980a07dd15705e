"""The audit trail's admin: a read-only list with filters (actor, action, object type and id, workspace, time
range), a streamed CSV export of the filtered list, and the target of every change page's history link.

Filters use fixed choices (object types from the model registry, workspaces from the person's roles) or typed
input, never a DISTINCT scan over the event table, which grows without bound. The table holds no secret values
(record() refuses to be given them), so neither does the export.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from project.admin_base import ReadOnlyScopedAdmin, WorkspaceFilter
from project.audit.models import AuditEvent
from project.audit.services import record

# Apps whose objects the trail records; Django's own bookkeeping models stay out of the choices.
FRAMEWORK_APPS = {"admin", "contenttypes", "sessions", "messages", "staticfiles", "axes", "otp_totp", "otp_static",
                  "django_otp", "encrypted_model_fields"}
EXPORT_BATCH = 2000


class ObjectTypeFilter(admin.SimpleListFilter):
    """Fixed choices from the model registry: no DISTINCT scan over the event table."""

    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return sorted((m._meta.label_lower, f"{m._meta.verbose_name.capitalize()} ({m._meta.app_label})")
                      for m in apps.get_models() if m._meta.app_label not in FRAMEWORK_APPS)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(object_type__in=labels_of(self.value())) if self.value() else queryset


def labels_of(label: str) -> list[str]:
    """A model's label and the labels it had before it moved between apps: the trail is append-only, so its
    older rows keep the label they were written with (a model lists them in `audit_former_labels`)."""
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return [label]
    return [label, *getattr(model, "audit_former_labels", ())]


class InputFilter(admin.SimpleListFilter):
    """A filter the person types into (a text box in the sidebar) instead of choosing from listed values."""

    template = "admin/audit/input_filter.html"
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("", "")]  # one dummy so the filter is shown; the template draws a text box

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        # The other active filters ride along as hidden fields, so typing here narrows the current list.
        others = [(k, v) for k, values in changelist.get_filters_params().items() if k != self.parameter_name
                  for v in values]
        others += [(k, changelist.params[k]) for k in ("q", "o") if changelist.params.get(k)]
        yield {"value": self.value() or "", "others": others, "placeholder": self.placeholder,
               "clear": changelist.get_query_string(remove=[self.parameter_name])}

    def value(self) -> str | None:
        value = super().value()
        return value.strip() if isinstance(value, str) and value.strip() else None


class ActorFilter(InputFilter):
    title = "actor (exact, e.g. a username or “system”)"
    parameter_name = "actor"
    placeholder = "username"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(actor_label=self.value()) if self.value() else queryset


class ActionFilter(InputFilter):
    title = "action (a prefix: “api_key.” or “api_key.revoke”)"
    parameter_name = "action"
    placeholder = "api_key."

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action__startswith=self.value()) if self.value() else queryset


class ObjectIdFilter(InputFilter):
    title = "object id"
    parameter_name = "object_id"
    placeholder = "id"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(object_id=self.value()) if self.value() else queryset


def _moment(text: str, *, end: bool) -> datetime | None:
    """A date (the whole day) or a date and time, in the site's time zone."""
    try:
        day = parse_date(text) if len(text) <= 10 else None  # a bare date means the whole day
        moment = datetime.combine(day, time.max if end else time.min) if day else parse_datetime(text)
    except ValueError:  # well formed but impossible, e.g. 2026-02-30: ignored like any unreadable input
        return None
    if moment is None:
        return None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class SinceFilter(InputFilter):
    title = "from (YYYY-MM-DD [HH:MM])"
    parameter_name = "since"
    placeholder = "2026-01-31"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        moment = _moment(self.value(), end=False) if self.value() else None
        return queryset.filter(created_at__gte=moment) if moment else queryset


class UntilFilter(InputFilter):
    title = "until (YYYY-MM-DD [HH:MM])"
    parameter_name = "until"
    placeholder = "2026-02-28"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        moment = _moment(self.value(), end=True) if self.value() else None
        return queryset.filter(created_at__lte=moment) if moment else queryset


class _Echo:
    """A file-like object whose write() returns the line, so csv.writer feeds a streaming response."""

    def write(self, value: str) -> str:
        return value


CSV_COLUMNS = ("created_at", "actor_type", "actor_label", "action", "object_type", "object_id", "object_repr",
               "workspace_id", "ip", "request_id", "changes")


def _csv_cell(value: Any) -> Any:
    # Spreadsheets run cells starting with = + - @ as formulas: prefix them so a crafted object name stays text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyScopedAdmin):
    view_permission = "audit.view"
    list_display = ("created_at", "actor_label", "actor_type", "action", "object_type", "object_repr",
                    "workspace_id", "ip")
    list_filter = ("actor_type", ActorFilter, ActionFilter, ObjectTypeFilter, ObjectIdFilter, WorkspaceFilter,
                   SinceFilter, UntilFilter)
    search_fields = ("=object_id", "=request_id", "action", "actor_label", "object_repr")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    list_per_page = 50
    change_list_template = "admin/audit/auditevent/change_list.html"

    def get_urls(self) -> list:
        return [path("export.csv", self.admin_site.admin_view(self.export_view), name="audit_auditevent_export"),
                *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        query = request.GET.urlencode()
        export = reverse("admin:audit_auditevent_export") + (f"?{query}" if query else "")
        from project.audit import stream

        return super().changelist_view(request, {**(extra_context or {}), "export_url": export,
                                                 "audit_stream": stream.backlog()})

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The filtered list as CSV, streamed in batches (audit.view; the export itself is audited)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
        filters = {k: v for k, v in request.GET.items() if k not in ("p", "o")}
        record(actor=request.user, action="audit.export", object_type="audit.auditevent",
               object_repr="audit trail (CSV)", changes={"filters": filters})
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for event in queryset.iterator(chunk_size=EXPORT_BATCH):
                yield writer.writerow([_csv_cell(v) for v in (
                    event.created_at.isoformat(), event.actor_type, event.actor_label, event.action,
                    event.object_type, event.object_id, event.object_repr, event.workspace_id or "", event.ip or "",
                    event.request_id, _json(event.changes))])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="keyward-audit-{stamp}.csv"'
        return response


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if value else ""
