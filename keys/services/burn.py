"""The pre-aggregated credit burn the posture dashboard reads: per environment and day (EnvironmentUsageDaily) and
per key over the BURN_WINDOW_DAYS days ending each day (KeyUsageWindow). Both are sums of KeyUsageDaily, moved by
the same changes in the same transaction (``usage_burn_apply``, called by the usage ingest), and rebuilt from it
by ``usage_burn_rebuild`` (the migration that introduced them, and anything that writes day rows in bulk)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from keys.models import BURN_WINDOW_DAYS, ApiKey, EnvironmentUsageDaily, KeyUsageDaily, KeyUsageWindow
from keys.services.common import DIGEST_BATCH


def _models(models: dict[str, Any] | None) -> tuple[Any, Any, Any, Any]:
    """The model classes (the migration passes its historical ones)."""
    m = models or {}
    return (m.get("ApiKey", ApiKey), m.get("KeyUsageDaily", KeyUsageDaily),
            m.get("EnvironmentUsageDaily", EnvironmentUsageDaily), m.get("KeyUsageWindow", KeyUsageWindow))


def usage_burn_apply(deltas: dict[tuple[int, date], Decimal], *, models: dict[str, Any] | None = None) -> int:
    """Moves the aggregates by each (key id, day) change of that day's credits (new minus old; a new day row is
    its credits). Call it inside the transaction that writes the KeyUsageDaily rows. Returns the rows written."""
    key_model, _, env_model, window_model = _models(models)
    deltas = {k: Decimal(v) for k, v in deltas.items() if v}
    if not deltas:
        return 0
    where = _placement(key_model, {key_id for key_id, _ in deltas})
    by_env: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    by_window: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for (key_id, day), delta in deltas.items():
        if key_id not in where:
            continue
        by_env[(where[key_id][1], day)] += delta
        for n in range(BURN_WINDOW_DAYS):
            by_window[(key_id, day + timedelta(days=n))] += delta
    env_workspace = {env: ws for ws, env in where.values()}
    written = _add(env_model, "environment_id", by_env,
                   lambda env, day, credits: env_model(environment_id=env, workspace_id=env_workspace[env], day=day,
                                                       credits=credits))
    written += _add(window_model, "key_id", by_window,
                    lambda key, day, credits: window_model(key_id=key, workspace_id=where[key][0], day=day,
                                                           credits=credits))
    return written


def _placement(key_model: Any, key_ids: set[int]) -> dict[int, tuple[int, int]]:
    """Each key's (workspace id, environment id), read in batches."""
    ordered = sorted(key_ids)
    where: dict[int, tuple[int, int]] = {}
    for i in range(0, len(ordered), DIGEST_BATCH):
        where.update((pk, (ws, env)) for pk, ws, env in key_model.objects.filter(
            pk__in=ordered[i:i + DIGEST_BATCH]).order_by().values_list("pk", "workspace_id", "environment_id"))
    return where


def _add(model: Any, owner: str, amounts: dict[tuple[int, date], Decimal], build: Any) -> int:
    """Adds each amount to the (owner, day) row, creating the rows that do not exist yet."""
    owners = sorted({o for o, _ in amounts})
    first, last = min(d for _, d in amounts), max(d for _, d in amounts)
    existing: dict[tuple[int, date], Any] = {}
    for i in range(0, len(owners), DIGEST_BATCH):
        existing.update(((getattr(row, owner), row.day), row) for row in model.objects.filter(
            **{f"{owner}__in": owners[i:i + DIGEST_BATCH]}, day__gte=first, day__lte=last).order_by())
    new, changed = [], []
    for (who, day), amount in amounts.items():
        row = existing.get((who, day))
        if row is None:
            new.append(build(who, day, amount))
        else:
            row.credits = Decimal(row.credits) + amount
            changed.append(row)
    model.objects.bulk_create(new, batch_size=DIGEST_BATCH)
    model.objects.bulk_update(changed, ["credits"], batch_size=DIGEST_BATCH)
    return len(new) + len(changed)


def usage_burn_rebuild(*, since: date | None = None, models: dict[str, Any] | None = None) -> int:
    """Recomputes the aggregates from the KeyUsageDaily rows: the environment days from `since` (or all), the key
    windows ending on `since` or later (or all; earlier windows are never read again). For the migration that
    introduced them and for day rows written in bulk without the ingest (demo data, benchmarks). Returns the rows
    written."""
    key_model, daily_model, env_model, window_model = _models(models)
    days = daily_model.objects.order_by()
    windows, envs = window_model.objects.all(), env_model.objects.all()
    if since is not None:
        days = days.filter(day__gt=since - timedelta(days=BURN_WINDOW_DAYS))
        windows, envs = windows.filter(day__gte=since), envs.filter(day__gte=since)
    windows.delete()
    envs.delete()
    rows = list(days.exclude(credits=0).values_list("key_id", "day", "credits").iterator(chunk_size=10_000))
    where = _placement(key_model, {key_id for key_id, _, _ in rows})
    by_env: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    by_window: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for key_id, day, credits in rows:
        if since is None or day >= since:
            by_env[(where[key_id][1], day)] += Decimal(credits)
        for n in range(BURN_WINDOW_DAYS):
            end = day + timedelta(days=n)
            if since is None or end >= since:
                by_window[(key_id, end)] += Decimal(credits)
    env_workspace = {env: ws for ws, env in where.values()}
    env_model.objects.bulk_create([env_model(environment_id=env, workspace_id=env_workspace[env], day=day,
                                             credits=credits) for (env, day), credits in by_env.items()],
                                  batch_size=DIGEST_BATCH)
    window_model.objects.bulk_create([window_model(key_id=key, workspace_id=where[key][0], day=day, credits=credits)
                                      for (key, day), credits in by_window.items()], batch_size=DIGEST_BATCH)
    return len(by_env) + len(by_window)
