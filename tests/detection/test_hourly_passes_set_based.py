"""The hourly passes are set-based (the database finds the keys past a threshold, alerts are raised in bulk): they
find and write what the per-row logic they replaced did (kept here as the reference), on the same data, in a
number of queries that does not grow with keys or alerts."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from detection import guard, rules
from detection.services import detection_policies_ensure
from keys.models import ApiKey
from keys.services import api_key_suspend
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit.models import AuditEvent
from tests.factories import (
    NOW,
    make_api_key_row,
    make_daily_usage,
    make_detection_policy,
    make_hourly_usage,
    make_usage_baseline,
)
from workspaces.models import Environment

pytestmark = pytest.mark.django_db
TODAY = NOW.date()


class _Rollback(Exception):
    pass


# --- the per-row references (the passes as they were) ---------------------------------------------------------
def _raise_each(found: list[tuple[Any, rules.Finding]]) -> int:
    raised = 0
    for target, finding in found:
        if Alert.objects.filter(workspace_id=target.workspace_id, dedup_key=finding.dedup_key).exists():
            continue
        _, created = alert_raise(actor=SYSTEM, workspace=target.workspace, kind=finding.kind,
                                 severity=finding.severity, title=finding.title, dedup_key=finding.dedup_key,
                                 details=finding.details, target=target)
        raised += created
    return raised


def _credit_guard_per_key(*, now=None) -> dict[str, int]:
    """Every usable key with a quota read and judged in Python; an alert_raise per finding."""
    today = (now or timezone.now()).date()
    keys = list(ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES, credit_quota__isnull=False)
                .select_related("workspace", "environment", "service_account"))
    environments = list(Environment.objects.filter(credit_budget__isnull=False).select_related("workspace"))
    policies = detection_policies_ensure(workspace_ids={k.workspace_id for k in keys}
                                         | {e.workspace_id for e in environments})
    starts: dict[date, list[int]] = defaultdict(list)
    for workspace_id, policy in policies.items():
        starts[guard.period_start(policy, today)].append(workspace_id)
    key_spend = guard._spend({"key__in": [k.pk for k in keys]}, "key_id", starts)
    env_spend = guard._spend({"key__environment__credit_budget__isnull": False}, "key__environment_id", starts)
    findings = []
    for key in keys:
        policy = policies[key.workspace_id]
        used = key_spend.get(key.pk, Decimal(0))
        suspends = policy.suspends(is_production=key.environment.is_production)
        for level, percent in guard.crossed(used, key.credit_quota, policy):
            findings.append((key, guard._finding(
                scope="key", ident=str(key.uuid), what=f"key “{key}” of {key.service_account} "
                f"({key.environment.name})", used=used, limit=key.credit_quota, level=level, percent=percent,
                start=guard.period_start(policy, today), policy=policy, suspends=suspends,
                extra={"service_account": key.service_account.name, "environment": key.environment.name})))
    for env in environments:
        policy = policies[env.workspace_id]
        used = env_spend.get(env.pk, Decimal(0))
        suspends = policy.suspends(is_production=env.is_production)
        for level, percent in guard.crossed(used, env.credit_budget, policy):
            findings.append((env, guard._finding(
                scope="env", ident=str(env.pk), what=f"environment {env}", used=used, limit=env.credit_budget,
                level=level, percent=percent, start=guard.period_start(policy, today), policy=policy,
                suspends=suspends, extra={"environment": env.name})))
    result = {"keys_watched": len(keys), "environments_watched": len(environments), "alerts": 0, "suspended": 0}
    to_suspend: dict[int, tuple[ApiKey, str]] = {}
    for target, finding in findings:
        if Alert.objects.filter(workspace_id=target.workspace_id, dedup_key=finding.dedup_key).exists():
            continue
        _, created = alert_raise(actor=SYSTEM, workspace=target.workspace, kind=finding.kind,
                                 severity=finding.severity, title=finding.title, dedup_key=finding.dedup_key,
                                 details=finding.details, target=target)
        result["alerts"] += created
        if not (created and finding.details["threshold_percent"] == 100 and finding.details["disables_at_100"]):
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


def _outcome(run) -> dict[str, Any]:
    """What a pass returns and writes (alerts, audit events, suspended keys), then undone."""
    last_alert = Alert.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    last_event = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    seen: dict[str, Any] = {}
    try:
        with transaction.atomic():
            seen["result"] = run()
            seen["alerts"] = sorted(Alert.objects.filter(pk__gt=last_alert).values_list(
                "workspace_id", "kind", "severity", "state", "title", "details", "object_type", "object_id",
                "object_repr", "dedup_key").order_by(), key=repr)
            seen["audit"] = sorted(AuditEvent.objects.filter(pk__gt=last_event).values_list(
                "action", "actor_label", "object_type", "object_repr", "workspace_id", "changes").order_by(),
                key=repr)
            seen["suspended"] = sorted(ApiKey.objects.filter(suspended_at__isnull=False)
                                       .values_list("pk", "suspend_reason"))
            raise _Rollback
    except _Rollback:
        pass
    return seen


# --- the credit guard ---------------------------------------------------------------------------------------
def test_set_based_credit_guard_finds_what_the_per_key_pass_did(workspace, other_workspace, fixed_now):
    make_detection_policy(other_workspace, guard_notice_percent=50, guard_warning_percent=80, billing_period_day=3)
    spends = [0, 10, 49.99, 50, 74.99, 75, 80, 89.99, 90, 99.99, 100, 130, 400]
    for ws in (workspace, other_workspace):
        for env_name in ("dev", "prod"):
            for spend in spends:
                key = make_api_key_row(ws, env_name, credit_quota=100)
                make_daily_usage(key, TODAY, spend / 2)
                make_daily_usage(key, TODAY - timedelta(days=6), spend / 2)  # in one period, not the other
                make_daily_usage(key, TODAY - timedelta(days=40), 1000)  # an earlier period
        make_api_key_row(ws, "prod", credit_quota=None)  # not watched
        revoked = make_api_key_row(ws, "dev", credit_quota=10)
        make_daily_usage(revoked, TODAY, 50)
        ApiKey.objects.filter(pk=revoked.pk).update(state=ApiKey.State.REVOKED, revoked_at=NOW)
    Environment.objects.filter(workspace=workspace, name="dev").update(credit_budget=500)
    Environment.objects.filter(workspace=other_workspace, name="prod").update(credit_budget=100_000)
    # Some thresholds raised already this period: neither pass raises them again.
    guard_key = ApiKey.objects.filter(workspace=workspace, credit_quota=100).order_by("pk")[8]
    start = guard.period_start(detection_policies_ensure(workspace_ids={workspace.pk})[workspace.pk], TODAY)
    alert_raise(actor=SYSTEM, workspace=workspace, kind="credit_guard_quota", title="earlier",
                dedup_key=f"credit_guard.key:{guard_key.uuid}:{start:%Y%m%d}:75")

    old = _outcome(_credit_guard_per_key)
    new = _outcome(guard.credit_guard_run)
    assert new == old
    assert new["result"]["alerts"] > 20 and new["suspended"]  # the data crosses every threshold somewhere

    old, new = _outcome(_credit_guard_per_key), _outcome(guard.credit_guard_run)
    assert new == old


def test_credit_guard_queries_do_not_grow_with_keys_or_alerts(workspace, fixed_now):
    def queries(n):
        for _ in range(n):
            key = make_api_key_row(workspace, "dev", credit_quota=100)
            make_daily_usage(key, TODAY, 95)  # two alerts each, no suspension (dev)
        with CaptureQueriesContext(connection) as ctx, transaction.atomic():
            result = guard.credit_guard_run()
            transaction.set_rollback(True)
        assert result["alerts"] == 2 * ApiKey.objects.count()
        return len(ctx)

    # (15 keys: 30 alerts stay within one SQLite insert, whose batches are bounded by its 999 parameters; an alert
    # has some 25 columns since it carries its owner and repeats)
    assert queries(2) == queries(15)


# --- the rules pass -----------------------------------------------------------------------------------------
def _rules_per_alert(*, now=None) -> dict[str, int]:
    """rules_evaluate with an alert_raise (five queries) per finding."""
    original = rules.raise_findings
    try:
        rules.raise_findings = _raise_each
        return rules.rules_evaluate(now=now)
    finally:
        rules.raise_findings = original


def _usage_for_rules(workspace, n):
    hour = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    for i in range(n):
        key = make_api_key_row(workspace, "prod")
        make_usage_baseline(key, hour.date(), credits_per_day=24 * (i % 3))
        make_hourly_usage(key, hour, 1500 + i)  # a spike (against a zero or small baseline)
        make_hourly_usage(key, hour.replace(hour=3), 50)  # unusual hours for some policies


def test_bulk_rules_pass_raises_what_the_per_alert_pass_did(workspace, other_workspace, fixed_now):
    make_detection_policy(other_workspace, unusual_hours_enabled=True, unusual_start_hour=0, unusual_end_hour=6,
                          unusual_min_credits=10)
    _usage_for_rules(workspace, 6)
    _usage_for_rules(other_workspace, 6)
    old = _outcome(lambda: _rules_per_alert(now=NOW))
    new = _outcome(lambda: rules.rules_evaluate(now=NOW))
    assert new == old and new["result"]["alerts"] >= 18


def test_rules_pass_queries_do_not_grow_with_alerts(workspace, fixed_now):
    def queries(n):
        _usage_for_rules(workspace, n)
        with CaptureQueriesContext(connection) as ctx, transaction.atomic():
            result = rules.rules_evaluate(now=NOW)
            transaction.set_rollback(True)
        Alert.objects.all().delete()
        return result["alerts"], len(ctx)

    small, large = queries(2), queries(20)
    assert large[0] > small[0] and large[1] == small[1]
