"""Permission-filtered reads of API keys, key policies, budgets and usage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from keys.models import ApiKey, EnvironmentUsageDaily, KeyPolicy, KeyUsageDaily
from project.actors import Actor
from workspaces.models import Environment, Workspace

DEFAULT_POLICY = KeyPolicy()  # unsaved: the defaults a workspace without a policy row lives by


def api_keys_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[ApiKey]:
    """The keys of the workspaces where `actor` holds `permission` (every key for a superuser)."""
    return ApiKey.objects.restrict(actor, permission)


def key_policies_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[KeyPolicy]:
    return KeyPolicy.objects.restrict(actor, permission)


def environments_for(actor: Actor, permission: str = "workspace.view") -> QuerySet[Environment]:
    return Environment.objects.select_related("workspace").restrict(actor, permission)


def key_policy_of(workspace_id: int) -> KeyPolicy:
    """The workspace's policy, or the defaults (unsaved) when it has none."""
    return KeyPolicy.objects.filter(workspace_id=workspace_id).first() or KeyPolicy(workspace_id=workspace_id)


def policy_of_row(key: ApiKey) -> KeyPolicy:
    """The policy that came with a row selected with `workspace__key_policy` (no query)."""
    try:
        return key.workspace.key_policy
    except KeyPolicy.DoesNotExist:
        return DEFAULT_POLICY


# --- the cross-row rules' figures ---------------------------------------------------------------------------
def _carried_by_successor() -> Exists:
    # A superseded key's quota is carried by its live successor: a rotation pair counts once in a budget.
    return Exists(ApiKey.objects.filter(predecessor=OuterRef("pk"), state__in=ApiKey.LIVE_STATES))


def live_keys_in(environment_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(environment_id=environment_id, state__in=ApiKey.LIVE_STATES)


def allocated_quota(environment_id: int, *, exclude_pk: int | None = None) -> int:
    """Credits of quota the live keys of an environment hold (a rotation pair counted once)."""
    qs = live_keys_in(environment_id).exclude(Q(state=ApiKey.State.SUPERSEDED) & _carried_by_successor())
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return int(qs.aggregate(total=Sum("credit_quota"))["total"] or 0)


def unlimited_live_keys(environment_id: int) -> int:
    return live_keys_in(environment_id).filter(credit_quota__isnull=True).count()


def live_key_count(service_account_id: int, environment_id: int) -> int:
    return live_keys_in(environment_id).filter(service_account_id=service_account_id).count()


def environment_budgets(actor: Actor) -> list[tuple[Environment, int]]:
    """Each environment the actor may see with the quota its live keys hold, in two queries."""
    environments = list(environments_for(actor).order_by("workspace__name", "name"))
    totals = dict(
        ApiKey.objects.filter(environment__in=environments, state__in=ApiKey.LIVE_STATES)
        .exclude(Q(state=ApiKey.State.SUPERSEDED) & _carried_by_successor())
        .values("environment_id").annotate(total=Sum("credit_quota")).values_list("environment_id", "total"))
    return [(env, int(totals.get(env.pk) or 0)) for env in environments]


#: Where each workspace's credit period starts on a given day: {workspace id: first day}. The credit guard's
#: period lives in detection's policy, a floor above; detection registers its reading here when it loads. Until
#: then (or for a workspace it does not answer for) a period is the calendar month.
PERIOD_STARTS: list[Callable[[set[int], date], dict[int, date]]] = []


def period_starts(workspace_ids: set[int], today: date) -> dict[int, date]:
    starts = {pk: today.replace(day=1) for pk in workspace_ids}
    for provider in PERIOD_STARTS:
        starts.update(provider(workspace_ids, today))
    return starts


def environment_spend(environments: list[Environment], today: date | None = None) -> dict[int, tuple[date, int]]:
    """What each environment spent in its current credit period, {environment id: (period start, credits)}, from
    the pre-aggregated daily burn (one query per distinct period start, in practice one)."""
    today = today or timezone.now().date()
    starts = period_starts({env.workspace_id for env in environments}, today)
    spent: dict[int, tuple[date, int]] = {}
    by_start: dict[date, list[int]] = {}
    for env in environments:
        by_start.setdefault(starts[env.workspace_id], []).append(env.pk)
        spent[env.pk] = (starts[env.workspace_id], 0)
    for start, env_ids in by_start.items():
        for env_id, total in (EnvironmentUsageDaily.objects.filter(environment_id__in=env_ids, day__gte=start,
                                                                   day__lte=today)
                              .order_by().values("environment_id").annotate(total=Sum("credits"))
                              .values_list("environment_id", "total")):
            spent[env_id] = (start, int(total or 0))
    return spent


# --- the key list's flags as database filters ----------------------------------------------------------------
def _per_policy(build: Any) -> Q:
    """OR of `build(policy)` over the workspaces with their own policy, and the defaults for the rest.

    Policies are few (one per workspace that set one), so this stays one query with a short WHERE.
    """
    policies = list(KeyPolicy.objects.all())
    condition = build(DEFAULT_POLICY) & ~Q(workspace_id__in=[p.workspace_id for p in policies])
    for policy in policies:
        condition |= build(policy) & Q(workspace_id=policy.workspace_id)
    return condition


def flag_condition(flag: str, now: datetime | None = None) -> Q:
    """The keys a flag selects, as a condition (``flagged`` filters by it; the posture dashboard counts every flag
    in one pass over the keys with it)."""
    now = now or timezone.now()
    usable = Q(state__in=ApiKey.USABLE_STATES)
    if flag == "suspended":
        return usable & Q(suspended_at__isnull=False)
    if flag == "overdue":
        return usable & Q(state=ApiKey.State.ACTIVE) & _per_policy(lambda p: Q(
            activated_at__lt=now - timedelta(days=p.rotation_period_days)))
    if flag == "idle":
        return usable & Q(state=ApiKey.State.ACTIVE) & _per_policy(lambda p: (
            Q(last_used_at__lt=now - timedelta(days=p.idle_days))
            | Q(last_used_at__isnull=True, activated_at__lt=now - timedelta(days=p.idle_days))))
    if flag == "open_network":
        return usable & Q(allowed_ips=[])
    if flag == "all_scopes_prod":
        return usable & Q(scopes="all", environment__is_production=True)
    raise ValueError(f"unknown flag {flag!r}")


def flagged(qs: QuerySet[ApiKey], flag: str, now: datetime | None = None) -> QuerySet[ApiKey]:
    return qs.filter(flag_condition(flag, now))


# --- sweeps (system reads) --------------------------------------------------------------------------------------
def keys_past_overlap(now: datetime) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(state=ApiKey.State.SUPERSEDED, overlap_until__lte=now)


def keys_past_expiry(now: datetime) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES, expires_at__lte=now)


def keys_needing_attention(now: datetime) -> QuerySet[ApiKey]:
    """Active keys overdue for rotation or idle, by their workspace's policy."""
    return (flagged(ApiKey.objects.all(), "overdue", now) | flagged(ApiKey.objects.all(), "idle", now)).distinct()


def key_usage(key: ApiKey, days: int = 30, today: date | None = None) -> list[KeyUsageDaily]:
    today = today or timezone.now().date()
    return list(KeyUsageDaily.objects.filter(key=key, day__gt=today - timedelta(days=days)).order_by("-day"))


def workspaces_visible(actor: Actor) -> QuerySet[Workspace]:
    return Workspace.objects.restrict(actor, "workspace.view")
