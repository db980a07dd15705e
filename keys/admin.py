"""Admin pages for API keys: the list with hygiene flags, issue and the show-once secret page, rotate, rotate now,
revoke, the leak check, key policies and environment budgets. Every write goes through keys.services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from keys import leaks, services
from keys.forms import (
    ApiKeyChangeForm,
    ApiKeyIssueForm,
    BudgetsForm,
    KeyPolicyForm,
    LeakCheckForm,
    RevokeForm,
    RotateForm,
    RotateNowForm,
    SuspendForm,
)
from keys.models import ApiKey, KeyPolicy
from keys.selectors import environment_budgets, environment_spend, flagged, key_policy_of, key_usage, policy_of_row
from project import access
from project.admin_base import WorkspaceFilter, WorkspaceScopedAdmin, badge, sync_badge
from project.sync.selectors import jobs_for_object, with_sync_state
from workspaces.models import Environment

STATE_TONES = {"pending": "warn", "active": "ok", "superseded": "info", "revoked": "bad", "expired": "muted",
               "failed": "bad"}


class FlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("suspended", "Suspended"), ("overdue", "Overdue for rotation"), ("idle", "Idle"),
                ("open_network", "No network limit"), ("all_scopes_prod", "All scopes in production")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return flagged(queryset, self.value()) if self.value() else queryset


class EnvironmentFilter(admin.SimpleListFilter):
    """Environment names of the person's workspaces, from the environments table (not a DISTINCT over keys)."""

    title = "environment"
    parameter_name = "env"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        rows = list(Environment.objects.restrict(request.user, "workspace.view")
                    .order_by("workspace__name", "name").values_list("pk", "name", "workspace__name"))
        if len({w for _, _, w in rows}) <= 1:
            return [(n, n) for _, n, _ in rows]
        # Several workspaces: each one's "prod" is its own choice (by id), named with its workspace.
        return [(str(pk), f"{n} · {w}") for pk, n, w in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(environment_id=int(value)) if value.isdigit() else queryset.filter(
            environment__name=value)


DETAIL_FIELDS = ("workspace", "service_account", "environment", "state_badge", "suspension_display", "hint_display",
                 "digest", "platform_hash",
                 "remote_key_id", "flags_display", "predecessor_link", "successor_links", "activated_at",
                 "overlap_until", "last_used_at", "usage_display", "revoked_at", "revoked_by", "revoke_reason",
                 "created_by", "created_at", "sync_detail")
SUMMARY_FIELDS = ("state_badge", "environment", "service_account", "workspace")
EDIT_FIELDS = ("name", "all_scopes", "scopes", "credit_quota", "allowed_ips", "expires_at")
VIEW_FIELDS = ("name", "scopes_display", "credit_quota", "allowed_ips_display", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(WorkspaceScopedAdmin):
    form = ApiKeyChangeForm
    manage_permission = "keys.issue"
    list_display = ("name", "service_account", "environment", "state_badge", "hint_display", "scopes_summary",
                    "quota_display", "network", "last_used_at", "created_at", "expires_at", "flag_badges",
                    "sync_status")
    list_select_related = ("workspace__key_policy", "service_account", "environment__workspace")
    list_filter = ("state", FlagFilter, WorkspaceFilter, EnvironmentFilter)
    search_fields = ("name", "service_account__name", "=hint", "=remote_key_id", "=digest")
    ordering = ("-created_at",)
    list_per_page = 50
    change_form_template = "admin/keys/apikey/change_form.html"
    change_list_template = "admin/keys/apikey/change_list.html"

    # --- scoping and rights -----------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_sync_state(super().get_queryset(request), services.API_KEY_KIND)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is not None and obj.state != ApiKey.State.ACTIVE:
            return False  # only an active key changes; a revoked one never comes back
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # keys are revoked, never deleted: their history stays

    def _may(self, request: HttpRequest, key: ApiKey, *permissions: str) -> bool:
        return all(access.has_perm(request.user, p, key.workspace_id) for p in permissions)

    # --- list columns (no query per row: everything comes with the row) -------------------------------------
    @admin.display(description="state", ordering="state")
    def state_badge(self, key: ApiKey) -> str:
        state = badge(key.get_state_display(), STATE_TONES.get(key.state, "muted"), tag="strong")
        if key.suspended_at is None or key.state not in ApiKey.USABLE_STATES:
            return state
        # Disabled on the platform until resumed: say so where people look first, the reason on hover.
        return format_html('{} <span class="key-suspended" title="{}">suspended</span>', state, key.suspend_reason)

    @admin.display(description="suspension")
    def suspension_display(self, key: ApiKey) -> str:
        if not key.pk or key.suspended_at is None:
            return "—"
        by = key.suspended_by or "the credit guard"
        return format_html("disabled on the platform since {} by {}: {}", key.suspended_at, by, key.suspend_reason)

    @admin.display(description="hint")
    def hint_display(self, key: ApiKey) -> str:
        return f"…{key.hint}" if key.hint else "—"

    @admin.display(description="scopes")
    def scopes_summary(self, key: ApiKey) -> str:
        if key.has_all_scopes:
            return "all"
        scopes = list(key.scopes or [])
        return ", ".join(scopes) if len(scopes) <= 2 else f"{len(scopes)} scopes"

    @admin.display(description="credit quota", ordering="credit_quota")
    def quota_display(self, key: ApiKey) -> str:
        return f"{key.credit_quota:,}" if key.credit_quota is not None else "none"

    @admin.display(description="network")
    def network(self, key: ApiKey) -> str:
        ips = key.allowed_ips or []
        return "any" if not ips else (ips[0] if len(ips) == 1 else f"{len(ips)} ranges")

    @admin.display(description="flags")
    def flag_badges(self, key: ApiKey) -> str:
        flags = key.flags(policy_of_row(key), timezone.now())
        return format_html_join(" ", '<span class="kw-pill kw-pill--flag">{}</span>', ((f,) for f in flags)) or "—"

    @admin.display(description="sync")
    def sync_status(self, key: ApiKey) -> str:
        state = getattr(key, "sync_state", None)
        if state is None and key.remote_key_id:
            # Issued straight on the platform (no outbox job until its first change): live there, not unsynced.
            return badge("on the platform" if key.state in ApiKey.LIVE_STATES else "done", "ok")
        return sync_badge(state, getattr(key, "sync_error", None))

    # --- detail fields -----------------------------------------------------------------------------------------
    @admin.display(description="flags")
    def flags_display(self, key: ApiKey) -> str:
        return self.flag_badges(key) if key.pk else "—"

    @admin.display(description="scopes")
    def scopes_display(self, key: ApiKey) -> str:
        return "all (every permission)" if key.has_all_scopes else ", ".join(key.scopes or [])

    @admin.display(description="allowed IPs")
    def allowed_ips_display(self, key: ApiKey) -> str:
        return ", ".join(key.allowed_ips) if key.allowed_ips else "any address (no network limit)"

    @admin.display(description="predecessor")
    def predecessor_link(self, key: ApiKey) -> str:
        if not key.predecessor_id:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:keys_apikey_change", args=[key.predecessor_id]),
                           key.predecessor)

    @admin.display(description="successor")
    def successor_links(self, key: ApiKey) -> str:
        successors = list(key.successors.order_by("-created_at")) if key.pk else []
        return format_html_join(", ", '<a href="{}">{}</a> ({})', (
            (reverse("admin:keys_apikey_change", args=[s.pk]), s, s.get_state_display().lower())
            for s in successors)) or "—"

    @admin.display(description="usage, last 30 days")
    def usage_display(self, key: ApiKey) -> str:
        days = key_usage(key) if key.pk else []
        if not days:
            return "no use reported"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                                ((d.day, d.credits, d.requests) for d in days))
        return format_html("<table><tr><th>day</th><th>credits</th><th>requests</th></tr>{}</table>", rows)

    @admin.display(description="platform sync")
    def sync_detail(self, key: ApiKey) -> str:
        from project.admin_base import sync_badge

        jobs = jobs_for_object(services.API_KEY_KIND, key.pk, limit=1) if key.pk else []
        if not jobs:
            return sync_badge(None, None)
        job = jobs[0]
        return format_html("{} (attempts: {}, updated {})", sync_badge(job.state, job.last_error), job.attempts,
                           job.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        editable = obj is not None and self.has_change_permission(request, obj)
        # What the key is first (state, environment, account), then what can change, then the details.
        return [("Key", {"fields": SUMMARY_FIELDS}),
                ("Scopes and limits", {"fields": EDIT_FIELDS if editable else VIEW_FIELDS}),
                ("Details", {"fields": tuple(f for f in DETAIL_FIELDS if f not in SUMMARY_FIELDS)})]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return DETAIL_FIELDS + ("scopes_display", "allowed_ips_display")

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def service_save(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> ApiKey:
        return services.api_key_update(actor=request.user, key=obj, **form.update_fields())

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        key = self.get_scoped_object_or_404(request, object_id)
        tools = {
            "can_rotate": key.state == ApiKey.State.ACTIVE and self._may(request, key, "keys.issue"),
            "can_rotate_now": (key.state in ApiKey.USABLE_STATES
                               and self._may(request, key, "keys.issue", "keys.revoke")),
            "can_revoke": not key.is_final and self._may(request, key, "keys.revoke"),
            "can_suspend": (key.state in ApiKey.USABLE_STATES and key.suspended_at is None
                            and self._may(request, key, "keys.revoke")),
            "can_resume": (key.state in ApiKey.USABLE_STATES and key.suspended_at is not None
                           and self._may(request, key, "keys.issue")),
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **tools})

    # --- custom pages ------------------------------------------------------------------------------------------
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("leak-check/", view(self.leak_check_view), name="keys_apikey_leak_check"),
            path("budgets/", view(self.budgets_view), name="keys_apikey_budgets"),
            path("<path:object_id>/rotate/", view(self.rotate_view), name="keys_apikey_rotate"),
            path("<path:object_id>/rotate-now/", view(self.rotate_now_view), name="keys_apikey_rotate_now"),
            path("<path:object_id>/revoke/", view(self.revoke_view), name="keys_apikey_revoke"),
            path("<path:object_id>/suspend/", view(self.suspend_view), name="keys_apikey_suspend"),
            path("<path:object_id>/resume/", view(self.resume_view), name="keys_apikey_resume"),
            *super().get_urls(),
        ]

    @sensitive_variables("issued")
    def _secret_page(self, request: HttpRequest, issued: services.IssuedKey | None, *, key: ApiKey,
                     title: str) -> HttpResponse:
        """The show-once page: the answer to the POST that issued the key, never shown again."""
        return self.render_page(request, "admin/keys/apikey/secret.html", title=title, obj=key, key=key,
                                secret=issued.secret if issued else None)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """Issue a key. The answer to the POST is the only page that ever shows the secret."""
        if not self.has_add_permission(request):
            raise PermissionDenied

        @sensitive_variables("issued")
        def issue(form: ApiKeyIssueForm) -> HttpResponse:
            data = form.cleaned_data
            try:
                issued = services.api_key_issue(
                    actor=request.user, service_account=data["service_account"], environment=data["environment"],
                    name=data["name"], scopes=data["scopes"], credit_quota=data["credit_quota"],
                    allowed_ips=data["allowed_ips"], expires_at=data["expires_at"],
                    request_uuid=data["request_uuid"])
            except services.AlreadyIssued as exc:
                return self._secret_page(request, None, key=exc.key, title="Key already issued")
            return self._secret_page(request, issued, key=issued.key, title=f"Key “{issued.key.name}” issued")

        return self.form_page(request, None, form_class=ApiKeyIssueForm, form_kwargs={"user": request.user},
                              template="admin/keys/apikey/issue.html", title="Issue an API key", on_valid=issue)

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        key: ApiKey = self.get_scoped_object_or_404(request, object_id, "keys.issue")

        @sensitive_variables("issued")
        def rotate(form: RotateForm) -> HttpResponse:
            try:
                issued = services.api_key_rotate(actor=request.user, key=key,
                                                 overlap=timedelta(days=form.cleaned_data["overlap_days"]),
                                                 request_uuid=form.cleaned_data["request_uuid"])
            except services.AlreadyIssued as exc:
                return self._secret_page(request, None, key=exc.key, title="Successor already issued")
            return self._secret_page(request, issued, key=issued.key, title=f"“{key.name}” rotated")

        return self.form_page(request, key, form_class=RotateForm,
                              form_kwargs={"policy": key_policy_of(key.workspace_id)},
                              template="admin/keys/apikey/rotate.html", title=f"Rotate “{key}”", on_valid=rotate,
                              context={"key": key, "immediate": False})

    def rotate_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        key: ApiKey = self.get_scoped_object_or_404(request, object_id, "keys.issue", "keys.revoke")

        @sensitive_variables("issued")
        def rotate_now(form: RotateNowForm) -> str | HttpResponse:
            try:
                issued = services.api_key_rotate_now(actor=request.user, key=key,
                                                     request_uuid=form.cleaned_data["request_uuid"])
            except services.AlreadyIssued as exc:
                return self._secret_page(request, None, key=exc.key, title="Successor already issued")
            if issued is None:
                return f"“{key}” is revoked; its successor from the earlier rotation stays in use."
            return self._secret_page(request, issued, key=issued.key, title=f"“{key.name}” revoked and replaced")

        return self.form_page(request, key, form_class=RotateNowForm, template="admin/keys/apikey/rotate.html",
                              title=f"Rotate “{key}” now", on_valid=rotate_now,
                              context={"key": key, "immediate": True})

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        key: ApiKey = self.get_scoped_object_or_404(request, object_id, "keys.revoke")

        def revoke(form: RevokeForm) -> str:
            services.api_key_revoke(actor=request.user, key=key, reason=form.cleaned_data["reason"])
            return f"“{key}” is revoked; the platform is told at once."

        return self.form_page(request, key, form_class=RevokeForm, template="admin/keys/apikey/revoke.html",
                              title=f"Revoke “{key}”", on_valid=revoke, context={"key": key})

    def suspend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Disable the key on the platform until resumed (keys.revoke): for a suspected leak under investigation
        or a runaway spend, when revoking would break a service that may turn out to be innocent."""
        return self._suspension_view(request, object_id, suspend=True)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Enable a suspended key again (keys.issue: it lets the key spend again)."""
        return self._suspension_view(request, object_id, suspend=False)

    def _suspension_view(self, request: HttpRequest, object_id: str, *, suspend: bool) -> HttpResponse:
        key: ApiKey = self.get_scoped_object_or_404(request, object_id, "keys.revoke" if suspend else "keys.issue")
        if key.state not in ApiKey.USABLE_STATES or (key.suspended_at is None) != suspend:
            self.message_user(request, f"“{key}” is {key.get_state_display().lower()}"
                              f"{' and suspended' if key.suspended_at else ''}: there is nothing to "
                              f"{'suspend' if suspend else 'resume'}.", messages.WARNING)
            return HttpResponseRedirect(self.change_url(key))

        def switch(form: SuspendForm) -> str:
            reason = form.cleaned_data["reason"]
            if suspend:
                services.api_key_suspend(actor=request.user, key=key, reason=reason)
            else:
                services.api_key_resume(actor=request.user, key=key, reason=reason)
            done = "suspended: the platform disables it" if suspend else "resumed: the platform enables it"
            return f"“{key}” is {done} at once."

        return self.form_page(request, key, form_class=SuspendForm, form_kwargs={"required": suspend},
                              template="admin/keys/apikey/suspend.html",
                              title=f"{'Suspend' if suspend else 'Resume'} “{key}”", on_valid=switch,
                              context={"key": key, "suspend": suspend})

    @method_decorator(sensitive_post_parameters("text"))
    @sensitive_variables("form", "text")
    def leak_check_view(self, request: HttpRequest) -> HttpResponse:
        """Paste text, see which keys it exposes. The text is checked in memory: never stored, logged, kept in
        the session or echoed back. (Not a form_page: the answer is a report on this page, not a redirect.)"""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = LeakCheckForm(request.POST or None)
        report = None
        if request.method == "POST" and form.is_valid():
            report = leaks.leak_check(actor=request.user, text=form.cleaned_data["text"])
            form = LeakCheckForm()  # the pasted text is not sent back
        # Matches the person may open an incident for (detection's "Open incident" button).
        incident_keys = {m.key.pk for m in (report.matches if report else [])
                         if access.has_perm(request.user, "incidents.manage", m.key.workspace_id)}
        return self.render_page(request, "admin/keys/apikey/leak_check.html", title="Leak check", form=form,
                                report=report, incident_keys=incident_keys)

    def budgets_view(self, request: HttpRequest) -> HttpResponse:
        """Credit budgets per environment next to what the live keys' quotas hold; editable with
        workspace.manage."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = environment_budgets(request.user)
        editable = [(env, allocated) for env, allocated in rows
                    if access.has_perm(request.user, "workspace.manage", env.workspace_id)]
        if request.method == "POST" and not editable:
            raise PermissionDenied
        editable_ids = {env.pk for env, _ in editable}

        def save(form: BudgetsForm) -> str:
            services.environment_budgets_set(actor=request.user, budgets=form.budgets())
            return "Budgets saved."

        spend = environment_spend([env for env, _ in rows])

        def table(form: BudgetsForm) -> dict[str, Any]:
            return {"table": [(env, allocated, *spend[env.pk],
                               form[f"budget_{env.pk}"] if env.pk in editable_ids else None)
                              for env, allocated in rows]}

        return self.form_page(request, None, form_class=BudgetsForm, form_kwargs={"environments": editable},
                              template="admin/keys/apikey/budgets.html", title="Environment budgets",
                              on_valid=save, success_url=reverse("admin:keys_apikey_budgets"), context=table)


@admin.register(KeyPolicy)
class KeyPolicyAdmin(WorkspaceScopedAdmin):
    form = KeyPolicyForm
    list_display = ("workspace", "rotation_period_days", "max_live_keys_per_account_per_env", "idle_days",
                    "default_overlap_days", "quiet_hours")
    list_select_related = ("workspace",)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # change the values instead; a workspace always lives by some policy

    def service_save(self, request: HttpRequest, obj: KeyPolicy, form: Any, change: bool) -> KeyPolicy:
        data = {f: form.cleaned_data[f] for f in services.POLICY_FIELDS}
        workspace = obj.workspace if change else form.cleaned_data["workspace"]
        return services.key_policy_save(actor=request.user, workspace=workspace, **data)
