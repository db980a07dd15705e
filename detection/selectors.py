"""Permission-filtered reads of the detection app, and the figures an incident step records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse

from detection.models import DetectionPolicy, Incident, IncidentStep
from keys.models import ApiKey, KeyUsageDaily, KeyUsageHourly
from project.actors import Actor
from project.alerts.models import Alert


def alerts_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[Alert]:
    return Alert.objects.restrict(actor, permission)


def incidents_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[Incident]:
    return Incident.objects.restrict(actor, permission)


def detection_policies_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[DetectionPolicy]:
    return DetectionPolicy.objects.restrict(actor, permission)


# --- blast radius ----------------------------------------------------------------------------------------------
def _f(value: Decimal | int | None) -> float:
    return round(float(value or 0), 3)


def key_usage_in_window(key_ids: list[int], start: datetime, end: datetime) -> dict[str, Any]:
    """Usage of the keys during [start, end]: per day (the days the window touches, whole days from the daily
    totals) and, where the hourly rows reach, the exact sum inside the window."""
    days = list(KeyUsageDaily.objects.filter(key_id__in=key_ids, day__gte=start.date(), day__lte=end.date())
                .order_by("day").values("day").annotate(credits=Sum("credits"), requests=Sum("requests")))
    hourly = KeyUsageHourly.objects.filter(key_id__in=key_ids, hour__gte=start - timedelta(hours=1),
                                           hour__lte=end).aggregate(credits=Sum("credits"), requests=Sum("requests"))
    return {
        "by_day": [{"day": d["day"].isoformat(), "credits": _f(d["credits"]), "requests": int(d["requests"] or 0)}
                   for d in days],
        "total_credits": _f(sum((d["credits"] or 0 for d in days), Decimal(0))),
        "total_requests": sum(int(d["requests"] or 0) for d in days),
        "hourly_credits": _f(hourly["credits"]), "hourly_requests": int(hourly["requests"] or 0),
    }


def blast_radius(incident: Incident, start: datetime, end: datetime) -> dict[str, Any]:
    """What the subject could reach and what it spent while exposed: the figures of the blast-radius step."""
    from detection.incidents import key_figures

    window = {"start": start.isoformat(), "end": end.isoformat(),
              "hours": round((end - start).total_seconds() / 3600, 1)}
    if incident.api_key_id:
        key = ApiKey.objects.select_related("service_account", "environment").get(pk=incident.api_key_id)
        figures = key_figures(key)
        usage = key_usage_in_window([key.pk], start, end)
        reach = []
        reach.append("every permission (scopes: all)" if key.has_all_scopes
                     else f"{len(key.scopes or [])} scope(s): {', '.join(key.scopes or [])}")
        reach.append(f"{'production' if key.environment.is_production else 'non-production'} environment "
                     f"{key.environment.name}")
        reach.append(f"credit quota {key.credit_quota:,} per period" if key.credit_quota is not None
                     else "no credit quota")
        reach.append(f"usable only from {', '.join(key.allowed_ips)}" if key.allowed_ips
                     else "usable from any address (no network limit)")
        return {"subject": "api_key", "window": window, "key": figures, "reach": reach, "usage": usage}
    if incident.secret_id:
        from secrets_app.models import ToolSecretReference
        from secrets_app.selectors import agents_using_tools

        refs = list(ToolSecretReference.objects.filter(secret_id=incident.secret_id).select_related("tool")
                    .order_by("tool__name", "header"))
        # The agents that call those tools, as the platform lists each agent's tool ids (last discovery/refresh).
        agents = agents_using_tools([r.tool for r in refs])
        reach = [f"sent by tool {r.tool.name} in header {r.header}" for r in refs] or ["no tool uses it"]
        reach += [f"reached by agent {a.name}" + ("" if a.pk else " (not managed by Keyward)") for a in agents]
        return {"subject": "secret", "window": window, "secret": incident.subject_repr,
                "used_by_tools": [{"tool": r.tool.name, "header": r.header, "url": r.tool.url} for r in refs],
                "agents": [a.name for a in agents], "reach": reach}
    if incident.platform_account_id:
        return {"subject": "platform_account", "window": window, **account_reach(incident.platform_account_id)}
    return {"subject": "none", "window": window, "reach": []}


def account_reach(account_id: int) -> dict[str, Any]:
    """Everything Keyward's key for an account reaches: every object on the account, whoever made it. Counted
    from the account's latest discovery (objects Keyward does not manage included) and from Keyward's own rows in
    the workspaces bound to it."""
    from agents.models import Agent
    from project.sync import registry
    from project.sync.models import DiscoveryRun, Observation
    from workspaces.models import PlatformAccount

    account = PlatformAccount.objects.get(pk=account_id)
    workspaces = list(account.workspaces.order_by("name").values_list("pk", "name"))
    ids = [pk for pk, _ in workspaces]
    local = {"agents": Agent.objects.filter(workspace_id__in=ids).count(),
             "API keys": ApiKey.objects.filter(workspace_id__in=ids, state__in=ApiKey.USABLE_STATES).count()}
    if apps.is_installed("secrets_app"):
        from secrets_app.models import AuthConnection, Secret, Tool

        local.update({"secrets": Secret.objects.filter(workspace_id__in=ids).count(),
                      "tools": Tool.objects.filter(workspace_id__in=ids).count(),
                      "auth connections": AuthConnection.objects.filter(workspace_id__in=ids).count()})
    run = (DiscoveryRun.objects.filter(account_id=account_id, state=DiscoveryRun.State.DONE)
           .order_by("-finished_at", "-id").first())
    observed = dict(Observation.objects.filter(account_id=account_id).order_by().values("kind")
                    .annotate(n=Count("id")).values_list("kind", "n"))
    titles = {d.kind: d.title.lower() for d in registry.discoverables()}
    perms = account.key_permissions
    granted = "every permission" if perms in (None, "all") else ", ".join(perms)
    reach = [f"every object of platform account {account} (the key holds {granted})",
             "workspaces bound to it: " + (", ".join(name for _, name in workspaces) or "none"),
             "Keyward's objects there: " + ", ".join(f"{n} {what}" for what, n in local.items())]
    if run is not None:
        reach.append(f"on the platform at the last discovery ({run.finished_at:%Y-%m-%d %H:%M} UTC): "
                     + ", ".join(f"{n} {titles.get(kind, kind)}" for kind, n in sorted(observed.items())))
    else:
        reach.append("the account has never been discovered: objects made outside Keyward are not counted "
                     "(run Discover on the account)")
    reach.append("with write access an attacker could point a tool at their own server and receive the secrets "
                 "it sends, open an agent to any host, or issue keys: rotate the secrets tools send, and review "
                 "the account's keys")
    return {"account": {"id": account.pk, "name": account.name}, "workspaces": [name for _, name in workspaces],
            "keyward_objects": local, "on_platform": observed,
            "discovered_at": run.finished_at.isoformat() if run is not None and run.finished_at else None,
            "reach": reach}


# --- related credentials ---------------------------------------------------------------------------------
def related_candidates(incident: Incident) -> list[dict[str, Any]]:
    """Credentials likely kept next to the exposed one, to consider rotating: a key rarely leaks alone.

    For a key: the other usable keys of its service account (any environment) and of its environment, the broker
    keys of the same account or environment (broker app), and the workspace's secrets (secrets have no
    environment; those tools use come first). For a secret: the secrets the same tools send, then the others.
    Works with whatever of secrets_app and broker is installed.
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(kind: str, obj: Any, reason: str, url_name: str) -> None:
        ref = f"{kind}:{obj.pk}"
        if ref not in seen:
            seen.add(ref)
            out.append({"ref": ref, "kind": kind, "id": obj.pk, "name": str(obj), "reason": reason,
                        "url": reverse(f"admin:{url_name}", args=[obj.pk])})

    if incident.platform_account_id:
        return _account_candidates(incident, add, out)
    ws = incident.workspace_id
    key = (ApiKey.objects.select_related("service_account", "environment").get(pk=incident.api_key_id)
           if incident.api_key_id else None)
    if key is not None:
        others = (ApiKey.objects.filter(workspace_id=ws, state__in=ApiKey.USABLE_STATES)
                  .filter(Q(service_account_id=key.service_account_id) | Q(environment_id=key.environment_id))
                  .exclude(pk=key.pk).exclude(pk=incident.replacement_key_id or 0)
                  .select_related("service_account", "environment").order_by("service_account__name", "name"))
        for other in others:
            same_account = other.service_account_id == key.service_account_id
            add("api_key", other, f"same service account ({key.service_account})" if same_account
                else f"same environment ({key.environment.name})", "keys_apikey_change")
        if apps.is_installed("broker"):
            from broker.models import BrokerKey

            for broker_key in (BrokerKey.objects.filter(workspace_id=ws, revoked_at__isnull=True)
                               .filter(Q(service_account_id=key.service_account_id)
                                       | Q(environment_id=key.environment_id)).order_by("name")):
                add("broker_key", broker_key, "broker key of the same service account or environment",
                    "broker_brokerkey_change")
    if apps.is_installed("secrets_app"):
        from secrets_app.models import Secret, ToolSecretReference

        if incident.secret_id:
            tools = ToolSecretReference.objects.filter(secret_id=incident.secret_id).values("tool_id")
            for secret in (Secret.objects.defer("value").filter(workspace_id=ws, tool_references__tool_id__in=tools)
                           .exclude(pk=incident.secret_id).distinct().order_by("name")):
                add("secret", secret, "sent by the same tool(s)", "secrets_app_secret_change")
        used = dict(ToolSecretReference.objects.filter(secret__workspace_id=ws).order_by()
                    .values_list("secret_id", "tool__name"))
        for secret in (Secret.objects.defer("value").filter(workspace_id=ws).exclude(pk=incident.secret_id or 0)
                       .order_by("name")):
            reason = f"workspace secret used by tool {used[secret.pk]}" if secret.pk in used \
                else "workspace secret (no tool uses it)"
            add("secret", secret, reason, "secrets_app_secret_change")
    return out


def _account_candidates(incident: Incident, add: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For Keyward's exposed platform key: the secrets tools send on that account (a repointed tool would hand
    them over), then the account's live API keys (any could have been issued or widened with it)."""
    ids = list(incident.platform_account.workspaces.values_list("pk", flat=True))
    if apps.is_installed("secrets_app"):
        from secrets_app.models import Secret, ToolSecretReference

        used = dict(ToolSecretReference.objects.filter(secret__workspace_id__in=ids).order_by()
                    .values_list("secret_id", "tool__name"))
        for secret in Secret.objects.defer("value").filter(pk__in=used).order_by("workspace__name", "name"):
            add("secret", secret, f"sent by tool {used[secret.pk]} on the exposed account",
                "secrets_app_secret_change")
    for key in (ApiKey.objects.filter(workspace_id__in=ids, state__in=ApiKey.USABLE_STATES)
                .select_related("service_account", "environment").order_by("service_account__name", "name")):
        add("api_key", key, f"live key on the exposed account ({key.environment.name})", "keys_apikey_change")
    return out


# --- the timeline ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    at: datetime
    who: str
    what: str
    notes: str = ""
    step: IncidentStep | None = None
    order: int = 0  # among events of the same instant: issue, window start, alert, steps, window end


def timeline(incident: Incident) -> list[Event]:
    """The incident as a story, oldest first: the key's issue, the alert, the exposure window, every step."""
    events: list[Event] = []
    if incident.api_key_id:
        key = incident.api_key
        if key.activated_at:
            events.append(Event(key.activated_at, "Keyward", f"Key “{key}” issued"))
    if incident.exposure_start:
        events.append(Event(incident.exposure_start, "—", "Exposure window starts", order=1))
    if incident.alert_id and incident.alert is not None:
        events.append(Event(incident.alert.created_at, "detection", f"Alert raised: {incident.alert.title}",
                            order=2))
    for step in incident.steps.all():
        events.append(Event(step.created_at, step.actor_label, step.get_kind_display(), step.notes, step, order=3))
    if incident.exposure_end:
        events.append(Event(incident.exposure_end, "—", "Exposure window ends", order=4))
    return sorted(events, key=lambda e: (e.at, e.order, e.step.pk if e.step else 0))


def latest_steps(incident: Incident) -> dict[str, IncidentStep]:
    """The newest step of each kind (what the walk shows as done)."""
    latest: dict[str, IncidentStep] = {}
    for step in incident.steps.all():
        latest[step.kind] = step
    return latest
