from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from agents import services
from agents.forms import AgentForm, MintForm
from agents.models import Agent, Environment, Workspace
from project import access
from project.admin_base import WorkspaceScopedAdmin
from project.sync.selectors import jobs_for_object, with_sync_state

SYNC_LABELS = {
    None: ("never queued", "#777"), "pending": ("pending", "#b8860b"), "running": ("syncing", "#b8860b"),
    "done": ("synced", "#2e7d32"), "failed": ("failed", "#c62828"), "dead": ("failed (gave up)", "#c62828"),
    "superseded": ("pending", "#b8860b"), "discarded": ("not synced (discarded)", "#777"),
}


def sync_badge(state: str | None, error: str | None) -> str:
    label, colour = SYNC_LABELS.get(state, (state, "#777"))
    title = error or ""
    return format_html('<span style="color:{};font-weight:bold" title="{}">{}</span>', colour, title, label)


admin.site.site_header = "Keyward"
admin.site.site_title = "Keyward"
admin.site.index_title = "Security control plane"
# Bulk delete would bypass the services (no audit, no sync): every delete goes one object at a time.
admin.site.disable_action("delete_selected")


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    workspace_lookup = "id"
    workspace_form_fields = ()
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return access.has_perm(request.user, "workspace.manage", None)  # superusers only

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a workspace holds the audit trail's context; it is never deleted from the admin

    def service_save(self, request: HttpRequest, obj: Workspace, form: Any, change: bool) -> Workspace:
        data = {f: form.cleaned_data[f] for f in ("name", "slug", "description")}
        if change:
            return services.workspace_update(actor=request.user, workspace=obj, **data)
        return services.workspace_create(actor=request.user, **data)


@admin.register(Environment)
class EnvironmentAdmin(WorkspaceScopedAdmin):
    list_display = ("name", "workspace", "platform_environment", "budget", "is_production")
    list_select_related = ("workspace",)
    list_filter = ("is_production",)
    fields = ("workspace", "name", "platform_environment", "budget", "is_production")
    readonly_fields = ("budget",)

    @admin.display(description="credit budget")
    def budget(self, env: Environment) -> str:
        # Budgets are checked against the live keys' quotas, so they change only on the budgets page.
        amount = "none" if env.credit_budget is None else f"{env.credit_budget:,}"
        return format_html('{} (<a href="{}">change on the budgets page</a>)', amount,
                           reverse("admin:keys_apikey_budgets"))

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # keys and usage refer to environments; retire one by removing its budget instead

    def service_save(self, request: HttpRequest, obj: Environment, form: Any, change: bool) -> Environment:
        data = {f: form.cleaned_data[f] for f in services.ENV_FIELDS if f != "credit_budget"}
        workspace = obj.workspace if change else form.cleaned_data["workspace"]
        return services.environment_save(actor=request.user, workspace=workspace,
                                         environment=obj if change else None, **data)


@admin.register(Agent)
class AgentAdmin(WorkspaceScopedAdmin):
    form = AgentForm
    manage_permission = "agents.manage"
    list_display = ("name", "workspace", "auth_mode", "host_count", "max_duration_seconds", "sync_status",
                    "remote_id")
    list_select_related = ("workspace",)
    list_filter = ("auth_mode",)
    search_fields = ("name", "=remote_id")
    readonly_fields = ("remote_id", "sync_detail", "created_by")
    change_form_template = "admin/agents/agent/change_form.html"
    fieldsets = (
        (None, {"fields": ("workspace", "name", "first_message")}),
        ("Connection policy", {
            "description": "Exactly one method per agent. Signed URLs are minted by Keyward's server; an "
                           "allowlist admits exact hostnames; a public agent needs a maximum duration.",
            "fields": ("auth_mode", "allowlist", "require_origin_header", "max_duration_seconds")}),
        ("Platform", {"fields": ("remote_id", "sync_detail", "created_by")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_sync_state(super().get_queryset(request), services.AGENT_KIND)

    @admin.display(description="hosts")
    def host_count(self, agent: Agent) -> int | str:
        return len(agent.allowlist) if agent.auth_mode == Agent.AuthMode.ALLOWLIST else "—"

    @admin.display(description="sync")
    def sync_status(self, agent: Agent) -> str:
        return sync_badge(getattr(agent, "sync_state", None), getattr(agent, "sync_error", None))

    @admin.display(description="sync state")
    def sync_detail(self, agent: Agent) -> str:
        if not agent.pk:
            return "—"
        jobs = jobs_for_object(services.AGENT_KIND, agent.pk, limit=1)
        if not jobs:
            return sync_badge(None, None)
        job = jobs[0]
        reason = format_html("<br>Platform said: {}", job.last_error) if job.last_error else ""
        return format_html("{} (attempts: {}, updated {}){}", sync_badge(job.state, job.last_error), job.attempts,
                           job.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"), reason)

    def service_save(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> Agent:
        data = {f: form.cleaned_data[f] for f in services.AGENT_FIELDS}
        if change:
            return services.agent_update(actor=request.user, agent=obj, **data)
        return services.agent_create(actor=request.user, workspace=form.cleaned_data["workspace"], **data)

    def service_delete(self, request: HttpRequest, obj: Agent) -> None:
        services.agent_delete(actor=request.user, agent=obj)

    # --- the broker path: mint a signed URL or a conversation token -------------------------------------
    def get_urls(self) -> list:
        return [path("<path:object_id>/mint/", self.admin_site.admin_view(self.mint_view), name="agents_agent_mint"),
                *super().get_urls()]

    def mint_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent: Agent = self.get_scoped_object_or_404(request, object_id)  # 404 outside the person's workspaces
        access.require(request.user, "sessions.mint", agent.workspace_id)
        form = MintForm(request.POST or None, agent=agent)
        minted = None
        if request.method == "POST" and form.is_valid():
            mint = (services.agent_mint_signed_url if form.cleaned_data["kind"] == "signed_url"
                    else services.agent_mint_conversation_token)
            try:
                minted = mint(actor=request.user, agent=agent, environment=form.cleaned_data["environment"])
            except ValidationError as exc:
                for message in exc.messages:
                    self.message_user(request, message, level=messages.ERROR)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": agent,
                   "title": f"Mint a session credential for {agent}", "form": form, "minted": minted,
                   "change_url": reverse("admin:agents_agent_change", args=[agent.pk])}
        response = TemplateResponse(request, "admin/agents/agent/mint.html", context)
        # The credential is on this one page only: no cache may keep it.
        response["Cache-Control"] = "no-store"
        return response
