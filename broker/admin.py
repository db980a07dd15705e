"""Admin pages of the broker: broker keys (list with usage, issue once, change limits, revoke) and the
credential webhook per agent. Every page is scoped by WorkspaceScopedAdmin; every write goes through a service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from agents import services as agent_services
from agents import webhook
from agents.services import webhook_problem
from broker import limits, selectors, services
from broker.forms import BrokerKeyChangeForm, BrokerKeyIssueForm, WebhookAgentForm
from broker.models import BrokerKey, RefreshTool, WebhookAgent
from broker.services.keys import KEY_FIELDS
from broker.services.sessions import latest_signed_url_session
from project import access
from project.admin_base import WorkspaceScopedAdmin, badge
from workspaces.models import Workspace

STATUS_TONES = {"active": "ok", "expired": "warn", "revoked": "bad"}


class RefusalAsMessage(WorkspaceScopedAdmin):
    """A rule that changed between the form's check and the service's save is a message, nothing changed."""

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            for message in exc.messages:
                self.message_user(request, message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(BrokerKey)
class BrokerKeyAdmin(RefusalAsMessage):
    form = BrokerKeyChangeForm
    manage_permission = "keys.issue"
    list_display = ("name", "hint", "service_account", "environment", "agent_count", "token_type_list", "networks",
                    "rate_limit_per_minute", "carries_vault_tokens", "sessions_this_period", "requests_this_minute",
                    "last_used", "status_badge")
    list_select_related = ("workspace", "service_account", "environment__workspace", "usage")
    search_fields = ("name", "hint", "service_account__name")
    actions = ["revoke_keys"]
    fieldsets = (
        (None, {"fields": ("workspace", "service_account", "environment", "name", "hint", "status_badge")}),
        ("What it may do", {"fields": ("agents", "token_types", "allowed_networks", "rate_limit_per_minute",
                                       "session_quota", "quota_period", "expires_at", "carries_vault_tokens")}),
        ("Usage", {"fields": ("sessions_this_period", "requests_this_minute", "sessions_total", "last_used",
                              "last_address")}),
        ("History", {"fields": ("created_by", "created_at", "revoked_at", "revoked_by", "revoke_reason")}),
    )
    readonly_fields = ("workspace", "service_account", "environment", "hint", "status_badge",
                       "sessions_this_period", "requests_this_minute", "sessions_total", "last_used", "last_address",
                       "created_by", "created_at", "revoked_at", "revoked_by", "revoke_reason")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Explicit: the agent count's GROUP BY drops the model's ordering, and the autocomplete pages by it.
        return selectors.broker_keys_for(request.user, self.view_permission).order_by("workspace__name", "name",
                                                                                      "-id")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is not None and obj.is_revoked:
            return False  # a revoked key is final: its page is read-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # keys are revoked, never deleted: the audit trail and the sessions refer to them

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "agents" in form.base_fields:
            form.base_fields["agents"].queryset = (selectors.issue_choices_for(request.user)["agents"]
                                                   .filter(workspace_id=obj.workspace_id))
        return form

    # --- columns -----------------------------------------------------------------------------------
    @admin.display(description="agents")
    def agent_count(self, key: BrokerKey) -> int:
        count = getattr(key, "agent_count", None)
        return key.agents.count() if count is None else count

    @admin.display(description="token types")
    def token_type_list(self, key: BrokerKey) -> str:
        return ", ".join(key.token_types) if key.token_types else "none"

    @admin.display(description="addresses")
    def networks(self, key: BrokerKey) -> str:
        return ", ".join(key.allowed_networks) if key.allowed_networks else "any"

    def _usage(self, key: BrokerKey) -> tuple[int, int]:
        return limits.current_usage(getattr(key, "usage", None), key)

    @admin.display(description="sessions this period")
    def sessions_this_period(self, key: BrokerKey) -> str:
        return f"{self._usage(key)[0]} / {key.session_quota} {key.get_quota_period_display()}"

    @admin.display(description="requests this minute")
    def requests_this_minute(self, key: BrokerKey) -> str:
        return f"{self._usage(key)[1]} / {key.rate_limit_per_minute}"

    @admin.display(description="sessions in all")
    def sessions_total(self, key: BrokerKey) -> int:
        usage = getattr(key, "usage", None)
        return usage.sessions_total if usage else 0

    @admin.display(description="last used")
    def last_used(self, key: BrokerKey) -> str:
        usage = getattr(key, "usage", None)
        return usage.last_used_at.strftime("%Y-%m-%d %H:%M UTC") if usage and usage.last_used_at else "never"

    @admin.display(description="last address")
    def last_address(self, key: BrokerKey) -> str:
        usage = getattr(key, "usage", None)
        return (usage.last_ip or "—") if usage else "—"

    @admin.display(description="status")
    def status_badge(self, key: BrokerKey) -> str:
        return badge(key.status, STATUS_TONES[key.status])

    # --- writes ------------------------------------------------------------------------------------
    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The service has set the agents already (form.save_m2m would write them directly)."""

    def service_save(self, request: HttpRequest, obj: BrokerKey, form: Any, change: bool) -> BrokerKey:
        data = {f: form.cleaned_data[f] for f in KEY_FIELDS}
        return services.broker_key_update(actor=request.user, key=obj, agents=form.cleaned_data["agents"], **data)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """Issue a key. The key is shown on this response only (never_cache); a re-post does not show it again."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        workspaces = Workspace.objects.restrict(request.user, "keys.issue")
        template, title = "admin/broker/brokerkey/issue.html", "Issue a broker key"
        page = {"add": True, "webhook_header": webhook.HEADER}

        def issue(form: BrokerKeyIssueForm) -> HttpResponse:
            issued = services.broker_key_issue(actor=request.user, **form.cleaned_data)
            return self.render_page(request, template, title=title, form=form, issued=issued, **page)

        return self.form_page(request, None, form_class=BrokerKeyIssueForm,
                              form_kwargs={"choices": selectors.issue_choices_for(request.user),
                                           "workspaces": workspaces},
                              template=template, title=title, on_valid=issue, context={"issued": None, **page})

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        done, refused = 0, []
        for key in queryset:
            if not access.has_perm(request.user, "keys.revoke", key.workspace_id):
                refused.append(f"{key}: you lack keys.revoke in its workspace")
                continue
            if key.is_revoked:
                continue
            services.broker_key_revoke(actor=request.user, key=key, reason="revoked from the admin")
            done += 1
        if done:
            self.message_user(request, f"{done} key(s) revoked; requests with them are refused from now on.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        allowed = access.workspaces_with(request.user, "keys.revoke")
        if allowed is not None and not allowed:
            actions.pop("revoke_keys", None)
        return actions


@admin.register(WebhookAgent)
class WebhookAgentAdmin(RefusalAsMessage):
    form = WebhookAgentForm
    manage_permission = "agents.manage"
    list_display = ("name", "workspace", "auth_mode", "credential_webhook", "credential_webhook_caller_id",
                    "credential_webhook_changed_at")
    list_select_related = ("workspace",)
    list_filter = ("credential_webhook",)
    search_fields = ("name", "=remote_id")
    actions = ["turn_on", "turn_off"]
    fields = ("name", "workspace", "auth_mode", "remote_id", "webhook_url", "platform_secret", "signed_url_sessions",
              "credential_webhook", "credential_webhook_caller_id", "credential_webhook_changed_at")
    readonly_fields = ("name", "workspace", "auth_mode", "remote_id", "webhook_url", "platform_secret",
                       "signed_url_sessions", "credential_webhook_changed_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.webhook_agents_for(request.user, self.view_permission)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # agents are created on the Agents page

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="webhook URL")
    def webhook_url(self, agent: WebhookAgent) -> str:
        return format_html("{} (header {}: a secret derived per agent, kept in a platform secret, never shown)",
                           webhook.webhook_url(), webhook.HEADER)

    @admin.display(description="platform secret")
    def platform_secret(self, agent: WebhookAgent) -> str:
        """Where the platform keeps the header's value (its id and name, never the value)."""
        if agent.webhook_secret_remote_id:
            current = agent.webhook_secret_key_id == webhook.key_id()
            return format_html("{} ({}; {})", webhook.secret_name(agent), agent.webhook_secret_remote_id,
                               "current signing key" if current else "an older signing key: run broker_push_webhooks")
        return "pending: made by the next sync" if agent.credential_webhook else "none"

    @admin.display(description="signed-URL sessions")
    def signed_url_sessions(self, agent: WebhookAgent) -> str:
        """Whether the webhook can serve signed-URL sessions: it binds a conversation to its end user by the id the
        platform gives with the signed URL, which the platform does not always give (its placement is undocumented)."""
        latest = latest_signed_url_session(agent)
        if latest is None:
            return ("The webhook identifies a signed-URL session's end user by the conversation id the platform "
                    "gives with the URL; no signed-URL session has been opened yet.")
        if latest:
            return "Served: the latest signed-URL session came with a conversation id."
        return ("Not served: the latest signed URL came without a conversation id, so the webhook cannot tell whose "
                "session it is and injects no tokens. Apps should open sessions with mode=token for this agent.")

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        base = super().get_form(request, obj, change=change, **kwargs)

        class Form(base):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data = super().clean()
                if obj is not None:
                    problem = webhook_problem(obj, enabled=bool(data.get("credential_webhook")),
                                              trust_caller_id=bool(data.get("credential_webhook_caller_id")))
                    if problem:
                        raise ValidationError(problem)
                return data

        return Form

    def service_save(self, request: HttpRequest, obj: WebhookAgent, form: Any, change: bool) -> Any:
        return agent_services.agent_credential_webhook_set(
            actor=request.user, agent=obj, enabled=form.cleaned_data["credential_webhook"],
            trust_caller_id=form.cleaned_data["credential_webhook_caller_id"])

    def _switch(self, request: HttpRequest, queryset: QuerySet, enabled: bool) -> None:
        done, refused = 0, []
        for agent in queryset:
            if not access.has_perm(request.user, "agents.manage", agent.workspace_id):
                refused.append(f"{agent}: you lack agents.manage in its workspace")
                continue
            try:
                agent_services.agent_credential_webhook_set(actor=request.user, agent=agent, enabled=enabled,
                                                      trust_caller_id=agent.credential_webhook_caller_id)
                done += 1
            except ValidationError as exc:
                refused.append(f"{agent}: {' '.join(exc.messages)}")
        if done:
            self.message_user(request, f"Credential webhook turned {'on' if enabled else 'off'} for {done} "
                                       "agent(s); the platform is updated through the sync queue.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    @admin.action(description="Turn the credential webhook on")
    def turn_on(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, True)

    @admin.action(description="Turn the credential webhook off")
    def turn_off(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, False)


@admin.register(RefreshTool)
class RefreshToolAdmin(WorkspaceScopedAdmin):
    """Every agent's token-refresh tools, read-only; they are added and removed on the agent's page."""

    manage_permission = "agents.manage"
    list_display = ("agent", "provider", "state", "remote_id", "last_call_at", "last_failure_at", "last_failure")
    list_select_related = ("agent", "provider")
    readonly_fields = ("agent", "provider", "state", "remote_id", "last_call_at", "last_failure_at", "last_failure",
                       "created_by")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # on the agent's page

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # the agent page's Remove goes through the service (detach and delete on the platform)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        # Add names its agent in the form (the tool does not exist yet); remove is a view of one tool (object_id).
        return [path("add-to-agent/", view(self.add_to_agent_view), name="broker_refreshtool_add_to_agent"),
                path("<int:object_id>/remove/", view(self.remove_view), name="broker_refreshtool_remove"),
                *super().get_urls()]

    def _agent_page(self, agent: Any) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:agents_agent_change", args=[agent.pk]) + "#refresh-tools")

    def add_to_agent_view(self, request: HttpRequest) -> HttpResponse:
        from agents.models import Agent
        from secrets_app.models import OAuthProvider

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        agent_id = request.POST.get("agent") or ""
        agent = (Agent.objects.restrict(request.user, "workspace.view").filter(pk=agent_id).first()
                 if agent_id.isdigit() else None)
        if agent is None:
            raise Http404("No such agent.")
        access.require(request.user, "agents.manage", agent.workspace_id)
        provider = OAuthProvider.objects.filter(workspace_id=agent.workspace_id,
                                                pk=request.POST.get("provider") or 0).first()
        if provider is None:
            self.message_user(request, "Choose one of this workspace's OAuth providers.", level=messages.ERROR)
            return self._agent_page(agent)
        try:
            services.refresh_tool_add(actor=request.user, agent=agent, provider=provider)
        except ValidationError as exc:
            for message in exc.messages:
                self.message_user(request, message, level=messages.ERROR)
        else:
            self.message_user(request, f"The token-refresh tool for {provider.name} is being created on the "
                                       "platform and attached to the agent (sync queue).")
        return self._agent_page(agent)

    def remove_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        tool = RefreshTool.objects.restrict(request.user, "workspace.view").select_related("agent").filter(
            pk=object_id).first()
        if tool is None:
            raise Http404("No such tool.")  # another workspace's tool looks like none
        access.require(request.user, "agents.manage", tool.agent.workspace_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        agent = tool.agent
        services.refresh_tool_remove(actor=request.user, tool=tool)
        self.message_user(request, "The token-refresh tool is being detached and deleted on the platform (sync "
                                   "queue).")
        return self._agent_page(agent)
