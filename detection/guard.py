"""The credit guard: each key's spend against its quota, and each environment's against its budget, per period.

The platform's per-key credit limit has been reported not to stop conversational usage, so Keyward watches the
spend itself (from the usage it stores per key and day): alerts at the policy's two thresholds (75% and 90% by
default) and at 100%, once each per period, and at 100% disables the key on the platform (suspends it: reversible,
audited, synced through the outbox) where the workspace's policy says so (production keys by default). An
environment over its budget suspends every usable key of that environment on the same terms.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum
from django.utils import timezone

from detection.models import DetectionPolicy
from detection.rules import BATCH, Finding, _fmt, _num
from detection.services import detection_policies_ensure
from keys.models import ApiKey, KeyUsageDaily
from keys.services import api_key_suspend
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_build, alerts_raise_many
from workspaces.models import Environment

SEVERITY = {0: Alert.Severity.LOW, 1: Alert.Severity.MEDIUM, 2: Alert.Severity.HIGH}


def period_start(policy: DetectionPolicy, today: date) -> date:
    """The first day of the credit period `today` is in (periods start on the policy's day of the month, UTC)."""
    day = policy.billing_period_day
    if today.day >= day:
        return today.replace(day=day)
    previous = today.replace(day=1) - timedelta(days=1)
    return previous.replace(day=day)


def period_starts_of(workspace_ids: set[int], today: date) -> dict[int, date]:
    """Each workspace's current credit period start, from its policy (the defaults' where it has none); reads, never
    creates, a policy (for the budgets page)."""
    policies = {p.workspace_id: p for p in DetectionPolicy.objects.filter(workspace_id__in=workspace_ids)}
    return {pk: period_start(policies.get(pk) or DetectionPolicy(workspace_id=pk), today) for pk in workspace_ids}


def period_end(start: date) -> date:
    """The last day of the period starting on `start`."""
    month, year = (start.month % 12) + 1, start.year + (start.month == 12)
    return start.replace(year=year, month=month) - timedelta(days=1)


def crossed(used: Decimal, limit: int, policy: DetectionPolicy) -> list[tuple[int, int]]:
    """[(level, percent)] of the thresholds `used` has reached (level 0, 1, 2 for notice, warning, 100%)."""
    if not limit:
        return []
    percent = used * 100 / Decimal(limit)
    return [(level, p) for level, p in enumerate(policy.guard_percents) if percent >= p]


def _finding(*, scope: str, ident: str, what: str, used: Decimal, limit: int, level: int, percent: int,
             start: date, policy: DetectionPolicy, extra: dict[str, Any], suspends: bool) -> Finding:
    reached = round(float(used * 100 / Decimal(limit)), 1)
    tail = ("; its keys are being disabled on the platform" if scope == "env" else "; the key is being disabled "
            "on the platform") if percent == 100 and suspends else ""
    return Finding(
        kind=f"credit_guard_{'budget' if scope == 'env' else 'quota'}", severity=SEVERITY[level],
        title=f"Credit guard: {what} reached {percent}% ({_fmt(used)} of {limit:,} credits){tail}",
        dedup_key=f"credit_guard.{scope}:{ident}:{start:%Y%m%d}:{percent}",
        details={**extra, "period_start": start.isoformat(), "period_end": period_end(start).isoformat(),
                 "credits_used": _num(used), "limit": limit, "percent_used": reached, "threshold_percent": percent,
                 "thresholds": list(policy.guard_percents), "disables_at_100": suspends})


def _spend(filters: dict[str, Any], group: str, starts: dict[date, list[int]]) -> dict[int, Decimal]:
    """Credits per `group` since each period start, for the workspaces whose period starts then (one grouped
    query per distinct period start: usually one)."""
    spent: dict[int, Decimal] = {}
    for start, workspace_ids in starts.items():
        rows = (KeyUsageDaily.objects.filter(day__gte=start, key__workspace_id__in=workspace_ids, **filters)
                .order_by().values(group).annotate(total=Sum("credits")).values_list(group, "total"))
        spent.update((k, Decimal(t or 0)) for k, t in rows)
    return spent


def _keys_over(starts: dict[date, list[int]], percent: int) -> dict[int, Decimal]:
    """{key: credits this period} of the usable keys with a quota that spent at least ``percent``% of it: the
    database finds them (grouped spend against the quota), so the pass reads only keys near their quota."""
    spent: dict[int, Decimal] = {}
    for start, workspace_ids in starts.items():
        rows = (KeyUsageDaily.objects.filter(day__gte=start, key__workspace_id__in=workspace_ids,
                                             key__state__in=ApiKey.USABLE_STATES, key__credit_quota__isnull=False)
                .order_by().values("key_id", "key__credit_quota").annotate(total=Sum("credits"))
                .filter(total__gte=ExpressionWrapper(F("key__credit_quota") * Decimal(percent) / Decimal(100),
                                                     output_field=DecimalField()))
                .values_list("key_id", "total"))
        spent.update((k, Decimal(t or 0)) for k, t in rows)
    return spent


def _highest_only(raised: list[Alert]) -> list[Alert]:
    """Thresholds crossed together (75, 90 and 100% in one pass) raise an alert each, but only the highest is
    delivered to the notification channels: one message, not three."""
    highest: dict[tuple[str, str, str], Alert] = {}
    for alert in raised:
        ident = (alert.kind, alert.object_type, alert.object_id)
        if ident not in highest or (alert.details["threshold_percent"]
                                    > highest[ident].details["threshold_percent"]):
            highest[ident] = alert
    return list(highest.values())


def credit_guard_run(*, now: datetime | None = None) -> dict[str, int]:
    """One pass over every usable key with a quota and every environment with a budget. Raises the thresholds'
    alerts once per period (system actor); on a newly reached 100% suspends the key (or the environment's keys)
    where the policy disables at the limit. Returns counts. Set-based: the database finds the keys past their
    lowest threshold, and the alerts are raised in bulk, so the queries do not grow with keys or alerts."""
    now = now or timezone.now()
    today = now.date()
    watched = ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES, credit_quota__isnull=False)
    environments = list(Environment.objects.filter(credit_budget__isnull=False).select_related("workspace"))
    per_workspace = dict(watched.order_by().values("workspace_id").annotate(n=Count("id"))
                         .values_list("workspace_id", "n"))
    policies = detection_policies_ensure(workspace_ids=set(per_workspace) | {e.workspace_id for e in environments})
    starts: dict[date, list[int]] = defaultdict(list)
    for workspace_id, policy in policies.items():
        starts[period_start(policy, today)].append(workspace_id)
    # The lowest threshold of any policy: a key below it crosses nothing, whatever its workspace's policy.
    key_spend = _keys_over(starts, min((p.guard_percents[0] for p in policies.values()), default=100))
    keys: list[ApiKey] = []
    over = sorted(key_spend)
    for i in range(0, len(over), BATCH):
        keys += watched.filter(pk__in=over[i:i + BATCH]).select_related("workspace", "environment",
                                                                        "service_account")
    keys.sort(key=lambda k: (k.created_at, k.pk), reverse=True)  # ApiKey's ordering, as the per-key pass read them
    env_spend = _spend({"key__environment__credit_budget__isnull": False}, "key__environment_id", starts)

    findings: list[tuple[Any, Finding]] = []
    for key in keys:
        policy = policies[key.workspace_id]
        used = key_spend.get(key.pk, Decimal(0))
        suspends = policy.suspends(is_production=key.environment.is_production)
        for level, percent in crossed(used, key.credit_quota, policy):
            findings.append((key, _finding(
                scope="key", ident=str(key.uuid), what=f"key “{key}” of {key.service_account} "
                f"({key.environment.name})", used=used, limit=key.credit_quota, level=level, percent=percent,
                start=period_start(policy, today), policy=policy, suspends=suspends,
                extra={"service_account": key.service_account.name, "environment": key.environment.name})))
    for env in environments:
        policy = policies[env.workspace_id]
        used = env_spend.get(env.pk, Decimal(0))
        suspends = policy.suspends(is_production=env.is_production)
        for level, percent in crossed(used, env.credit_budget, policy):
            findings.append((env, _finding(
                scope="env", ident=str(env.pk), what=f"environment {env}", used=used, limit=env.credit_budget,
                level=level, percent=percent, start=period_start(policy, today), policy=policy, suspends=suspends,
                extra={"environment": env.name})))

    result = {"keys_watched": sum(per_workspace.values()), "environments_watched": len(environments), "alerts": 0,
              "suspended": 0}
    to_suspend: dict[int, tuple[ApiKey, str]] = {}
    alerts = [alert_build(workspace=target.workspace, kind=finding.kind, severity=finding.severity,
                          title=finding.title, dedup_key=finding.dedup_key, details=finding.details, target=target)
              for target, finding in findings]
    of_alert = {id(alert): pair for alert, pair in zip(alerts, findings, strict=True)}
    for alert in alerts_raise_many(actor=SYSTEM, alerts=alerts, deliver=_highest_only):
        target, finding = of_alert[id(alert)]
        result["alerts"] += 1
        if not (finding.details["threshold_percent"] == 100 and finding.details["disables_at_100"]):
            continue
        reason = f"credit guard: {finding.details['percent_used']}% of " + (
            f"its quota of {target.credit_quota:,} credits" if isinstance(target, ApiKey)
            else f"the budget of {target} ({target.credit_budget:,} credits)") + \
            f" used in the period from {finding.details['period_start']}"
        victims = [target] if isinstance(target, ApiKey) else list(
            ApiKey.objects.filter(environment=target, state__in=ApiKey.USABLE_STATES, suspended_at__isnull=True))
        for key in victims:
            to_suspend.setdefault(key.pk, (key, reason))
    for key, reason in to_suspend.values():
        if key.suspended_at is None:
            api_key_suspend(actor=SYSTEM, key=key, reason=reason)
            result["suspended"] += 1
    return result
