from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.timesince import timesince

from project import access
from project.admin_base import ReadOnlyScopedAdmin
from project.sync import registry, services
from project.sync.models import SyncJob


class KindFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(k, k.replace("_", " ")) for k in registry.kinds()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(SyncJob)
class SyncJobAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "kind", "object_repr", "op", "state", "attempts", "age", "next_attempt_at",
                    "short_error")
    list_filter = ("state", KindFilter)
    search_fields = ("=object_id", "object_repr")
    readonly_fields = [f.name for f in SyncJob._meta.fields]
    actions = ["retry_jobs", "discard_jobs"]
    list_per_page = 50

    @admin.display(description="age")
    def age(self, job: SyncJob) -> str:
        return timesince(job.created_at, timezone.now())

    @admin.display(description="reason")
    def short_error(self, job: SyncJob) -> str:
        return (job.last_error[:120] + "…") if len(job.last_error) > 120 else job.last_error

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str) -> None:
        done, refused = 0, []
        for job in queryset:
            if not access.has_perm(request.user, "sync.manage", job.workspace_id):
                refused.append(f"#{job.pk}: you lack sync.manage in its workspace")
                continue
            try:
                (services.job_retry if verb == "retry" else services.job_discard)(actor=request.user, job=job)
                done += 1
            except ValueError as exc:
                refused.append(f"#{job.pk}: {exc}")
        if done:
            self.message_user(request, f"{done} job(s) {'queued again' if verb == 'retry' else 'discarded'}.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    @admin.action(description="Retry selected failed or dead jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "retry")

    @admin.action(description="Discard selected jobs")
    def discard_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "discard")

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        allowed = access.workspaces_with(request.user, "sync.manage")
        if allowed is not None and not allowed:
            actions.pop("retry_jobs", None)
            actions.pop("discard_jobs", None)
        return actions
