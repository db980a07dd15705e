"""Discover and Adopt in the admin: an account's Discover page (Platform accounts › an account › Discover) and
the reviewable list of what the account holds (observations), with Adopt per object or for all of them.

Here rather than in the sync app because the pages name platform accounts and workspaces, which live in this
app; the work is done by project.sync.services.discovery."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from project import access
from project.admin_base import ReadOnlyScopedAdmin, badge
from project.sync import registry
from project.sync.models import DiscoveryRun, Observation
from project.sync.services import discovery
from workspaces.models import PlatformAccount, Workspace

RUN_TONES = {"done": "ok", "failed": "bad", "running": "warn", "queued": "quiet"}


def _kind_title(kind: str) -> str:
    try:
        return registry.discoverable(kind).title
    except LookupError:
        return kind.replace("_", " ")


class AdoptForm(forms.Form):
    workspace = forms.ModelChoiceField(queryset=Workspace.objects.none(), empty_label=None,
                                       help_text="Adopted objects belong to this workspace; only workspaces bound to "
                                                 "the account, where you may manage sync, are offered.")

    def __init__(self, *args: Any, account_id: int, actor: Any, initial_workspace: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = access.workspaces_with(actor, "sync.manage")
        choices = Workspace.objects.filter(platform_account_id=account_id).order_by("name")
        if allowed is not None:
            choices = choices.filter(pk__in=allowed)
        self.fields["workspace"].queryset = choices
        if initial_workspace is not None:
            self.fields["workspace"].initial = initial_workspace


def report_message(report: discovery.AdoptionReport) -> tuple[str, int]:
    text = report.summary()
    if report.refused:
        shown = "; ".join(f"{label}: {reason}" for label, reason in report.refused[:10])
        more = f" (and {len(report.refused) - 10} more, see the list)" if len(report.refused) > 10 else ""
        text += f" Refused: {shown}{more}"
    return text, messages.WARNING if report.refused else messages.SUCCESS


def discover_page(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """Platform accounts › an account › Discover: the newest run, what each kind holds and how much of it Keyward
    does not manage, objects deleted on the platform since, and the two actions (Discover now, Adopt all)."""
    account: PlatformAccount = model_admin.get_object(request, unquote(object_id))
    if not discovery.may_discover(request.user, account.pk):
        raise PermissionDenied
    here = reverse("admin:workspaces_platformaccount_discover", args=[account.pk])
    if request.method == "POST" and request.POST.get("do") == "discover":
        run = discovery.discovery_start(actor=request.user, account_id=account.pk)
        model_admin.message_user(request, f"Discovery of “{account}” started (run #{run.pk}); this page shows its "
                                          "progress.", messages.SUCCESS)
        return _redirect(here)
    run = DiscoveryRun.objects.filter(account_id=account.pk).order_by("-started_at", "-id").first()
    bound = list(account.workspaces.order_by("name"))
    form = AdoptForm(request.POST if request.POST.get("do") == "adopt" else None, account_id=account.pk,
                     actor=request.user, initial_workspace=bound[0].pk if len(bound) == 1 else None)
    if request.method == "POST" and request.POST.get("do") == "adopt" and form.is_valid():
        try:
            report = discovery.adopt(actor=request.user, account_id=account.pk,
                                     workspace_id=form.cleaned_data["workspace"].pk)
        except ValidationError as exc:
            for message in exc.messages:
                model_admin.message_user(request, message, messages.ERROR)
        else:
            text, level = report_message(report)
            model_admin.message_user(request, text, level)
        return _redirect(here)
    list_url = reverse("admin:sync_observation_changelist")
    flagged = {kind: count for kind, count in _flagged_counts(account.pk)}
    kinds = [{"title": d.title, "read": (run.counts if run else {}).get(d.kind, "—"),
              "unmanaged": (run.unmanaged if run else {}).get(d.kind, "—"), "flagged": flagged.get(d.kind, 0),
              "adoptable": d.adopt is not None,
              "url": f"{list_url}?account={account.pk}&kind={d.kind}&managed=no"}
             for d in registry.discoverables()]
    return model_admin.render_page(
        request, "admin/workspaces/platformaccount/discover.html", title=f"Discover {account}", obj=account,
        account=account, run=run, kinds=kinds, form=form, bound=bound,
        running=run is not None and run.state in DiscoveryRun.OPEN_STATES,
        run_badge=badge(run.get_state_display(), RUN_TONES.get(run.state, "quiet")) if run else "",
        all_url=f"{list_url}?account={account.pk}&managed=no", risky_url=f"{list_url}?account={account.pk}&risky=yes")


def _flagged_counts(account_id: int) -> list[tuple[str, int]]:
    from django.db.models import Count

    return list(Observation.objects.filter(account_id=account_id).exclude(findings=[]).values("kind")
                .annotate(n=Count("id")).values_list("kind", "n"))


def _redirect(url: str) -> HttpResponse:
    from django.http import HttpResponseRedirect

    return HttpResponseRedirect(url)


# --- the list of observations ----------------------------------------------------------------------------------
class AccountFilter(admin.SimpleListFilter):
    title = "platform account"
    parameter_name = "account"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in PlatformAccount.objects.restrict(request.user, "workspace.view")
                .order_by("name").values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(account_id=self.value()) if self.value() else queryset


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(d.kind, d.title) for d in registry.discoverables()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class ManagedFilter(admin.SimpleListFilter):
    title = "managed by Keyward"
    parameter_name = "managed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No: not adopted yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(object_id="")
        if self.value() == "no":
            return queryset.filter(object_id="")
        return queryset


class RiskyFilter(admin.SimpleListFilter):
    title = "guardrails"
    parameter_name = "risky"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Breaks a guardrail"), ("no", "Breaks none")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(findings=[])
        if self.value() == "no":
            return queryset.filter(findings=[])
        return queryset


def facts_summary(observation: Observation) -> str:
    """A line about the object's security state, from its facts (no secret value is ever among them)."""
    facts = observation.facts or {}
    kind = observation.kind
    if kind == "agent":
        if facts.get("enable_auth"):
            policy = "signed URLs" + (" + allowlist" if facts.get("allowlist") else "")
        elif facts.get("allowlist"):
            policy = "allowlist: " + ", ".join(facts["allowlist"][:4])
        else:
            policy = "public"
        duration = facts.get("max_duration_seconds")
        parts = [policy, f"max {duration} s" if duration and duration > 0 else "no duration limit"]
        if facts.get("shareable"):
            parts.append("shareable link open")
        if facts.get("webhook_url"):
            parts.append(f"webhook {facts['webhook_url']}")
        if facts.get("archived"):
            parts.append("archived")
        return "; ".join(parts)
    if kind == "api_key":
        permissions = facts.get("permissions")
        granted = "every permission" if permissions in (None, "all") else f"{len(permissions)} permission(s)"
        ips = facts.get("allowed_ips")
        parts = [f"…{facts.get('hint', '')}", granted, f"IPs {', '.join(ips)}" if ips else "any IP"]
        if facts.get("character_limit") is not None:
            parts.append(f"quota {facts['character_limit']:,}")
        if facts.get("is_disabled"):
            parts.append("disabled")
        return "; ".join(parts)
    if kind == "secret":
        used = len(facts.get("tools") or []) + len(facts.get("agents") or [])
        return f"used by {used} tool(s)/agent(s)" if used else "not used"
    if kind == "tool":
        return f"{facts.get('type', 'webhook')} {facts.get('method', '')} {facts.get('url', '')}".strip()
    if kind == "convai_settings":
        return f"webhook {facts['webhook_url']}" if facts.get("webhook_url") else "no workspace-wide webhook"
    return ", ".join(f"{k}: {v}" for k, v in list(facts.items())[:4])


@admin.register(Observation)
class ObservationAdmin(ReadOnlyScopedAdmin):
    """What the platform accounts hold, as last read: the review list of Discover. Rows Keyward does not manage
    are seen in the workspace they would be adopted into (superusers see those whose workspace is not clear)."""

    view_permission = "sync.manage"
    list_display = ("kind_title", "label", "state", "where", "security", "guardrails", "observed_at")
    list_filter = (AccountFilter, KindFilter, ManagedFilter, RiskyFilter)
    search_fields = ("label", "=remote_id")
    readonly_fields = ("account_id", "kind", "remote_id", "label", "facts", "object_id", "workspace_id", "findings",
                       "note", "observed_at")
    actions = ["adopt_selected"]
    list_per_page = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        names = Workspace.objects.filter(pk=OuterRef("workspace_id")).values("name")[:1]
        return super().get_queryset(request).annotate(workspace_name=Subquery(names))

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not self._any(request, "sync.manage"):
            actions.pop("adopt_selected", None)
        return actions

    @admin.display(description="kind", ordering="kind")
    def kind_title(self, observation: Observation) -> str:
        return _kind_title(observation.kind)

    @admin.display(description="Keyward")
    def state(self, observation: Observation) -> str:
        if not observation.object_id:
            if observation.note:
                return badge("not adopted", "warn", title=observation.note)
            return badge("not managed", "quiet")
        if ":" in observation.object_id:
            # Governed by something other than a row of its kind: Keyward's own platform key, an agent's webhook
            # secret ("platform_account:3", "agent:12").
            return badge("Keyward's own", "ok", title=observation.object_id.replace(":", " #"))
        try:
            object_type = registry.discoverable(observation.kind).object_type
            app_label, model = object_type.split(".")
            url = reverse(f"admin:{app_label}_{model}_change", args=[observation.object_id])
        except (LookupError, ValueError, NoReverseMatch):
            return badge("Keyward's own", "ok")
        return format_html('<a href="{}">{}</a>', url, badge("managed", "ok"))

    @admin.display(description="workspace")
    def where(self, observation: Observation) -> str:
        name = getattr(observation, "workspace_name", None)
        if observation.object_id:
            return name or "—"
        return f"would go to {name}" if name else "choose when adopting"

    @admin.display(description="security")
    def security(self, observation: Observation) -> str:
        return facts_summary(observation)

    @admin.display(description="guardrails")
    def guardrails(self, observation: Observation) -> str:
        if not observation.findings:
            return "—"
        return format_html_join(" ", "{}", ((badge(str(code).replace("_", " "), "bad"),)
                                            for code in observation.findings))

    @admin.action(description="Adopt the selected objects into a workspace…")
    def adopt_selected(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        accounts = set(queryset.values_list("account_id", flat=True))
        if len(accounts) != 1:
            self.message_user(request, "Choose objects of one platform account at a time (filter by account).",
                              messages.ERROR)
            return None
        (account_id,) = accounts
        guessed = set(queryset.values_list("workspace_id", flat=True))
        initial = next(iter(guessed)) if len(guessed) == 1 else None
        form = AdoptForm(request.POST if "apply" in request.POST else None, account_id=account_id,
                         actor=request.user, initial_workspace=initial)
        if "apply" in request.POST and form.is_valid():
            try:
                report = discovery.adopt(actor=request.user, account_id=account_id,
                                         workspace_id=form.cleaned_data["workspace"].pk,
                                         observation_ids=list(queryset.values_list("pk", flat=True)))
            except ValidationError as exc:
                for message in exc.messages:
                    self.message_user(request, message, messages.ERROR)
                return None
            except PermissionDenied:
                self.message_user(request, "You may not manage sync in that workspace.", messages.ERROR)
                return None
            text, level = report_message(report)
            self.message_user(request, text, level)
            return None
        account = PlatformAccount.objects.filter(pk=account_id).first()
        return self.render_page(request, "admin/sync/observation/adopt.html",
                                title=f"Adopt {queryset.count()} object(s) of {account}", form=form,
                                objects=queryset.order_by("kind", "label")[:200], total=queryset.count(),
                                selected=list(queryset.values_list("pk", flat=True)),
                                action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME)
