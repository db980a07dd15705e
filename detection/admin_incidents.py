"""The incident pages: the list, opening one (from an alert, a leak-check match or by hand), the incident page
as a timeline with the walk (revoke → replace → blast radius → related secrets → post-mortem → close), one page
per step, and the Markdown export. Every write calls a service in detection.incidents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from detection import incidents as services
from detection.admin_common import severity_badge
from detection.forms import (
    BlastRadiusForm,
    CloseForm,
    NoteForm,
    OpenIncidentForm,
    PostmortemForm,
    RelatedForm,
    ReplaceStepForm,
    RevokeStepForm,
)
from detection.models import Incident, IncidentStep
from detection.report import incident_markdown
from detection.selectors import blast_radius, latest_steps, related_candidates, timeline
from keys.models import ApiKey
from keys.services import AlreadyIssued
from project import access
from project.admin_base import Outcome, WorkspaceFilter, WorkspaceScopedAdmin, badge
from workspaces.models import Workspace

STATE_TONES = {"open": "bad", "contained": "warn", "closed": "ok"}


class IncidentStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("ongoing", "Open or contained"), *Incident.State.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "ongoing":
            return queryset.exclude(state=Incident.State.CLOSED)
        return queryset.filter(state=value) if value in Incident.State.values else queryset


@admin.register(Incident)
class IncidentAdmin(WorkspaceScopedAdmin):
    manage_permission = "incidents.manage"
    list_display = ("number", "title", "subject_repr", "severity_display", "state_display", "source", "workspace",
                    "created_at", "opened_by")
    list_display_links = ("number", "title")
    list_select_related = ("workspace", "opened_by")
    list_filter = (IncidentStateFilter, "severity", "source", WorkspaceFilter)
    search_fields = ("title", "subject_repr")
    fieldsets = (
        (None, {"fields": ("title", "severity", "summary")}),
        ("Incident", {"fields": ("workspace", "state_display", "source", "subject_link", "alert_link",
                                 "exposure_window", "replacement_link", "opened_by", "created_at", "closed_by",
                                 "closed_at")}),
        ("Post-mortem", {"fields": ("root_cause", "controls_display")}),
    )
    readonly_fields = ("workspace", "state_display", "source", "subject_link", "alert_link", "exposure_window",
                       "replacement_link", "opened_by", "created_at", "closed_by", "closed_at", "root_cause",
                       "controls_display")
    change_form_template = "admin/detection/incident/change_form.html"

    # --- columns and fields --------------------------------------------------------------------------------
    @admin.display(description="#", ordering="pk")
    def number(self, incident: Incident) -> str:
        return f"#{incident.pk}"

    @admin.display(description="severity", ordering="severity")
    def severity_display(self, incident: Incident) -> str:
        return severity_badge(incident.severity, incident.get_severity_display())

    @admin.display(description="state", ordering="state")
    def state_display(self, incident: Incident) -> str:
        return badge(incident.get_state_display(), STATE_TONES.get(incident.state, "quiet"), tag="strong")

    @admin.display(description="subject")
    def subject_link(self, incident: Incident) -> str:
        if incident.api_key_id:
            return format_html('<a href="{}">{}</a>', reverse("admin:keys_apikey_change", args=[incident.api_key_id]),
                               incident.subject_repr)
        if incident.secret_id:
            return format_html('<a href="{}">{}</a>',
                               reverse("admin:secrets_app_secret_change", args=[incident.secret_id]),
                               incident.subject_repr)
        if incident.platform_account_id:
            return format_html('<a href="{}">{}</a>', reverse("admin:workspaces_platformaccount_change",
                                                              args=[incident.platform_account_id]),
                               incident.subject_repr)
        return incident.subject_repr or "—"

    @admin.display(description="from alert")
    def alert_link(self, incident: Incident) -> str:
        if not incident.alert_id:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:alerts_alert_change", args=[incident.alert_id]),
                           incident.alert)

    @admin.display(description="exposure window (UTC)")
    def exposure_window(self, incident: Incident) -> str:
        def fmt(value: Any) -> str:
            return value.strftime("%Y-%m-%d %H:%M") if value else "?"

        if not incident.exposure_start and not incident.exposure_end:
            return "not set yet (the blast-radius step sets it)"
        return f"{fmt(incident.exposure_start)} → {fmt(incident.exposure_end) if incident.exposure_end else 'now'}"

    @admin.display(description="replacement")
    def replacement_link(self, incident: Incident) -> str:
        if not incident.replacement_key_id:
            return "—"
        return format_html('<a href="{}">{}</a>',
                           reverse("admin:keys_apikey_change", args=[incident.replacement_key_id]),
                           incident.replacement_key)

    @admin.display(description="controls added")
    def controls_display(self, incident: Incident) -> str:
        items = [services.CONTROLS[c] for c in incident.controls_added if c in services.CONTROLS]
        if incident.controls_notes:
            items.append(incident.controls_notes)
        return "; ".join(items) or "—"

    # --- rights ----------------------------------------------------------------------------------------------
    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # an incident is part of the record; it is closed, never deleted

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = list(self.readonly_fields)
        if obj is not None and (obj.is_closed or not self.has_change_permission(request, obj)):
            fields += ["title", "severity", "summary"]
        return fields

    def service_save(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> Incident:
        data = {f: form.cleaned_data[f] for f in services.UPDATE_FIELDS if f in form.cleaned_data}
        return services.incident_update(actor=request.user, incident=obj, **data)

    # --- the incident page: walk and timeline ---------------------------------------------------------------
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        steps = [("revoke", self.revoke_view), ("replace", self.replace_view), ("blast-radius", self.blast_view),
                 ("related", self.related_view), ("postmortem", self.postmortem_view), ("close", self.close_view),
                 ("note", self.note_view)]
        return [
            path("open/", view(self.open_view), name="detection_incident_open"),
            *[path(f"<path:object_id>/{slug}/", view(fn), name=f"detection_incident_{slug.replace('-', '_')}")
              for slug, fn in steps],
            path("<path:object_id>/export.md", view(self.export_view), name="detection_incident_export"),
            *super().get_urls(),
        ]

    def walk(self, request: HttpRequest, incident: Incident) -> list[dict[str, Any]]:
        done = latest_steps(incident)
        manage = access.has_perm(request.user, self.manage_permission, incident.workspace_id) \
            and not incident.is_closed
        has_subject = incident.subject_kind != "none"
        revoked = IncidentStep.Kind.REVOKE in done

        def item(kind: str, label: str, slug: str, available: bool, explain: str) -> dict[str, Any]:
            step = done.get(kind)
            return {"kind": kind, "label": label, "step": step, "explain": explain,
                    "url": reverse(f"admin:detection_incident_{slug}", args=[incident.pk]),
                    "available": manage and available}

        secret = incident.subject_kind == "secret"
        account = incident.subject_kind == "platform_account"
        return [
            item(IncidentStep.Kind.REVOKE, "Revoke now", "revoke", has_subject and not revoked,
                 "Confirm it was revoked at its issuer." if secret else
                 "Keyward switches to a new key and deletes the exposed one at once." if account else
                 "The key stops working at once."),
            item(IncidentStep.Kind.REPLACE, "Issue the replacement", "replace",
                 has_subject and revoked and IncidentStep.Kind.REPLACE not in done,
                 "Store the new value." if secret else "Done in the revoke step." if account else
                 "Same scopes, quota and network limits; the secret is shown once."),
            item(IncidentStep.Kind.BLAST_RADIUS, "Blast radius", "blast_radius", True,
                 "What it could reach, and what it spent while exposed."),
            item(IncidentStep.Kind.RELATED_SECRETS, "Related secrets to rotate", "related", True,
                 "A key rarely leaks alone: what sat next to it?"),
            item(IncidentStep.Kind.POSTMORTEM, "Post-mortem", "postmortem", True,
                 "Root cause and the controls added."),
            item(IncidentStep.Kind.CLOSED, "Close", "close",
                 IncidentStep.Kind.POSTMORTEM in done and (revoked or not has_subject), "Resolves the source alert."),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        incident = self._incident(request, object_id)
        extra = {"walk": self.walk(request, incident), "timeline": timeline(incident),
                 "export_url": reverse("admin:detection_incident_export", args=[incident.pk]),
                 "note_url": reverse("admin:detection_incident_note", args=[incident.pk]),
                 "can_note": access.has_perm(request.user, self.manage_permission, incident.workspace_id)}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def _incident(self, request: HttpRequest, object_id: str, *permissions: str) -> Incident:
        incident: Incident = self.get_scoped_object_or_404(request, object_id, *permissions)
        steps = IncidentStep.objects.order_by("created_at", "id")
        return (Incident.objects.select_related("workspace", "alert", "api_key", "replacement_key", "platform_account",
                                                "opened_by",
                                                "closed_by")
                .prefetch_related(Prefetch("steps", queryset=steps)).get(pk=incident.pk))

    def _step_page(self, request: HttpRequest, incident: Incident, *, form_class: Any, title: str,
                   on_valid: Callable[[Any], Outcome], intro: str = "", form_kwargs: dict[str, Any] | None = None,
                   **extra: Any) -> HttpResponseBase:
        """One step of the walk: its form on step.html; done, it goes back to the incident page."""
        return self.form_page(request, incident, form_class=form_class, form_kwargs=form_kwargs,
                              template="admin/detection/incident/step.html", title=title, on_valid=on_valid,
                              context={"incident": incident, "intro": intro, **extra})

    # --- open ------------------------------------------------------------------------------------------------
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        return self.open_view(request)

    def open_view(self, request: HttpRequest) -> HttpResponse:
        """Open an incident: ?alert=<id>, ?key=<id>&source=leak_check, ?secret=<id>, or nothing (choose here)."""
        from detection.selectors import alerts_for
        from keys.selectors import api_keys_for
        from secrets_app.selectors import secrets_for

        if not self.has_add_permission(request):
            raise PermissionDenied
        from workspaces.models import PlatformAccount

        keys = api_keys_for(request.user, self.manage_permission).select_related("service_account", "environment")
        secrets = secrets_for(request.user, self.manage_permission)
        workspaces = Workspace.objects.restrict(request.user, self.manage_permission)
        params = request.POST if request.method == "POST" else request.GET
        alert = key = secret = account = None
        source = Incident.Source.MANUAL
        # Objects of another workspace answer 404 like anything else out of reach.
        if params.get("alert"):
            alert = self._scoped(alerts_for(request.user), params["alert"])
            source = Incident.Source.ALERT
        elif params.get("key"):
            key = self._scoped(api_keys_for(request.user), params["key"])
            source = Incident.Source.LEAK_CHECK if params.get("source") == "leak_check" else source
        elif params.get("secret"):
            secret = self._scoped(secrets_for(request.user), params["secret"])
        elif params.get("platform_account"):
            account = self._scoped(PlatformAccount.objects.restrict(request.user, self.manage_permission),
                                   params["platform_account"])
        fixed = any(o is not None for o in (alert, key, secret, account))

        def open_(form: OpenIncidentForm) -> HttpResponse:
            data = form.cleaned_data
            incident, created = services.incident_open(
                actor=request.user, source=source, alert=alert, api_key=key or data.get("api_key"),
                secret=secret or data.get("secret"), workspace=data.get("workspace"), title=data["title"],
                summary=data["summary"], severity=data["severity"] or None, exposure_start=data["exposure_start"],
                platform_account=account)
            self.message_user(request, f"Incident {incident} opened." if created else
                              f"{incident} is already open for this; continue there.", messages.SUCCESS)
            return HttpResponseRedirect(self.change_url(incident))

        return self.form_page(
            request, None, form_class=OpenIncidentForm,
            form_kwargs={"keys": keys, "secrets": secrets, "workspaces": workspaces, "fixed": fixed,
                         "account": account},
            template="admin/detection/incident/open.html", title="Open an incident", on_valid=open_,
            context={"subject": alert or key or secret or account, "alert": alert, "key": key, "secret": secret,
                     "account": account, "source": source,
                     "hidden": {"alert": params.get("alert", ""), "key": params.get("key", ""),
                                "secret": params.get("secret", ""), "source": params.get("source", ""),
                                "platform_account": params.get("platform_account", "")}})

    def _scoped(self, queryset: QuerySet, value: str) -> Any:
        obj = queryset.filter(pk=value).first() if str(value).isdigit() else None
        if obj is None:
            raise Http404("No such object.")
        return obj

    # --- the steps ------------------------------------------------------------------------------------------
    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)

        paste = False
        if incident.platform_account_id:
            from workspaces.services.platform_accounts import platform_key_can_self_rotate

            paste = not platform_key_can_self_rotate(incident.platform_account)

        def revoke(form: RevokeStepForm) -> str:
            services.incident_revoke(actor=request.user, incident=incident, reason=form.cleaned_data["reason"],
                                     successor_key=form.cleaned_data.get("successor_key") or "")
            if incident.platform_account_id:
                return ("Keyward now uses a new key for the account and the exposed one is deleted: the exposure "
                        "window is closed.")
            return "Revoked: the exposure window is closed."

        intro = ("Revoke the key now: it stops working on the platform at once (disabled, then deleted). Do not "
                 "wait to understand the full scope." if incident.api_key_id else
                 "Keyward cannot stop using its key before it has another: it switches to a successor now (issued "
                 "by Keyward where the platform lists the key, else the one you paste), with no overlap, and "
                 "deletes the exposed key on the platform at once. Anything else still using the exposed key "
                 "stops working." if incident.platform_account_id else
                 "Revoke the secret where it was issued (its provider's console), then record here how.")
        return self._step_page(request, incident, form_class=RevokeStepForm, form_kwargs={"paste_successor": paste},
                               title=f"Revoke: {incident.subject_repr}", on_valid=revoke, intro=intro)

    @method_decorator(sensitive_post_parameters("new_value"))
    def replace_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)
        secret_subject = incident.subject_kind == "secret"

        @sensitive_variables("issued")
        def replace(form: ReplaceStepForm) -> str | HttpResponse:
            try:
                issued = services.incident_replace(actor=request.user, incident=incident,
                                                   request_uuid=form.cleaned_data["request_uuid"],
                                                   new_value=form.cleaned_data.get("new_value"))
            except AlreadyIssued as exc:
                return self._secret_page(request, incident, exc.key, None)
            if issued is not None:
                return self._secret_page(request, incident, issued.key, issued.secret)
            return "Replacement recorded."

        intro = ("Store the secret's new value: Keyward encrypts it, never shows it again, and updates the platform."
                 if secret_subject else
                 "Issue the successor now, with the same environment, scopes, quota and network limits. Its secret "
                 "is shown once on the next page: put it in your secret manager and roll it out.")
        return self._step_page(request, incident, form_class=ReplaceStepForm,
                               form_kwargs={"secret_subject": secret_subject},
                               title=f"Replace: {incident.subject_repr}", on_valid=replace, intro=intro)

    @sensitive_variables("secret")
    def _secret_page(self, request: HttpRequest, incident: Incident, key: ApiKey,
                     secret: str | None) -> HttpResponse:
        """The replacement key's show-once page (the API key's template, with a way back to the incident)."""
        return self.render_page(request, "admin/detection/incident/secret.html",
                                title=f"Replacement for incident {incident}", opts=ApiKey._meta, key=key,
                                secret=secret, incident=incident,
                                change_url=reverse("admin:keys_apikey_change", args=[key.pk]),
                                incident_url=self.change_url(incident))

    def blast_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)
        start = incident.exposure_start or (incident.api_key.activated_at if incident.api_key_id else None)
        initial = {"exposure_start": start, "exposure_end": incident.exposure_end}
        preview = blast_radius(incident, start, incident.exposure_end or timezone.now()) if start else None

        def assess(form: BlastRadiusForm) -> str:
            data = form.cleaned_data
            services.incident_assess(actor=request.user, incident=incident, exposure_start=data["exposure_start"],
                                     exposure_end=data["exposure_end"], notes=data["notes"])
            return "Blast radius recorded."

        return self._step_page(request, incident, form_class=BlastRadiusForm, form_kwargs={"initial": initial},
                               title=f"Blast radius: {incident.subject_repr or incident}", on_valid=assess,
                               intro="Set the exposure window: how long was it valid and exposed? The figures below "
                                     "are recorded with the step.", preview=preview)

    def related_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)
        candidates = related_candidates(incident)

        def record(form: RelatedForm) -> str:
            services.incident_list_related(actor=request.user, incident=incident, refs=form.cleaned_data["refs"],
                                           notes=form.cleaned_data["notes"])
            return "Related secrets recorded."

        return self._step_page(request, incident, form_class=RelatedForm, form_kwargs={"candidates": candidates},
                               title="Related secrets to rotate", on_valid=record,
                               intro="If the key leaked from a repository, a log store or a CI pipeline, assume what "
                                     "sat next to it leaked too. Tick what to rotate; each links to its page.",
                               candidates=candidates)

    def postmortem_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)
        initial = {"root_cause": incident.root_cause, "controls": incident.controls_added,
                   "controls_notes": incident.controls_notes}

        def record(form: PostmortemForm) -> str:
            data = form.cleaned_data
            services.incident_postmortem(actor=request.user, incident=incident, root_cause=data["root_cause"],
                                         controls=data["controls"], controls_notes=data["controls_notes"])
            return "Post-mortem recorded."

        return self._step_page(request, incident, form_class=PostmortemForm, form_kwargs={"initial": initial},
                               title="Post-mortem", on_valid=record,
                               intro="Find how the key escaped and close that path, or it will happen again.")

    def close_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)

        def close(form: CloseForm) -> str:
            services.incident_close(actor=request.user, incident=incident, notes=form.cleaned_data["notes"])
            return "Incident closed."

        return self._step_page(request, incident, form_class=CloseForm, title="Close the incident", on_valid=close,
                               intro="Closing resolves the alert the incident came from. Notes can still be added.")

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id, self.manage_permission)

        def note(form: NoteForm) -> str:
            services.incident_note(actor=request.user, incident=incident, text=form.cleaned_data["text"])
            return "Note added."

        return self._step_page(request, incident, form_class=NoteForm, title="Add a note", on_valid=note)

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        incident = self._incident(request, object_id)
        response = HttpResponse(incident_markdown(incident), content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="incident-{incident.pk}.md"'
        return response
