"""Admin of detection: alerts (acknowledge, resolve, open an incident, resume a key the credit guard disabled),
detection policies, and incidents (detection/admin_incidents.py). Every write goes through a service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from detection import services
from detection.admin_common import severity_badge
from detection.forms import DetectionPolicyForm
from detection.guardrails import ALERT_KINDS as GUARDRAIL_KINDS
from detection.models import DetectionPolicy
from project import access
from project.actors import Actor
from project.admin_base import ReadOnlyScopedAdmin, WorkspaceFilter, WorkspaceScopedAdmin
from project.alerts import services as alert_services
from project.alerts.models import Alert

#: Every alert kind Keyward raises, for the kind filter (fixed choices: no DISTINCT over the alert table).
ALERT_KINDS: dict[str, str] = {
    "usage_spike": "Spike against the key's baseline",
    "usage_unusual_hours": "Activity in unusual hours",
    "usage_idle_key_woke": "Idle key woke up",
    "concurrency_pinned": "Concurrency pinned at the maximum",
    "credit_guard_quota": "Credit guard: key quota",
    "credit_guard_budget": "Credit guard: environment budget",
    "api_key_rotation_due": "Key due for rotation",
    "api_key_idle": "Key idle",
    "api_key_exposed": "Key found in pasted text",
    "api_key_still_in_use": "Rotated key still in use",
    "api_key_deleted_remotely": "Key deleted on the platform",
    "credential_refresh_failed": "Credential refresh failed",
    "broker_key_foreign_address": "Broker key used from a foreign address",
    **GUARDRAIL_KINDS,
}
class AlertStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("unresolved", "Open or acknowledged"), *Alert.State.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "unresolved":
            return queryset.exclude(state=Alert.State.RESOLVED)
        return queryset.filter(state=value) if value in Alert.State.values else queryset


class AlertKindFilter(admin.SimpleListFilter):
    title = "rule"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(ALERT_KINDS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyScopedAdmin):
    list_display = ("created_at", "severity_display", "title", "workspace", "kind", "state", "assignee",
                    "acknowledged_by", "resolved_by")
    list_select_related = ("workspace", "assignee", "acknowledged_by", "resolved_by")
    list_filter = (AlertStateFilter, "severity", AlertKindFilter, WorkspaceFilter)
    search_fields = ("title", "=object_id")
    readonly_fields = ("workspace", "kind", "severity", "state", "title", "details_display", "subject_link",
                       "created_at", "assignee", "repeats", "last_seen_at", "acknowledged_by", "acknowledged_at",
                       "resolved_by", "resolved_at", "delivery_log")
    fields = readonly_fields
    actions = ["acknowledge", "resolve", "open_incident"]
    change_form_template = "admin/alerts/alert/change_form.html"

    @admin.display(description="severity", ordering="severity")
    def severity_display(self, alert: Alert) -> str:
        return severity_badge(alert.severity, alert.get_severity_display())

    @admin.display(description="why (the figures)")
    def details_display(self, alert: Alert) -> str:
        rows = sorted((alert.details or {}).items())
        if not rows:
            return "—"
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((k.replace("_", " "), _plain(v)) for k, v in rows)))

    @admin.display(description="about")
    def subject_link(self, alert: Alert) -> str:
        if not alert.object_type:
            return "—"
        app_label, _, model = alert.object_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model}_change", args=[alert.object_id])
        except Exception:  # a model without an admin page
            return alert.object_repr or alert.object_id
        return format_html('<a href="{}">{}</a>', url, alert.object_repr or alert.object_id)

    @admin.display(description="where it went (deliveries and their attempts)")
    def delivery_log(self, alert: Alert) -> str:
        from detection.admin_notify import alert_delivery_log

        return alert_delivery_log(alert)

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
            except (ValueError, ValidationError) as exc:
                text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                self.message_user(request, f"“{alert.title}”: {text}", level=messages.WARNING)
        if done:
            self.message_user(request, f"{done} alert(s) {verb}.")

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, alert_services.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, alert_services.alert_resolve, "resolved")

    @admin.action(description="Open an incident for each selected alert")
    def open_incident(self, request: HttpRequest, queryset: QuerySet) -> None:
        from detection.incidents import incident_open
        from detection.models import Incident

        def one(*, actor: Actor, alert: Alert) -> None:
            incident, created = incident_open(actor=actor, alert=alert, source=Incident.Source.ALERT)
            url = reverse("admin:detection_incident_change", args=[incident.pk])
            self.message_user(request, format_html('{} <a href="{}">{}</a>', "Opened" if created else
                                                   "Already open:", url, incident), messages.SUCCESS)

        self._act(request, queryset, one, "handled")

    # --- the alert page: open an incident, resume a key the credit guard disabled ---------------------------
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [path("<path:object_id>/resume-key/", view(self.resume_key_view), name="alerts_alert_resume_key"),
                path("<path:object_id>/act/<str:verb>/", view(self.act_view), name="alerts_alert_act"),
                path("<path:object_id>/assign/", view(self.assign_view), name="alerts_alert_assign"),
                *super().get_urls()]

    def act_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        """The alert page's Acknowledge and Resolve buttons (POST); a refusal is a message on the page."""
        fn = {"acknowledge": alert_services.alert_acknowledge, "resolve": alert_services.alert_resolve}.get(verb)
        alert: Alert = self.get_scoped_object_or_404(request, object_id, "incidents.manage")
        if fn is None:
            raise Http404("No such action.")
        if request.method == "POST":
            try:
                fn(actor=request.user, alert=alert)
            except ValueError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Alert {'acknowledged' if verb == 'acknowledge' else 'resolved'}.",
                                  messages.SUCCESS)
        return HttpResponseRedirect(self.change_url(alert))

    def assign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from detection.forms import AssignAlertForm

        alert: Alert = self.get_scoped_object_or_404(request, object_id, "incidents.manage")

        def assign(form: AssignAlertForm) -> str:
            person = form.cleaned_data["assignee"]
            alert_services.alert_assign(actor=request.user, alert=alert, assignee=person)
            return f"Assigned to {person}." if person else "Nobody owns the alert now."

        return self.form_page(request, alert, form_class=AssignAlertForm, template="admin/alerts/alert/assign.html",
                              title=f"Assign “{alert.title}”", on_valid=assign, form_kwargs={"alert": alert},
                              context={"alert": alert})

    def _suspended_key(self, alert: Alert) -> Any:
        from keys.models import ApiKey

        if not alert.kind.startswith("credit_guard") or alert.object_type != "keys.apikey":
            return None
        return ApiKey.objects.filter(pk=alert.object_id, workspace_id=alert.workspace_id,
                                     suspended_at__isnull=False).first() if alert.object_id.isdigit() else None

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        alert: Alert = self.get_scoped_object_or_404(request, object_id)
        manage = access.has_perm(request.user, "incidents.manage", alert.workspace_id)
        extra = {"can_open_incident": manage, "can_manage": manage,
                 "open_incident_url": f"{reverse('admin:detection_incident_open')}?alert={alert.pk}",
                 "suspended_key": self._suspended_key(alert)
                 if access.has_perm(request.user, "keys.issue", alert.workspace_id) else None}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def resume_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A confirmation without a form (not a form_page): a refusal is a message on the alert's page."""
        from keys.services import api_key_resume

        alert: Alert = self.get_scoped_object_or_404(request, object_id)
        key = self._suspended_key(alert)
        if key is None:
            raise Http404("No suspended key behind this alert.")
        access.require(request.user, "keys.issue", alert.workspace_id)
        if request.method == "POST":
            try:
                api_key_resume(actor=request.user, key=key, reason=f"resumed from alert #{alert.pk}")
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            else:
                self.message_user(request, f"“{key}” is enabled again; the platform is told at once.",
                                  messages.SUCCESS)
            return HttpResponseRedirect(self.change_url(alert))
        return self.render_page(request, "admin/alerts/alert/resume_key.html", title=f"Resume “{key}”", obj=alert,
                                alert=alert, key=key)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain(v) for v in value)
    return "—" if value is None else str(value)


@admin.register(DetectionPolicy)
class DetectionPolicyAdmin(WorkspaceScopedAdmin):
    form = DetectionPolicyForm
    manage_permission = "incidents.manage"
    list_display = ("workspace", "time_zone", "spike", "unusual_hours", "idle_days", "concurrency_samples",
                    "credit_guard", "guardrails")
    list_select_related = ("workspace",)
    fieldsets = (
        (None, {"fields": ("workspace", "time_zone")}),
        ("Spike against the key's trailing baseline", {"fields": ("spike_factor", "spike_min_credits",
                                                                  "baseline_days")}),
        ("Unusual hours (local time)", {"fields": ("unusual_hours_enabled", "unusual_start_hour", "unusual_end_hour",
                                                   "unusual_min_credits")}),
        ("Idle key waking up, concurrency", {"fields": ("idle_days", "concurrency_samples")}),
        ("Credit guard", {"fields": ("guard_notice_percent", "guard_warning_percent", "suspend_prod_at_limit",
                                     "suspend_nonprod_at_limit", "billing_period_day")}),
        ("Guardrails on the live state (alert, or enforce)", {"fields": ("guardrail_enforce",)}),
    )

    @admin.display(description="spike")
    def spike(self, policy: DetectionPolicy) -> str:
        return f"{policy.spike_factor}× baseline and ≥ {policy.spike_min_credits:,} credits/h"

    @admin.display(description="unusual hours")
    def unusual_hours(self, policy: DetectionPolicy) -> str:
        if not policy.unusual_hours_enabled:
            return "off"
        return f"{policy.unusual_start_hour:02d}:00–{policy.unusual_end_hour:02d}:00, ≥ {policy.unusual_min_credits}"

    @admin.display(description="credit guard")
    def credit_guard(self, policy: DetectionPolicy) -> str:
        disable = [label for on, label in ((policy.suspend_prod_at_limit, "prod"),
                                           (policy.suspend_nonprod_at_limit, "others")) if on]
        return (f"{policy.guard_notice_percent}/{policy.guard_warning_percent}/100%; disables "
                f"{' and '.join(disable) if disable else 'nothing'} at 100%")

    @admin.display(description="guardrails")
    def guardrails(self, policy: DetectionPolicy) -> str:
        enforced = policy.guardrail_enforce or []
        return f"{len(enforced)} enforced, the others alert" if enforced else "all alert"

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # change the values instead: a workspace always lives by some policy

    def service_save(self, request: HttpRequest, obj: DetectionPolicy, form: Any, change: bool) -> DetectionPolicy:
        data = {f: form.cleaned_data[f] for f in services.POLICY_FIELDS}
        workspace = obj.workspace if change else form.cleaned_data["workspace"]
        if not access.has_perm(request.user, self.manage_permission, workspace.pk):
            raise PermissionDenied
        return services.detection_policy_save(actor=request.user, workspace=workspace, **data)


from detection import admin_incidents, admin_notify  # noqa: E402,F401  (register the incident, notification admins)
