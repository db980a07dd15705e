from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import format_html

from agents import services
from agents.forms import AgentForm, MintForm
from agents.models import Agent
from project.admin_base import WorkspaceFilter, WorkspaceScopedAdmin, sync_badge
from project.sync.selectors import jobs_for_object, with_sync_state


@admin.register(Agent)
class AgentAdmin(WorkspaceScopedAdmin):
    form = AgentForm
    manage_permission = "agents.manage"
    list_display = ("name", "workspace", "auth_mode", "host_count", "max_duration_seconds", "sync_status",
                    "remote_id")
    list_select_related = ("workspace",)
    list_filter = ("auth_mode", WorkspaceFilter)
    search_fields = ("name", "=remote_id")
    readonly_fields = ("remote_id", "sync_detail", "created_by", "origin_display", "live_state")
    change_form_template = "admin/agents/agent/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: Agent | None = None) -> Any:
        adopted = obj is not None and obj.origin == Agent.Origin.ADOPTED
        return (
            (None, {"fields": ("workspace", "name") if adopted else ("workspace", "name", "first_message")}),
            ("Connection policy", {
                "description": "Exactly one method per agent. Signed URLs are minted by Keyward's server; an "
                               "allowlist admits exact hostnames; a public agent needs a maximum duration.",
                "fields": ("auth_mode", "allowlist", "require_origin_header", "max_duration_seconds",
                           "allow_shareable_link")}),
            ("Platform", {"fields": ("origin_display", "remote_id", "live_state", "sync_detail", "created_by")}),
        )

    @admin.display(description="origin")
    def origin_display(self, agent: Agent) -> str:
        if agent.origin == Agent.Origin.ADOPTED:
            return ("Built on the platform, adopted: Keyward governs only its security settings (policy, "
                    "shareable link, maximum duration, credential webhook)")
        return "Created in Keyward"

    @admin.display(description="on the platform now")
    def live_state(self, agent: Agent) -> str:
        """What the last discovery or guardrail refresh read of the agent (its own facts, never its content)."""
        from project.sync.models import Observation
        from workspaces.admin_discovery import facts_summary

        if agent.missing_since is not None:
            return format_html("<strong>missing on the platform</strong> since {} (see the drift page)",
                               agent.missing_since.strftime("%Y-%m-%d %H:%M UTC"))
        if not agent.remote_id:
            return "not on the platform yet"
        seen = (Observation.objects.filter(kind="agent", remote_id=agent.remote_id).order_by("-observed_at")
                .first())
        if seen is None:
            return "not read yet (Discover the platform account, or wait for the guardrail refresh)"
        flags = f"; breaks: {', '.join(f.replace('_', ' ') for f in seen.findings)}" if seen.findings else ""
        return f"{facts_summary(seen)} (read {seen.observed_at:%Y-%m-%d %H:%M} UTC){flags}"

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
        data = {f: form.cleaned_data[f] for f in services.AGENT_FIELDS if f in form.cleaned_data}
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
        """Not a form_page: the credential is shown on the answer to the POST itself, and a refusal of the
        platform is a message, not a field's error."""
        agent: Agent = self.get_scoped_object_or_404(request, object_id, "sessions.mint")
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
        # The credential is on this one response only; the admin site's never_cache keeps every cache off it.
        return self.render_page(request, "admin/agents/agent/mint.html", title=f"Mint a session credential for {agent}",
                                obj=agent, original=agent, form=form, minted=minted)
