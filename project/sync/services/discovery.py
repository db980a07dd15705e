"""Discovery and adoption: read everything a platform account holds, list what Keyward does not manage yet, and
take objects over (local rows linked to their remote ids, audited, nothing changed on the platform).

A discovery run walks each registered kind (``registry.register_discoverable``) through the platform's lists,
a batch at a time: each batch is matched with the local rows that govern it and upserted as Observation rows,
so memory holds one batch, never the account. An object observed by an earlier run and not read again is gone
(deleted on the platform since): counted, named in the run (a sample) and its observation removed. A kind the
platform fails for keeps its observations and is named in the run's error.

Adoption takes unmanaged observations of one account into one workspace bound to that account, kind by kind in
the registry's order (secrets before the tools that use them, service accounts before their keys), pulling in
what an object needs. It is refused while a run of the account is queued or running (its observations are
being rewritten), for a workspace bound to another account, and for an object already adopted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from project import access
from project.actors import Actor, is_system
from project.audit.services import actor_fields, event, record, record_many
from project.fields import DecryptionError
from project.platform import errors
from project.sync import registry
from project.sync.models import DiscoveryRun, Observation

logger = logging.getLogger("project.sync")

BATCH = 500
GONE_SAMPLE = 50
# A run whose heartbeat (updated_at) is older than this lost its worker: it is closed, and adoption may go on.
STALE_AFTER = timedelta(minutes=5)

ProgressCallback = Callable[[DiscoveryRun], None]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _bound_workspaces(account_id: int) -> dict[int, str]:
    from project.platform.client import workspace_prefixes

    return workspace_prefixes(account_id)


def _require_discover(actor: Actor, account_id: int) -> None:
    """Discovery reads a whole account: the system, superusers, and people who may manage sync in every
    workspace bound to it."""
    if is_system(actor) or getattr(actor, "is_superuser", False):
        return
    bound = set(_bound_workspaces(account_id))
    allowed = access.workspaces_with(actor, "sync.manage")
    if not bound or (allowed is not None and not bound <= allowed):
        raise PermissionDenied("Discovering a platform account needs the “sync.manage” permission in every "
                               "workspace bound to it.")


def may_discover(actor: Actor, account_id: int) -> bool:
    """Whether the actor may discover the account and see its Discover page."""
    try:
        _require_discover(actor, account_id)
    except PermissionDenied:
        return False
    return True


def open_run(account_id: int) -> DiscoveryRun | None:
    """The account's queued or running run, if any; one whose worker was lost (no heartbeat) is closed here."""
    now = timezone.now()
    DiscoveryRun.objects.filter(account_id=account_id, state__in=DiscoveryRun.OPEN_STATES,
                                updated_at__lt=now - STALE_AFTER).update(
        state=DiscoveryRun.State.FAILED, error="worker lost (no progress for 5 minutes)", finished_at=now,
        updated_at=now)
    return DiscoveryRun.objects.filter(account_id=account_id, state__in=DiscoveryRun.OPEN_STATES).first()


def _send_after_commit(run_id: int) -> None:
    def send() -> None:
        from project.sync import tasks

        try:
            tasks.discover.apply_async(kwargs={"run_id": run_id}, retry=False)
        except Exception as exc:  # any broker failure: the run stays queued; the guardrail sweep starts it
            logger.warning("could not reach the broker to start discovery run %s (%s)", run_id, type(exc).__name__)

    transaction.on_commit(send, robust=True)


@transaction.atomic
def discovery_start(*, actor: Actor, account_id: int, purpose: str = DiscoveryRun.Purpose.DISCOVER,
                    enqueue: bool = True) -> DiscoveryRun:
    """Queue a discovery of the account (or return the one already queued or running). Audited when a person
    asks; with ``enqueue`` the worker is told after commit."""
    _require_discover(actor, account_id)
    current = open_run(account_id)
    if current is not None:
        return current
    run = DiscoveryRun.objects.create(account_id=account_id, purpose=purpose,
                                      requested_by=actor_fields(actor)["actor_label"])
    if not is_system(actor):
        record(actor=actor, action="platform.discover", target=run, changes={"account": account_id})
    if enqueue:
        _send_after_commit(run.pk)
    return run


def _claim(run: DiscoveryRun) -> bool:
    now = timezone.now()
    won = DiscoveryRun.objects.filter(pk=run.pk, state=DiscoveryRun.State.QUEUED).update(
        state=DiscoveryRun.State.RUNNING, started_at=now, updated_at=now)
    if won:
        run.state, run.started_at = DiscoveryRun.State.RUNNING, now
    return bool(won)


def _target(label: str, prefixes: dict[int, str]) -> int | None:
    """The workspace an unmanaged object would go to: the account's only workspace, or the one whose name
    prefix the object's name carries; None when that is not clear."""
    if len(prefixes) == 1:
        return next(iter(prefixes))
    matching = [pk for pk, prefix in prefixes.items() if prefix and label.startswith(prefix)]
    return matching[0] if len(matching) == 1 else None


def _upsert(run: DiscoveryRun, kind: str, batch: list[registry.Observed],
            governed: dict[str, tuple[str, int | None]], prefixes: dict[int, str]) -> int:
    now = timezone.now()
    rows, unmanaged = [], 0
    for item in batch:
        object_id, workspace_id = governed.get(item.remote_id, ("", None))
        if not object_id:
            unmanaged += 1
            workspace_id = _target(item.label, prefixes)
        rows.append(Observation(account_id=run.account_id, kind=kind, remote_id=item.remote_id,
                                label=(item.label or "")[:200], facts=dict(item.facts), object_id=str(object_id),
                                workspace_id=workspace_id, run=run, observed_at=now, created_at=now, updated_at=now))
    Observation.objects.bulk_create(
        rows, batch_size=BATCH, update_conflicts=True, unique_fields=["account_id", "kind", "remote_id"],
        update_fields=["label", "facts", "object_id", "workspace_id", "run", "observed_at", "updated_at"])
    return unmanaged


def _drop_gone(run: DiscoveryRun, kind: str) -> list[str]:
    """Observations of the kind the run did not read again: deleted on the platform since. Returns labels."""
    stale = Observation.objects.filter(account_id=run.account_id, kind=kind).exclude(run=run)
    labels = [f"{kind} {label or remote_id}" for label, remote_id in
              stale.order_by("label").values_list("label", "remote_id")[:GONE_SAMPLE]]
    count, _ = stale.delete()
    run.gone_count += count
    return labels if count else []


def _heartbeat(run: DiscoveryRun, on_progress: ProgressCallback | None, **extra: Any) -> None:
    for name, value in extra.items():
        setattr(run, name, value)
    run.updated_at = timezone.now()
    DiscoveryRun.objects.filter(pk=run.pk).update(counts=run.counts, unmanaged=run.unmanaged, calls=run.calls,
                                                  gone=run.gone, gone_count=run.gone_count,
                                                  updated_at=run.updated_at, **extra)
    if on_progress is not None:
        on_progress(run)


def discovery_run(*, run: DiscoveryRun, client: Any | None = None,
                  on_progress: ProgressCallback | None = None) -> DiscoveryRun:
    """Run a queued discovery (see the module docstring). Returns the run, unchanged if another worker had
    claimed it. Calls the observation listeners (the guardrails) when it is done."""
    from project.platform.client import client_for_account

    if not _claim(run):
        return run
    problems: list[str] = []
    gone: list[str] = []
    try:
        client = client or client_for_account(run.account_id)
        calls_before = client.calls
        prefixes = _bound_workspaces(run.account_id)
        for discoverable in registry.discoverables():
            kind = discoverable.kind
            run.counts[kind], run.unmanaged[kind] = 0, 0
            try:
                for batch in _chunks(discoverable.observe(client), BATCH):
                    governed = dict(discoverable.governed([item.remote_id for item in batch]))
                    run.unmanaged[kind] += _upsert(run, kind, batch, governed, prefixes)
                    run.counts[kind] += len(batch)
                    run.calls = client.calls - calls_before
                    _heartbeat(run, on_progress)
            except (errors.PlatformError, DecryptionError) as exc:
                problems.append(f"{discoverable.title}: {exc}")
                continue
            gone += _drop_gone(run, kind)
        run.gone = gone[:GONE_SAMPLE]
        run.calls = client.calls - calls_before
    except BaseException as exc:  # out of time, shutting down, a refused key: the run must not stay "running"
        _heartbeat(run, on_progress, state=DiscoveryRun.State.FAILED, finished_at=timezone.now(),
                   error=f"stopped: {type(exc).__name__}: {exc}"[:4000])
        raise
    _heartbeat(run, on_progress, state=DiscoveryRun.State.FAILED if problems else DiscoveryRun.State.DONE,
               finished_at=timezone.now(), error="\n".join(problems)[:4000])
    tell_listeners(run.account_id, None)
    return run


def tell_listeners(account_id: int, workspace_ids: set[int] | None) -> None:
    """Call the observation listeners (the guardrails); a failing one is logged, never raised."""
    for listener in registry.observation_listeners():
        try:
            listener(account_id, workspace_ids)
        except Exception:  # a guardrail bug must not undo a discovery or an adoption; it is logged with its trace
            logger.exception("observation listener %r failed for account %s", listener, account_id)


def discovery_execute(*, run_id: int, client: Any | None = None) -> DiscoveryRun | None:
    """The task's entry point: run a queued run."""
    run = DiscoveryRun.objects.filter(pk=run_id).first()
    return None if run is None else discovery_run(run=run, client=client)


def discovery_refresh(*, account_id: int, client: Any | None = None) -> DiscoveryRun | None:
    """The periodic guardrail refresh of one account: a run of purpose "refresh", unless one is open."""
    from project.actors import SYSTEM

    if open_run(account_id) is not None:
        return None
    run = discovery_start(actor=SYSTEM, account_id=account_id, purpose=DiscoveryRun.Purpose.REFRESH, enqueue=False)
    return discovery_run(run=run, client=client)


# --- adoption -----------------------------------------------------------------------------------------------
@dataclass
class AdoptionReport:
    """What an adoption did: objects adopted per kind, objects refused (label and reason), objects skipped
    because a local row already governed them."""

    adopted: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0

    @property
    def total(self) -> int:
        return sum(self.adopted.values())

    def summary(self) -> str:
        parts = [f"{count} {kind.replace('_', ' ')}(s)" for kind, count in self.adopted.items() if count]
        text = f"Adopted {', '.join(parts) if parts else 'nothing'}"
        if self.skipped:
            text += f"; {self.skipped} already governed by Keyward"
        if self.refused:
            text += f"; {len(self.refused)} refused"
        return text + "."


def _with_needs(selected: list[Observation], account_id: int) -> list[Observation]:
    """The selection plus the unmanaged objects it needs (a tool's secrets, a key's service account), found by
    kind and remote id among the account's observations."""
    wanted: dict[str, set[str]] = {}
    for observation in selected:
        discoverable = registry.discoverable(observation.kind)
        for kind, remote_id in (discoverable.needs(observation) if discoverable.needs else ()):
            wanted.setdefault(kind, set()).add(str(remote_id))
    have = {(o.kind, o.remote_id) for o in selected}
    extra: list[Observation] = []
    for kind, remote_ids in wanted.items():
        missing = [r for r in remote_ids if (kind, r) not in have]
        for chunk in _chunks(missing, BATCH):
            extra += Observation.objects.filter(account_id=account_id, kind=kind, remote_id__in=chunk, object_id="")
    return selected + extra


def _adopt_batch(actor: Actor, workspace_id: int, discoverable: registry.Discoverable,
                 batch_ids: list[int], report: AdoptionReport) -> None:
    now = timezone.now()
    with transaction.atomic():
        batch = list(Observation.objects.select_for_update().filter(pk__in=batch_ids, object_id="").order_by("pk"))
        # A local row may govern some of them since the discovery (a reconcile linked it, a push created it).
        governed = dict(discoverable.governed([o.remote_id for o in batch]))
        free = []
        for observation in batch:
            object_id, governing_workspace = governed.get(observation.remote_id, ("", None))
            if object_id:
                observation.object_id, observation.workspace_id = str(object_id), governing_workspace
                report.skipped += 1
            else:
                free.append(observation)
        result = discoverable.adopt(actor, workspace_id, free) if free else registry.Adopted()
        events = []
        for observation in free:
            object_id = result.adopted.get(observation.remote_id)
            if object_id:
                observation.object_id, observation.workspace_id, observation.note = str(object_id), workspace_id, ""
                events.append(event(actor=actor, action="platform.adopt", object_type=discoverable.object_type,
                                    object_id=object_id, object_repr=observation.label, workspace_id=workspace_id,
                                    changes={"kind": discoverable.kind, "remote_id": observation.remote_id,
                                             "account": observation.account_id}))
            else:
                reason = result.refused.get(observation.remote_id, "not adopted")
                observation.note = reason[:300]
                report.refused.append((observation.label or observation.remote_id, reason))
            observation.updated_at = now
        # One upsert statement per batch: bulk_update's CASE per row costs seconds per thousand rows.
        Observation.objects.bulk_create(batch, batch_size=BATCH, update_conflicts=True,
                                        unique_fields=["account_id", "kind", "remote_id"],
                                        update_fields=["object_id", "workspace_id", "note", "updated_at"])
        record_many(events)
        report.adopted[discoverable.kind] = report.adopted.get(discoverable.kind, 0) + len(events)


def adopt(*, actor: Actor, account_id: int, workspace_id: int, observation_ids: Iterable[int] | None = None,
          kinds: Iterable[str] | None = None) -> AdoptionReport:
    """Adopt objects of a platform account into one of its workspaces: the observations named (each must be
    unmanaged: adopting twice is an error), or, without ids, every unmanaged observation of ``kinds`` (default:
    every adoptable kind; already adopted ones are left alone). Needs ``sync.manage`` in the workspace. Each
    object adopted is audited as ``platform.adopt``; the platform is not called."""
    bound = _bound_workspaces(account_id)
    if workspace_id not in bound:
        from project.platform.client import account_of_workspace

        other = account_of_workspace(workspace_id)
        raise ValidationError({"workspace": f"This workspace is bound to another platform account (#{other}): "
                                            "objects of this account cannot be adopted into it."})
    access.require(actor, "sync.manage", workspace_id)
    if open_run(account_id) is not None:
        raise ValidationError("A discovery of this platform account is running; adopt when it has finished "
                              "(its list of objects is being rewritten).")
    adoptable = [d for d in registry.discoverables() if d.adopt is not None]
    if observation_ids is not None:
        ids = sorted({int(pk) for pk in observation_ids})
        selected = list(Observation.objects.filter(pk__in=ids, account_id=account_id))
        if len(selected) != len(ids):
            raise ValidationError("Some of the chosen objects are not observations of this platform account.")
        taken = [o for o in selected if o.object_id]
        if taken:
            names = ", ".join(sorted(o.label or o.remote_id for o in taken)[:5])
            raise ValidationError(f"Already adopted (nothing was changed): {names}.")
        not_adoptable = [o for o in selected if o.kind not in {d.kind for d in adoptable}]
        if not_adoptable:
            raise ValidationError(f"{not_adoptable[0].kind.replace('_', ' ').capitalize()} objects are observed "
                                  "for the guardrails only; they cannot be adopted.")
        selected = _with_needs(selected, account_id)
        by_kind: dict[str, list[int]] = {}
        for observation in selected:
            by_kind.setdefault(observation.kind, []).append(observation.pk)
    else:
        chosen = set(kinds) if kinds else {d.kind for d in adoptable}
        by_kind = {d.kind: list(Observation.objects.filter(account_id=account_id, kind=d.kind, object_id="")
                                .order_by("pk").values_list("pk", flat=True))
                   for d in adoptable if d.kind in chosen}
    report = AdoptionReport()
    for discoverable in adoptable:
        for chunk in _chunks(by_kind.get(discoverable.kind, []), BATCH):
            _adopt_batch(actor, workspace_id, discoverable, chunk, report)
    tell_listeners(account_id, {workspace_id})
    return report


def discovery_sweep(*, client: Any | None = None) -> int:
    """The periodic pass: queued runs first (a broker that was down when they were asked for), then a refresh of
    every account that has workspaces. An account the platform refuses is logged and the others go on. Returns
    the number of runs made."""
    from project.platform.client import accounts_with_workspaces

    made = 0
    for run in list(DiscoveryRun.objects.filter(state=DiscoveryRun.State.QUEUED).order_by("id")):
        try:
            discovery_run(run=run, client=client)
            made += 1
        except (errors.PlatformError, DecryptionError, LookupError) as exc:
            logger.warning("discovery run %s failed: %s", run.pk, exc)
    for account_id, workspace_ids in accounts_with_workspaces().items():
        if account_id is None or not workspace_ids:
            continue
        try:
            made += discovery_refresh(account_id=account_id, client=client) is not None
        except (errors.PlatformError, DecryptionError, LookupError) as exc:
            logger.warning("guardrail refresh of platform account %s failed: %s", account_id, exc)
    return made


# --- the drift page's "Adopt" for an object unknown to Keyward ---------------------------------------------------
def adopt_from_drift(actor: Actor, drift: Any) -> str:
    """Adopt the remote object a drift row reports as unknown to Keyward, into the workspace it would go to (the
    account's only workspace, or the one its name prefix names); otherwise the Discover page asks which."""
    if drift.account_id is None:
        raise ValidationError("This drift row does not say which platform account it was read from; reconcile "
                              "again, then adopt.")
    observation = Observation.objects.filter(account_id=drift.account_id, kind=drift.kind,
                                             remote_id=drift.remote_id).first()
    if observation is None:
        raise ValidationError("Keyward has not discovered this object yet: run Discover on its platform account, "
                              "then adopt it there or here.")
    if observation.object_id:
        raise ValidationError(f"{observation.label or observation.remote_id} is already adopted.")
    if observation.workspace_id is None:
        raise ValidationError("Which workspace it belongs to is not clear (the account has several): adopt it "
                              "from the account's Discover page, choosing the workspace.")
    report = adopt(actor=actor, account_id=drift.account_id, workspace_id=observation.workspace_id,
                   observation_ids=[observation.pk])
    if report.refused:
        raise ValidationError("; ".join(reason for _, reason in report.refused))
    return report.summary()
