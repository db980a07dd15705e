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
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, IntegerField, Q, QuerySet, Value
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from detection.charts import BarChart, LineChart, bar_chart, line_chart
from detection.guardrails import ALERT_KINDS as GUARDRAIL_KINDS
from detection.guardrails import KIND_PREFIX as GUARDRAIL_PREFIX
from detection.models import Guardrail, Incident
from keys.models import BURN_WINDOW_DAYS, ApiKey, EnvironmentUsageDaily, KeyUsageDaily, KeyUsageWindow
from keys.selectors import flag_condition
from project import access
from project.actors import Actor
from project.alerts.models import Alert
from workspaces.models import Workspace

DAYS = BURN_WINDOW_DAYS  # the key totals are pre-aggregated over this window (keys.models.KeyUsageWindow)
TOP_KEYS = 8
KEY_FLAGS = ("overdue", "idle", "all_scopes_prod", "open_network", "suspended")
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


def count_each(querysets: dict[str, QuerySet], *, one_row: QuerySet | None = None) -> dict[str, int]:
    """Each queryset's row count (what ``.count()`` answers), all in one statement of scalar subqueries, with the
    columns of `one_row` (a values() queryset of aggregates, one row) alongside: the dashboard's figures cost one
    round trip however many there are."""
    parts, params = [], []
    for n, queryset in enumerate(querysets.values()):
        try:
            sql, sub_params = queryset.order_by().values("pk").query.sql_with_params()
        except EmptyResultSet:  # a filter that can match nothing (e.g. `__in` an empty list)
            parts.append("0")
            continue
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS counted_{n})")  # noqa: S608 - ORM-compiled, values as params
        params.extend(sub_params)
    source = ""
    if one_row is not None:
        sql, row_params = one_row.query.sql_with_params()
        parts.insert(0, "one_row.*")
        source = f" FROM ({sql}) AS one_row"
        params.extend(row_params)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}{source}", params)
        row = cursor.fetchone()
        names = [column[0] for column in cursor.description]
    names[len(names) - len(querysets):] = list(querysets)
    return {name: int(value or 0) for name, value in zip(names, row, strict=True)}


def posture(actor: Actor, selected: Workspace | None, workspaces: list[Workspace], *,
            today: date | None = None) -> Posture:
    """Everything the dashboard shows, for one workspace or every workspace the actor may view."""
    allowed = access.workspaces_with(actor, "workspace.view")
    ids: set[int] | None = {selected.pk} if selected is not None else allowed
    ws = {"workspace__id__exact": selected.pk if selected else None}  # the admin lists' own workspace filter
    plain_ws = {"workspace": selected.pk if selected else None}  # the sync and detection lists' WorkspaceFilter

    keys = _in(ApiKey.objects.all(), ids)
    agents = _in(Agent.objects.all(), ids)
    from project.sync.models import Drift, SyncJob

    # The key figures in one pass over the keys (each flag a filtered count), the other counts beside them.
    key_counts = (keys.order_by().annotate(one=Value(1, output_field=IntegerField())).values("one").annotate(
        **{flag: Count("pk", filter=flag_condition(flag)) for flag in KEY_FLAGS},
        usable=Count("pk", filter=Q(state__in=ApiKey.USABLE_STATES))).values(*KEY_FLAGS, "usable"))
    counting: dict[str, QuerySet] = {
        **{mode: agents.filter(auth_mode=mode) for mode in Agent.AuthMode.values},
        "unlimited": agents.filter(auth_mode=Agent.AuthMode.PUBLIC, max_duration_seconds__isnull=True),
        "sync_attention": _in(SyncJob.objects.filter(state__in=[SyncJob.State.FAILED, SyncJob.State.DEAD]), ids),
        "drift": _in(Drift.objects.all(), ids),
        "incidents": _in(Incident.objects.exclude(state=Incident.State.CLOSED), ids),
    }
    if apps.is_installed("secrets_app"):
        from secrets_app.models import Secret

        counting["unused_secrets"] = _in(Secret.objects.filter(tool_references__isnull=True), ids)
    counts = count_each(counting, one_row=key_counts)
    key_figures = [
        Figure("overdue", "Keys overdue for rotation", counts["overdue"],
               _url("admin:keys_apikey_changelist", {"flag": "overdue", **ws})),
        Figure("idle", "Keys unused for 30+ days", counts["idle"],
               _url("admin:keys_apikey_changelist", {"flag": "idle", **ws}), note="by each workspace's idle days"),
        Figure("all_scopes_prod", "Production keys with every scope", counts["all_scopes_prod"],
               _url("admin:keys_apikey_changelist", {"flag": "all_scopes_prod", **ws})),
        Figure("open_network", "Keys without a network limit", counts["open_network"],
               _url("admin:keys_apikey_changelist", {"flag": "open_network", **ws})),
        Figure("suspended", "Suspended keys (credit guard or by hand)", counts["suspended"],
               _url("admin:keys_apikey_changelist", {"flag": "suspended", **ws})),
        Figure("usable", "Usable keys", counts["usable"],
               _url("admin:keys_apikey_changelist", {"state__in": "active,superseded", **ws}), False),
    ]

    agent_figures = [
        Figure("public", "Public agents", counts[Agent.AuthMode.PUBLIC],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "public", **ws})),
        Figure("allowlist", "Allowlisted agents", counts[Agent.AuthMode.ALLOWLIST],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "allowlist", **ws}), False),
        Figure("signed", "Signed-URL agents", counts[Agent.AuthMode.SIGNED],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "signed", **ws}), False),
        Figure("public_unlimited", "Public agents without a duration limit", counts["unlimited"],
               _url("admin:agents_agent_changelist", {"auth_mode__exact": "public",
                                                      "max_duration_seconds__isnull": "True", **ws}),
               note="the database refuses new ones; any here predate that rule"),
    ]

    other: list[Figure] = []
    if "unused_secrets" in counts:
        other.append(Figure("unused_secrets", "Secrets no tool uses", counts["unused_secrets"],
                            _url("admin:secrets_app_secret_changelist", {"used": "no", **ws})))
    other += [
        Figure("sync_attention", "Dead or failed sync jobs", counts["sync_attention"],
               _url("admin:sync_syncjob_changelist", {"state": "attention", **plain_ws})),
        Figure("drift", "Drift from the platform", counts["drift"], _url("admin:sync_drift_changelist", plain_ws)),
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
        Figure("incidents", "Open incidents", counts["incidents"],
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
