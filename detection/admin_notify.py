"""Admin of notifications (Detection and response › Notification channels, Notification rules): channels with
write-only secret parts, a Send test button whose result shows on the channel's page, a signing secret shown once,
and the routing rules. Every write goes through project.alerts.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.utils.html import format_html, format_html_join

from project.admin_base import WorkspaceFilter, WorkspaceScopedAdmin, apply_errors, badge
from project.alerts import services
from project.alerts.models import Alert, Delivery, NotificationChannel, NotificationRule
from project.sync.kinds import SyncKind
from project.sync.models import SyncJob
from workspaces.models import Workspace

SECRET_HELP = "Write-only: never shown again after save. Leave blank to keep the current one."


class NotificationChannelForm(forms.ModelForm):
    url = forms.CharField(label="Webhook URL", required=False, max_length=2000,
                          widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                          help_text="Slack-compatible or generic webhook: the https:// URL. " + SECRET_HELP)
    routing_key = forms.CharField(label="PagerDuty routing key", required=False, max_length=200,
                                  widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                                  help_text="The integration key of an Events API v2 integration. " + SECRET_HELP)

    class Meta:
        model = NotificationChannel
        fields = ("workspace", "name", "kind", "addresses", "url", "routing_key", "quiet_minutes", "enabled")
        widgets = {"addresses": forms.Textarea(attrs={"rows": 3})}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        workspace = data.get("workspace") if "workspace" in self.fields else self.instance.workspace
        if workspace is None or self.errors:
            return data
        try:
            services.notification_channel_check(
                workspace=workspace, channel=self.instance if self.instance.pk else None,
                **{f: data.get(f) for f in services.CHANNEL_FIELDS if f in data})
        except ValidationError as exc:
            apply_errors(self, exc)
        return data


def _delivery_rows(deliveries: list[Delivery], *, show_alert: bool = False) -> str:
    if not deliveries:
        return "—"
    jobs: dict[str, SyncJob] = {}
    for job in (SyncJob.objects.filter(kind=SyncKind.NOTIFICATION, object_id__in=[str(d.pk) for d in deliveries])
                .order_by("id")):
        jobs[job.object_id] = job  # the newest job of each delivery
    tones = {SyncJob.State.DONE: "ok", SyncJob.State.PENDING: "warn", SyncJob.State.RUNNING: "warn",
             SyncJob.State.DEAD: "bad", SyncJob.State.FAILED: "bad"}

    def row(d: Delivery) -> tuple[Any, ...]:
        job = jobs.get(str(d.pk))
        state = job.state if job else "—"
        label = {"done": "delivered", "pending": "waiting" if job and not job.attempts else "retrying"}.get(
            state, state)
        return (d.created_at.strftime("%Y-%m-%d %H:%M:%S"), d.get_event_display(), d.channel_label,
                badge(label, tones.get(state, "muted")), job.attempts if job else 0,
                (d.sent_at.strftime("%H:%M:%S") + f" (HTTP {d.response_status})" if d.response_status and
                 d.response_status != 250 else d.sent_at.strftime("%H:%M:%S")) if d.sent_at else "",
                (job.last_error if job else "") or "")

    return format_html(
        '<table class="delivery-log"><thead><tr><th>queued</th><th>about</th><th>to</th><th>state</th>'
        "<th>attempts</th><th>sent</th><th>last error</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                         "</tr>", (row(d) for d in deliveries)))


def alert_delivery_log(alert: Alert) -> str:
    """Where the alert went and each delivery's attempts (the alert page)."""
    return _delivery_rows(list(Delivery.objects.filter(alert=alert).order_by("-id")[:100]))


@admin.register(NotificationChannel)
class NotificationChannelAdmin(WorkspaceScopedAdmin):
    form = NotificationChannelForm
    manage_permission = "incidents.manage"
    list_display = ("name", "workspace", "kind", "enabled", "quiet_minutes")
    list_select_related = ("workspace",)
    list_filter = ("kind", "enabled", WorkspaceFilter)
    search_fields = ("name",)
    change_form_template = "admin/alerts/notificationchannel/change_form.html"

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        fields = ["workspace", "name", "kind", "addresses", "url", "routing_key", "quiet_minutes", "enabled"]
        return fields + (["secret_parts", "recent_deliveries"] if obj is not None else [])

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *(["secret_parts", "recent_deliveries"] if obj else [])]

    @admin.display(description="secret parts")
    def secret_parts(self, channel: NotificationChannel) -> str:
        from project.fields import field_state

        parts = {"url": "webhook URL", "routing_key": "routing key", "signing_secret": "signing secret"}
        states = [f"{label}: {field_state(channel, name)}" for name, label in parts.items()
                  if field_state(channel, name) != "empty"]
        return "; ".join(states) or "—"

    @admin.display(description="recent deliveries (tests included)")
    def recent_deliveries(self, channel: NotificationChannel) -> str:
        return _delivery_rows(list(Delivery.objects.filter(channel=channel).order_by("-id")[:20]))

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [path("<path:object_id>/send-test/", view(self.send_test_view), name="alerts_notificationchannel_test"),
                path("<path:object_id>/rotate-secret/", view(self.rotate_secret_view),
                     name="alerts_notificationchannel_rotate"),
                *super().get_urls()]

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        channel: NotificationChannel = self.get_scoped_object_or_404(request, object_id, self.manage_permission)
        if request.method == "POST":
            services.notification_channel_test(actor=request.user, channel=channel)
            self.message_user(request, "Test message queued: its result shows under “recent deliveries” below "
                                       "(reload in a moment).", messages.SUCCESS)
        return HttpResponseRedirect(self.change_url(channel))

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        channel: NotificationChannel = self.get_scoped_object_or_404(request, object_id, self.manage_permission)
        if request.method != "POST":
            return HttpResponseRedirect(self.change_url(channel))
        try:
            secret = services.notification_channel_rotate_secret(actor=request.user, channel=channel)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(self.change_url(channel))
        return self._secret_page(request, channel, secret)

    def _secret_page(self, request: HttpRequest, channel: NotificationChannel, secret: str) -> HttpResponse:
        return self.render_page(request, "admin/alerts/notificationchannel/secret.html",
                                title=f"Signing secret of “{channel.name}”", obj=channel, channel=channel,
                                secret=secret)

    def service_save(self, request: HttpRequest, obj: NotificationChannel, form: Any,
                     change: bool) -> NotificationChannel:
        data = form.cleaned_data
        workspace = obj.workspace if change else data["workspace"]
        channel, secret = services.notification_channel_save(
            actor=request.user, workspace=workspace, channel=obj if change else None,
            **{f: data.get(f) for f in services.CHANNEL_FIELDS if f in data})
        request._channel_secret = secret  # type: ignore[attr-defined]  (shown once by response_add/change)
        return channel

    def _maybe_secret(self, request: HttpRequest, obj: NotificationChannel, default: HttpResponse) -> HttpResponse:
        secret = getattr(request, "_channel_secret", "")
        return self._secret_page(request, obj, secret) if secret else default

    def response_add(self, request: HttpRequest, obj: Model, post_url_continue: str | None = None) -> HttpResponse:
        return self._maybe_secret(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request: HttpRequest, obj: Model) -> HttpResponse:
        return self._maybe_secret(request, obj, super().response_change(request, obj))

    def service_delete(self, request: HttpRequest, obj: NotificationChannel) -> None:
        services.notification_channel_delete(actor=request.user, channel=obj)


class NotificationRuleForm(forms.ModelForm):
    severities = forms.MultipleChoiceField(choices=Alert.Severity.choices, required=False,
                                           widget=forms.CheckboxSelectMultiple, help_text="None ticked: any severity.")
    kinds = forms.MultipleChoiceField(choices=(), required=False, widget=forms.CheckboxSelectMultiple,
                                      help_text="None ticked: every kind of alert.")

    class Meta:
        model = NotificationRule
        fields = ("workspace", "name", "severities", "kinds", "channels", "is_default", "enabled")
        widgets = {"channels": forms.CheckboxSelectMultiple}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from detection.admin import ALERT_KINDS

        super().__init__(*args, **kwargs)
        self.fields["kinds"].choices = list(ALERT_KINDS.items())

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        workspace = data.get("workspace") if "workspace" in self.fields else self.instance.workspace
        channels = data.get("channels")
        if workspace is not None and channels is not None and any(c.workspace_id != workspace.pk for c in channels):
            self.add_error("channels", "Choose channels of the rule's workspace.")
        return data


@admin.register(NotificationRule)
class NotificationRuleAdmin(WorkspaceScopedAdmin):
    form = NotificationRuleForm
    manage_permission = "incidents.manage"
    list_display = ("name", "workspace", "severity_list", "kind_list", "channel_list", "is_default", "enabled")
    list_select_related = ("workspace",)
    list_filter = ("is_default", "enabled", WorkspaceFilter)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("channels")

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "channels":
            kwargs["queryset"] = NotificationChannel.objects.restrict(request.user, self.manage_permission) \
                .select_related("workspace")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="severities")
    def severity_list(self, rule: NotificationRule) -> str:
        return ", ".join(rule.severities) or "any"

    @admin.display(description="kinds")
    def kind_list(self, rule: NotificationRule) -> str:
        return ", ".join(rule.kinds) or "any"

    @admin.display(description="channels")
    def channel_list(self, rule: NotificationRule) -> str:
        return ", ".join(c.name for c in rule.channels.all()) or "—"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # the service sets the channels

    def service_save(self, request: HttpRequest, obj: NotificationRule, form: Any, change: bool) -> NotificationRule:
        data = form.cleaned_data
        workspace: Workspace = obj.workspace if change else data["workspace"]
        return services.notification_rule_save(
            actor=request.user, workspace=workspace, rule=obj if change else None, name=data["name"],
            severities=list(data.get("severities") or []), kinds=list(data.get("kinds") or []),
            channels=list(data.get("channels") or []), is_default=data.get("is_default", False),
            enabled=data.get("enabled", True))

    def service_delete(self, request: HttpRequest, obj: NotificationRule) -> None:
        services.notification_rule_delete(actor=request.user, rule=obj)
