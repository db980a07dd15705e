"""Concurrency pinned at the maximum: samples of the platform's concurrency headers and the rule over them.

Every platform response carries ``current-concurrent-requests`` and ``maximum-concurrent-requests``; the client
keeps the last pair it saw. A periodic task makes one small usage query per platform account to take a sample (error
answers carry the headers too, a 429 above all). A run of N consecutive samples at the maximum that nobody
initiated is an abuse signal. An account is shared by the workspaces bound to it, so the alert is raised in each of
them with usable keys (each by its own N), and says it is about the account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from detection.models import ConcurrencySample
from detection.services import detection_policies_ensure
from keys.models import ApiKey
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.platform import errors
from workspaces.models import Workspace


def concurrency_sample_record(*, current: int, maximum: int, now: datetime | None = None,
                              account_id: int | None = None) -> ConcurrencySample:
    """Store one sample (platform data: not audited)."""
    return ConcurrencySample.objects.create(account_id=account_id, taken_at=now or timezone.now(),
                                            current=max(0, int(current)), maximum=max(0, int(maximum)))


def concurrency_sample_from(client: Any, *, now: datetime | None = None,
                            account_id: int | None = None) -> ConcurrencySample | None:
    """Store the headers of the client's last response, if it had them (the platform may leave them out)."""
    seen = getattr(client, "last_concurrency", None)
    if not seen:
        return None
    current, maximum = seen
    return concurrency_sample_record(current=current, maximum=maximum, now=now, account_id=account_id)


@dataclass(frozen=True)
class PinnedRun:
    length: int
    since: ConcurrencySample
    samples: list[ConcurrencySample]  # newest first


def pinned_run(samples: Iterable[ConcurrencySample], *, now: datetime, max_gap: timedelta) -> PinnedRun | None:
    """The run of consecutive samples at the maximum ending with the newest one (`samples` newest first; read
    only as far as the run goes).

    Consecutive means no gap longer than `max_gap`, and the newest sample itself no older than that: samples
    from before an outage of the sampler do not join a run, and an old run is not "now".
    """
    run: list[ConcurrencySample] = []
    for sample in samples:
        if not sample.pinned:
            break
        if (run[-1].taken_at if run else now) - sample.taken_at > max_gap:
            break
        run.append(sample)
    return PinnedRun(len(run), run[-1], run) if run else None


def _max_gap() -> timedelta:
    return timedelta(seconds=settings.DETECTION_CONCURRENCY_SAMPLE_SECONDS * 2.5)


def concurrency_evaluate(*, now: datetime | None = None) -> int:
    """For each platform account, raise "concurrency pinned" in each of its workspaces with usable keys whose
    policy's N consecutive samples of that account are at the maximum; once per run of samples (the dedup key
    names the account and the run's first sample). Returns alerts raised."""
    from project.platform.client import accounts_with_workspaces

    now = now or timezone.now()
    raised = 0
    for account_id, bound in accounts_with_workspaces().items():
        raised += _evaluate_account(account_id, bound, now)
    return raised


def _evaluate_account(account_id: int | None, bound: set[int] | None, now: datetime) -> int:
    keys = ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES)
    if bound is not None:
        keys = keys.filter(workspace_id__in=bound)
    workspace_ids = set(keys.order_by().values_list("workspace_id", flat=True).distinct())
    if not workspace_ids:
        return 0
    policies = detection_policies_ensure(workspace_ids=workspace_ids)
    # Read back only as far as the run goes: its first sample names it, so one run raises one alert.
    from project.platform.client import default_account_id

    # A sample of no account was taken by a client answering for every account: the default account's.
    mine = Q(account_id=account_id) | Q(account_id__isnull=True) if account_id in (None, default_account_id()) \
        else Q(account_id=account_id)
    samples = ConcurrencySample.objects.filter(mine, taken_at__lte=now).order_by("-taken_at", "-id").iterator(
        chunk_size=100)
    run = pinned_run(samples, now=now, max_gap=_max_gap())
    if run is None:
        return 0
    raised = 0
    workspaces = {w.pk: w for w in Workspace.objects.filter(pk__in=[ws for ws, p in policies.items()
                                                                    if run.length >= p.concurrency_samples])}
    for workspace_id, workspace in sorted(workspaces.items()):
        policy = policies[workspace_id]
        newest = run.samples[0]
        _, created = alert_raise(actor=SYSTEM,
            workspace=workspace, kind="concurrency_pinned", severity=Alert.Severity.HIGH,
            title=f"Platform concurrency pinned at its maximum ({newest.current}/{newest.maximum}) for "
                  f"{run.length} consecutive samples",
            dedup_key=(f"concurrency.pinned:{run.since.taken_at:%Y%m%dT%H%M%S}" if account_id is None
                       else f"concurrency.pinned:{account_id}:{run.since.taken_at:%Y%m%dT%H%M%S}"),
            details={"since": run.since.taken_at.isoformat(), "samples_at_maximum": run.length,
                     "threshold_samples": policy.concurrency_samples, "maximum": newest.maximum,
                     "sample_interval_seconds": settings.DETECTION_CONCURRENCY_SAMPLE_SECONDS,
                     "samples": [{"at": s.taken_at.isoformat(), "current": s.current, "maximum": s.maximum}
                                 for s in run.samples[:policy.concurrency_samples]],
                     "scope": "the platform account this workspace is bound to (shared by its workspaces)",
                     "platform_account_id": account_id,
                     "advice": "If nobody started this load, look for a leaked key: spikes, unusual hours and "
                               "keys waking up in the alert list, then open an incident."})
        raised += created
    return raised


def concurrency_prune(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.DETECTION_CONCURRENCY_RETENTION_HOURS)
    deleted, _ = ConcurrencySample.objects.filter(taken_at__lt=cutoff).delete()
    return deleted


def concurrency_watch(*, client: Any = None, now: datetime | None = None) -> dict[str, int]:
    """Take one sample (a one-minute usage query: small, and answered with the headers), evaluate the rule and
    prune old samples. A failed call still yields a sample when its answer had the headers (a 429 does)."""
    from project.platform.client import accounts_with_workspaces, client_for_account

    now = now or timezone.now()
    end_ms = int(now.timestamp() * 1000)
    sampled = 0
    for account_id in ([None] if client is not None else list(accounts_with_workspaces())):
        account_client = client or client_for_account(account_id)
        account_client.last_concurrency = None
        try:
            account_client.usage_by_api_key(start_ms=end_ms - 60_000, end_ms=end_ms, interval_seconds=60)
        except errors.PlatformError:
            pass  # the headers of an error answer count the same; no headers, no sample
        sampled += concurrency_sample_from(account_client, now=now, account_id=account_id) is not None
    return {"sampled": sampled, "alerts": concurrency_evaluate(now=now), "pruned": concurrency_prune(now=now)}
