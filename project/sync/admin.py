"""The sync pages: jobs (pending, failed, dead, with reasons and ages), the drift report, and the runs of
reconcile and bulk re-sync with their progress. Every action calls a service; every filter has fixed choices
(no DISTINCT scan over the job table)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from project import access
from project.admin_base import ReadOnlyScopedAdmin, WorkspaceFilter
from project.querysets import workspace_model
from project.sync import registry, services
from project.sync.models import Drift, ReconcileRun, SyncJob

# The sync app imports no other app; the workspace model is named, like the audit admin names app labels.


def _with_workspace_name(queryset: QuerySet) -> QuerySet:
    names = workspace_model()._default_manager.filter(pk=OuterRef("workspace_id")).values("name")[:1]
    return queryset.annotate(workspace_name=Subquery(names))


class KindFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(k, k.replace("_", " ")) for k in registry.kinds()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class DriftKindFilter(KindFilter):
    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(k, k.replace("_", " ")) for k in registry.reconciler_kinds()]


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"
    GROUPS = {"attention": (SyncJob.State.FAILED, SyncJob.State.DEAD),
              "open": (SyncJob.State.PENDING, SyncJob.State.RUNNING)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("attention", "Failed or dead"), ("open", "Pending or running"), *SyncJob.State.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in self.GROUPS:
            return queryset.filter(state__in=self.GROUPS[value])
        return queryset.filter(state=value) if value else queryset


def _short(text: str, limit: int = 120) -> str:
    return (text[:limit] + "…") if len(text) > limit else text


def _report_refusals(model_admin: admin.ModelAdmin, request: HttpRequest, refused: list[str]) -> None:
    for reason in refused:
        model_admin.message_user(request, reason, level=messages.WARNING)


@admin.register(SyncJob)
class SyncJobAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "kind", "object_repr", "op", "state", "attempts", "age", "next_try", "last_status",
                    "short_error", "workspace_name")
    list_filter = (StateFilter, KindFilter, WorkspaceFilter)
    search_fields = ("=object_id", "=request_id", "object_repr")
    readonly_fields = [f.name for f in SyncJob._meta.fields]
    actions = ["retry_jobs", "discard_jobs"]
    list_per_page = 50
    change_list_template = "admin/sync/syncjob/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return _with_workspace_name(super().get_queryset(request))

    @admin.display(description="workspace")
    def workspace_name(self, job: SyncJob) -> str:
        return getattr(job, "workspace_name", None) or "—"

    @admin.display(description="age")
    def age(self, job: SyncJob) -> str:
        return timesince(job.created_at, timezone.now())

    @admin.display(description="next try")
    def next_try(self, job: SyncJob) -> str:
        if job.state != SyncJob.State.PENDING:
            return "—"
        now = timezone.now()
        return "due" if job.next_attempt_at <= now else f"in {timesince(now, job.next_attempt_at)}"

    @admin.display(description="reason")
    def short_error(self, job: SyncJob) -> str:
        return _short(job.last_error)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # One grouped count over the states worth a glance (the state index serves it).
        counts = dict(super().get_queryset(request).order_by()
                      .filter(state__in=[*StateFilter.GROUPS["open"], *StateFilter.GROUPS["attention"]])
                      .values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        summary = [(label, counts.get(state, 0), state) for state, label in SyncJob.State.choices
                   if state in (*StateFilter.GROUPS["open"], *StateFilter.GROUPS["attention"])]
        return super().changelist_view(request, {**(extra_context or {}), "sync_summary": summary})

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
        _report_refusals(self, request, refused)

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


@admin.register(Drift)
class DriftAdmin(ReadOnlyScopedAdmin):
    list_display = ("kind", "label", "problem", "differences", "remote_id", "workspace_name", "created_at",
                    "pushed")
    list_filter = (WorkspaceFilter, DriftKindFilter, "problem")
    search_fields = ("=object_id", "=remote_id", "object_repr")
    readonly_fields = [f.name for f in Drift._meta.fields]
    actions = ["push_local_state"]
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return _with_workspace_name(super().get_queryset(request))

    @admin.display(description="object")
    def label(self, drift: Drift) -> str:
        return drift.object_repr or drift.object_id or drift.remote_id

    @admin.display(description="workspace")
    def workspace_name(self, drift: Drift) -> str:
        return getattr(drift, "workspace_name", None) or "—"

    @admin.display(description="local → platform")
    def differences(self, drift: Drift) -> str:
        parts = [f"{name}: {pair[0]!r} here, {pair[1]!r} there" if isinstance(pair, list) and len(pair) == 2
                 else f"{name}: {pair!r}" for name, pair in (drift.fields or {}).items()]
        return _short("; ".join(parts), 300) or "—"

    @admin.display(description="pushed")
    def pushed(self, drift: Drift) -> str:
        if drift.pushed_at is None:
            return "—"
        return f"{timesince(drift.pushed_at, timezone.now())} ago (job #{drift.push_job_id})"

    @admin.action(description="Push local state of the selected items")
    def push_local_state(self, request: HttpRequest, queryset: QuerySet) -> None:
        pushed, refused = 0, []
        for drift in queryset:
            if not access.has_perm(request.user, "sync.manage", drift.workspace_id):
                refused.append(f"{drift}: you lack sync.manage in its workspace")
                continue
            try:
                services.drift_push(actor=request.user, drift=drift)
                pushed += 1
            except (ValueError, PermissionDenied) as exc:
                refused.append(str(exc))
        if pushed:
            self.message_user(request, f"{pushed} object(s) queued to push their local state.")
        _report_refusals(self, request, refused)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        allowed = access.workspaces_with(request.user, "sync.manage")
        if allowed is not None and not allowed:
            actions.pop("push_local_state", None)
            return actions
        # The apps' own answers to drift (Recreate from Keyward, Forget, Adopt): each checks the person's rights.
        for action in registry.drift_actions():
            actions[action.name] = (self._drift_action(action.name), action.name, action.label)
        return actions

    def _drift_action(self, name: str) -> Any:
        def run(model_admin: Any, request: HttpRequest, queryset: QuerySet) -> None:
            done, refused = 0, []
            for drift in queryset:
                try:
                    self.message_user(request, services.drift_act(actor=request.user, drift=drift, action=name))
                    done += 1
                except (ValueError, ValidationError, PermissionDenied) as exc:
                    refused.append(f"{drift}: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
            _report_refusals(self, request, refused)

        return run


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyScopedAdmin):
    """Runs are account-wide (they hold counts, no object data): shown to anyone who manages sync somewhere."""

    list_display = ("id", "operation", "kinds_label", "state", "progress", "drift_found", "jobs_enqueued",
                    "requested_by", "started_at", "finished_at", "short_error")
    list_filter = ("operation", "state")
    readonly_fields = [f.name for f in ReconcileRun._meta.fields]
    list_per_page = 30
    change_list_template = "admin/sync/reconcilerun/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = admin.ModelAdmin.get_queryset(self, request)  # not scoped per workspace: a run has none
        return qs if self._any(request, "sync.manage") else qs.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._any(request, "sync.manage")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._any(request, "sync.manage")

    @admin.display(description="kinds")
    def kinds_label(self, run: ReconcileRun) -> str:
        return ", ".join(run.kinds or []) or "—"

    @admin.display(description="progress")
    def progress(self, run: ReconcileRun) -> str:
        percent = run.percent
        if percent is None:
            return "—" if run.state == ReconcileRun.State.QUEUED else f"{run.done}"
        where = f" ({run.current_kind})" if run.current_kind else ""
        return format_html('<progress max="100" value="{}"></progress> {}/{} {}%{}', percent, run.done, run.total,
                           percent, where)

    @admin.display(description="error")
    def short_error(self, run: ReconcileRun) -> str:
        return _short(run.error)

    def get_urls(self) -> list:
        return [path("start/", self.admin_site.admin_view(self.start_view), name="sync_reconcilerun_start"),
                *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        active = ReconcileRun.objects.filter(state__in=[ReconcileRun.State.QUEUED, ReconcileRun.State.RUNNING])
        context = {**(extra_context or {}), "resync_kinds": registry.resync_kinds(),
                   "reconcile_kinds": registry.reconciler_kinds(),
                   "can_start": self._any(request, "sync.manage"), "refresh": active.exists()}
        return super().changelist_view(request, context)

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._any(request, "sync.manage"):
            raise PermissionDenied
        operation = request.POST.get("operation")
        kind = request.POST.get("kind") or None
        try:
            if operation == "resync" and kind:
                run = services.resync_start(actor=request.user, kind=kind)
            elif operation == "reconcile":
                run = services.reconcile_start(actor=request.user, kinds=[kind] if kind else None)
            else:
                raise ValueError("choose reconcile, or a kind to re-sync")
            self.message_user(request, f"{run} queued; this page shows its progress.")
        except (ValueError, PermissionDenied) as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
        return HttpResponseRedirect(reverse("admin:sync_reconcilerun_changelist"))
