"""The security posture dashboard's figures: every number counted in the database (one aggregate each, whatever
the number of keys), each with the URL of the filtered admin list behind it, and the credit burn of the last 30
days per environment and per key as chart data. Scoped to the workspaces the person may view."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from detection.charts import BarChart, LineChart, bar_chart, line_chart
from detection.guardrails import ALERT_KINDS as GUARDRAIL_KINDS
from detection.guardrails import KIND_PREFIX as GUARDRAIL_PREFIX
from detection.models import Guardrail, Incident
from keys.models import BURN_WINDOW_DAYS, ApiKey, EnvironmentUsageDaily, KeyUsageDaily, KeyUsageWindow
from keys.selectors import flagged
from project import access
from project.actors import Actor
from project.alerts.models import Alert
from workspaces.models import Workspace

DAYS = BURN_WINDOW_DAYS  # the key totals are pre-aggregated over this window (keys.models.KeyUsageWindow)
TOP_KEYS = 8
SEVERE = (Alert.Severity.HIGH, Alert.Severity.CRITICAL)


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: int
    url: str
    bad_when_positive: bool = True
    note: str = ""

    @property
    def tone(self) -> str:
        if not self.bad_when_positive:
            return "info"
        return "bad" if self.value else "ok"


@dataclass
class Posture:
    workspaces: list[Workspace]
    selected: Workspace | None
    sections: list[tuple[str, list[Figure]]]
    environments: LineChart
    keys: BarChart
    top_alerts: list[Alert]
    ongoing_incidents: list[Incident]
    since: date
    until: date


def _url(name: str, params: dict[str, Any]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{reverse(name)}?{query}" if query else reverse(name)


def _in(queryset: QuerySet, ids: set[int] | None, lookup: str = "workspace_id") -> QuerySet:
    return queryset if ids is None else queryset.filter(**{f"{lookup}__in": ids})


def visible_workspaces(actor: Actor) -> QuerySet[Workspace]:
    # With their platform accounts: the accounts' figures come from this one query.
    return Workspace.objects.restrict(actor, "workspace.view").select_related("platform_account").order_by("name")


def account_figures(workspaces: list[Workspace], selected: Workspace | None) -> list[Figure]:
    """The platform accounts of the workspaces in view: failing, never verified, key due for rotation. Counted
    from the workspaces already loaded (no query)."""
    chosen = [selected] if selected is not None else workspaces
    accounts = {w.platform_account_id: w.platform_account for w in chosen}.values()
    due_before = timezone.now() - timedelta(days=settings.PLATFORM_KEY_ROTATION_DAYS)
    states = [a.state for a in accounts]
    due = sum(1 for a in accounts if a.key_set_at is not None and a.key_set_at < due_before)
    listing = "admin:workspaces_platformaccount_changelist"
    return [
        Figure("accounts_failing", "Platform accounts failing", states.count("failing"),
               _url(listing, {"state__exact": "failing"})),
        Figure("accounts_rotation_due", "Platform account keys due for rotation", due,
               _url(listing, {"rotation": "due"}), note=f"older than {settings.PLATFORM_KEY_ROTATION_DAYS} days"),
        Figure("accounts_unverified", "Platform accounts never verified", states.count("unverified"),
               _url(listing, {"state__exact": "unverified"})),
    ]


def posture(actor: Actor, selected: Workspace | None, workspaces: list[Workspace], *,
            today: date | None = None) -> Posture:
    """Everything the dashboard shows, for one workspace or every workspace the actor may view."""
    allowed = access.workspaces_with(actor, "workspace.view")
    ids: set[int] | None = {selected.pk} if selected is not None else allowed
    ws = {"workspace__id__exact": selected.pk if selected else None}  # the admin lists' own workspace filter
    plain_ws = {"workspace": selected.pk if selected else None}  # the sync and detection lists' WorkspaceFilter

    keys = _in(ApiKey.objects.all(), ids)
    key_figures = [
        Figure("overdue", "Keys overdue for rotation", flagged(keys, "overdue").count(),
               _url("admin:keys_apikey_changelist", {"flag": "overdue", **ws})),
        Figure("idle", "Keys unused for 30+ days", flagged(keys, "idle").count(),
               _url("admin:keys_apikey_changelist", {"flag": "idle", **ws}), note="by each workspace's idle days"),
        Figure("all_scopes_prod", "Production keys with every scope", flagged(keys, "all_scopes_prod").count(),
               _url("admin:keys_apikey_changelist", {"flag": "all_scopes_prod", **ws})),
        Figure("open_network", "Keys without a network limit", flagged(keys, "open_network").count(),
               _url("admin:keys_apikey_changelist", {"flag": "open_network", **ws})),
    ]
    counts = keys.aggregate(usable=Count("pk", filter=Q(state__in=ApiKey.USABLE_STATES)),
                            suspended=Count("pk", filter=Q(state__in=ApiKey.USABLE_STATES,
                                                           suspended_at__isnull=False)))
    key_figures += [
        Figure("suspended", "Suspended keys (credit guard or by hand)", counts["suspended"],
               _url("admin:keys_apikey_changelist", {"flag": "suspended", **ws})),
        Figure("usable", "Usable keys", counts["usable"],
               _url("admin:keys_apikey_changelist", {"state__in": "active,superseded", **ws}), False),
    ]

    agents = _in(Agent.objects.all(), ids).aggregate(
        signed=Count("pk", filter=Q(auth_mode=Agent.AuthMode.SIGNED)),
        allowlist=Count("pk", filter=Q(auth_mode=Agent.AuthMode.ALLOWLIST)),
        public=Count("pk", filter=Q(auth_mode=Agent.AuthMode.PUBLIC)),
        unlimited=Count("pk", filter=Q(auth_mode=Agent.AuthMode.PUBLIC, max_duration_seconds__isnull=True)))
    agent_figures = [
        Figure("public", "Public agents", agents["public"],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "public", **ws})),
        Figure("allowlist", "Allowlisted agents", agents["allowlist"],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "allowlist", **ws}), False),
        Figure("signed", "Signed-URL agents", agents["signed"],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "signed", **ws}), False),
        Figure("public_unlimited", "Public agents without a duration limit", agents["unlimited"],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "public",
                                                      "max_duration_seconds__isnull": "True", **ws}),
               note="the database refuses new ones; any here predate that rule"),
    ]

    other: list[Figure] = []
    if apps.is_installed("secrets_app"):
        from secrets_app.models import Secret

        unused = _in(Secret.objects.filter(tool_references__isnull=True), ids).count()
        other.append(Figure("unused_secrets", "Secrets no tool uses", unused,
                            _url("admin:secrets_app_secret_changelist", {"tool_references__isnull": "True", **ws})))
    from project.sync.models import Drift, SyncJob

    other += [
        Figure("sync_attention", "Dead or failed sync jobs",
               _in(SyncJob.objects.filter(state__in=[SyncJob.State.FAILED, SyncJob.State.DEAD]), ids).count(),
               _url("admin:sync_syncjob_changelist", {"state": "attention", **plain_ws})),
        Figure("drift", "Drift from the platform", _in(Drift.objects.all(), ids).count(),
               _url("admin:sync_drift_changelist", plain_ws)),
    ]

    alerts = _in(Alert.objects.exclude(state=Alert.State.RESOLVED), ids)
    # The guardrail findings by rule come with the alert counts: one aggregate, no query of their own.
    alert_counts = alerts.aggregate(total=Count("pk"), severe=Count("pk", filter=Q(severity__in=SEVERE)),
                                    **{kind: Count("pk", filter=Q(kind=kind)) for kind in GUARDRAIL_KINDS})
    incidents = _in(Incident.objects.exclude(state=Incident.State.CLOSED), ids)
    response = [
        Figure("alerts", "Open alerts", alert_counts["total"],
               _url("admin:alerts_alert_changelist", {"state": "unresolved", **plain_ws})),
        Figure("alerts_severe", "…of which high or critical", alert_counts["severe"],
               _url("admin:alerts_alert_changelist", {"state": "unresolved", "severity__in": "high,critical",
                                                         **plain_ws})),
        Figure("incidents", "Open incidents", incidents.count(),
               _url("admin:detection_incident_changelist", {"state": "ongoing", **plain_ws})),
    ]

    guardrails = [
        Figure(kind, Guardrail(kind.removeprefix(GUARDRAIL_PREFIX)).label, alert_counts[kind],
               _url("admin:alerts_alert_changelist", {"kind": kind, "state": "unresolved", **plain_ws}))
        for kind in GUARDRAIL_KINDS]

    today = today or timezone.now().date()
    since = today - timedelta(days=DAYS - 1)
    days = [since + timedelta(days=n) for n in range(DAYS)]
    return Posture(
        workspaces=workspaces, selected=selected,
        sections=[("Detection and response", response), ("Guardrails on the live state (open findings by rule)",
                                                          guardrails),
                  ("API keys", key_figures), ("Agents", agent_figures),
                  ("Secrets and sync", other), ("Platform accounts", account_figures(workspaces, selected))],
        environments=environment_burn(ids, days, multi=selected is None and len(workspaces) > 1),
        keys=key_burn(ids, days),
        top_alerts=list(alerts.select_related("workspace").order_by("-created_at")[:6]),
        ongoing_incidents=list(incidents.select_related("workspace").order_by("-created_at")[:6]),
        since=since, until=today)


def environment_burn(ids: set[int] | None, days: list[date], *, multi: bool) -> LineChart:
    """Credits per environment and day: one query of the pre-aggregated environment days (kept equal to the sum
    of the keys' day rows by the usage ingest, keys.services.burn), whatever the number of keys."""
    rows = (_in(EnvironmentUsageDaily.objects.filter(day__gte=days[0], day__lte=days[-1]), ids)
            .order_by().values_list("environment__name", "environment__workspace__name", "day", "credits"))
    series: dict[str, dict[date, float]] = defaultdict(dict)
    for name, workspace_name, day, credits in rows:
        label = f"{workspace_name} / {name}" if multi else name
        series[label][day] = series[label].get(day, 0.0) + float(credits or 0)
    ordered = sorted(series.items(), key=lambda item: -sum(item[1].values()))
    return line_chart(days, [(label, [by_day.get(d, 0.0) for d in days]) for label, by_day in ordered])


def key_burn(ids: set[int] | None, days: list[date]) -> BarChart:
    """The keys that spent the most credits over the days, with their daily series: two queries, the first an
    index read of the pre-aggregated windows ending on the last day (keys.models.KeyUsageWindow)."""
    top = list(_in(KeyUsageWindow.objects.filter(day=days[-1], credits__gt=0), ids)
               .order_by("-credits", "key_id")
               .values("key_id", "key__name", "key__hint", "key__environment__name", "credits")[:TOP_KEYS])
    daily: dict[int, dict[date, float]] = defaultdict(dict)
    for key_id, day, credits in KeyUsageDaily.objects.filter(
            key_id__in=[t["key_id"] for t in top], day__gte=days[0], day__lte=days[-1]).values_list(
            "key_id", "day", "credits"):
        daily[key_id][day] = float(credits or 0)
    rows = [(f"{t['key__name']} …{t['key__hint']} ({t['key__environment__name']})",
             reverse("admin:keys_apikey_change", args=[t["key_id"]]),
             [daily[t["key_id"]].get(d, 0.0) for d in days]) for t in top]
    return bar_chart(rows)
