"""What each app tells the outbox about the kinds of objects it syncs. The outbox knows only kinds and ids.

Apps register in ``AppConfig.ready()`` (import the module holding the decorated functions). Three registries,
all keyed by the kind the app passes to ``job_enqueue(kind=...)``, a member of the catalogue ``kinds.SyncKind``
(the system check sync.E001/E002 holds the catalogue and the push handlers to each other):

``@register(kind)``: the push handler, ``fn(job, client) -> remote_id | None``
    Sends the object's *current* state (or its deletion, ``job.op == "delete"``) and returns the remote id.
    It runs outside any transaction and may run more than once for one change (retries, a worker killed
    mid-call), so it must be idempotent: pass ``str(job.idempotency_key)`` to creates, and before creating an
    object that has no remote id yet, look for one an earlier attempt may have made when
    ``selectors.attempted_before(job)`` says so. Raise ``project.platform.errors`` exceptions as they come:
    transient ones are retried with backoff, 429 waits for Retry-After, the others fail the job with the
    platform's message. A 404 on delete means done.

``@register_reconciler(kind)``: drift detection, ``fn(client, workspace_ids=None) -> Iterable[DriftItem]``
    Called once per platform account, with that account's client and the ids of the workspaces bound to it
    (None: every workspace). Compares those workspaces' local objects of the kind with the account's copies
    (``in_scope(queryset, workspace_ids)``) and yields one ``DriftItem`` per
    difference: ``missing_remotely`` (a local object the platform lacks), ``unknown_locally`` (a remote object
    no local row accounts for; ``object_id=None``) or ``differs`` (``fields={"name": [local, remote], ...}``).
    Never put a secret value in ``fields``: for a secret field report ``["[set]", "[differs]"]`` or leave it
    out. Items for objects with a sync job in flight are dropped by the runner, so a reconciler need not
    care about them. Platform errors may propagate: the run records them and keeps the previous report.
    Call ``report_progress(done, total)`` now and then for the progress bar (optional).

``@register_objects(kind)``: every local object, ``fn() -> Iterable[LocalObject]``
    Optional; enables the bulk re-sync of the kind (an upsert job for each object).

Example (secrets)::

    @register_reconciler(SyncKind.SECRET)
    def reconcile_secrets(client, workspace_ids=None):
        remote = {s["secret_id"]: s for s in client.list_secrets()}
        for secret in in_scope(Secret.objects.all(), workspace_ids):
            if secret.remote_id not in remote:
                yield DriftItem(SyncKind.SECRET, secret.pk, secret.remote_id or None, "missing_remotely",
                                workspace_id=secret.workspace_id, label=secret.name)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from project.platform.client import PlatformClient
    from project.sync.models import SyncJob

MISSING_REMOTELY = "missing_remotely"
UNKNOWN_LOCALLY = "unknown_locally"
DIFFERS = "differs"
PROBLEMS = (MISSING_REMOTELY, UNKNOWN_LOCALLY, DIFFERS)


class Handler(Protocol):
    def __call__(self, job: SyncJob, client: PlatformClient) -> str | None:
        """Push the object's current state (or its deletion); return the remote id, if any."""


@dataclass(frozen=True)
class DriftItem:
    """One difference between a local object and the platform's copy.

    ``fields`` maps a field name to ``[local, remote]`` (``differs`` only). ``workspace_id`` scopes the row in
    the admin (``None``: superusers only, as for remote objects nobody local owns); ``label`` names the object.
    """

    kind: str
    object_id: str | int | None
    remote_id: str | None
    problem: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    workspace_id: int | None = None
    label: str = ""
    #: The platform account the remote side was read from (set by the reconcile runner).
    account_id: int | None = None

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise ValueError(f"drift problem must be one of {PROBLEMS}, not {self.problem!r}")
        if self.problem != UNKNOWN_LOCALLY and self.object_id is None:
            raise ValueError(f"a {self.problem} drift item needs the local object id")


@dataclass(frozen=True)
class LocalObject:
    """A local object the bulk re-sync should push."""

    object_id: str | int
    workspace_id: int | None
    label: str = ""


#: ``fn(client, workspace_ids)``: compare the local objects of these workspaces (None: every workspace) with what
#: the platform account behind ``client`` holds.
Reconciler = Callable[["PlatformClient", "set[int] | None"], Iterable[DriftItem]]
ObjectLister = Callable[[], Iterable[LocalObject]]

_handlers: dict[str, Handler] = {}
_reconcilers: dict[str, Reconciler] = {}
_listers: dict[str, ObjectLister] = {}
_local_kinds: set[str] = set()


def is_local(kind: str) -> bool:
    """True for a kind whose handler never calls the platform (registered with ``platform=False``)."""
    return kind in _local_kinds


def local_kinds() -> list[str]:
    return sorted(_local_kinds)


def in_scope(queryset: Any, workspace_ids: set[int] | None, lookup: str = "workspace_id") -> Any:
    """The local objects a reconciler compares with one platform account: those of its workspaces."""
    return queryset if workspace_ids is None else queryset.filter(**{f"{lookup}__in": workspace_ids})


def register(kind: str, *, platform: bool = True) -> Callable[[Handler], Handler]:
    """``platform=False``: the handler delivers somewhere else (a notification, the audit stream); it is called
    with ``client=None`` and its failures never pause a platform account's jobs."""

    def decorator(handler: Handler) -> Handler:
        _handlers[kind] = handler
        if platform:
            _local_kinds.discard(kind)
        else:
            _local_kinds.add(kind)
        return handler

    return decorator


def register_reconciler(kind: str) -> Callable[[Reconciler], Reconciler]:
    def decorator(reconciler: Reconciler) -> Reconciler:
        _reconcilers[kind] = reconciler
        return reconciler

    return decorator


def register_objects(kind: str) -> Callable[[ObjectLister], ObjectLister]:
    def decorator(lister: ObjectLister) -> ObjectLister:
        _listers[kind] = lister
        return lister

    return decorator


def handler_for(kind: str) -> Handler:
    try:
        return _handlers[kind]
    except KeyError:
        raise LookupError(f"no sync handler registered for kind {kind!r}") from None


def reconciler_for(kind: str) -> Reconciler:
    try:
        return _reconcilers[kind]
    except KeyError:
        raise LookupError(f"no reconciler registered for kind {kind!r}") from None


def objects_for(kind: str) -> ObjectLister:
    try:
        return _listers[kind]
    except KeyError:
        raise LookupError(f"kind {kind!r} does not support bulk re-sync") from None


@dataclass(frozen=True)
class DriftAction:
    """Something a person can do about a drift row of one kind and problem, besides pushing local state: the
    agents app offers "Recreate from Keyward" and "Forget" for an agent missing on the platform, the adoption code
    "Adopt" for an object unknown to Keyward. ``run(actor, drift)`` returns a message or raises ValidationError /
    PermissionDenied; the drift row is resolved by the next reconcile."""

    name: str
    label: str
    kind: str
    problem: str
    run: Callable[[Any, Any], str]


_drift_actions: dict[str, DriftAction] = {}


def register_drift_action(action: DriftAction) -> DriftAction:
    _drift_actions[action.name] = action
    return action


def drift_actions() -> list[DriftAction]:
    return [_drift_actions[name] for name in sorted(_drift_actions)]


def drift_action(name: str) -> DriftAction:
    try:
        return _drift_actions[name]
    except KeyError:
        raise LookupError(f"no drift action named {name!r}") from None


def kinds() -> list[str]:
    return sorted(_handlers)


def reconciler_kinds() -> list[str]:
    return sorted(_reconcilers)


def resync_kinds() -> list[str]:
    return sorted(_listers)


# --- progress: reconcilers report it without knowing who listens ---------------------------------------
_progress: contextvars.ContextVar[Callable[[int, int | None], None] | None] = contextvars.ContextVar(
    "sync_progress", default=None)


def report_progress(done: int, total: int | None = None) -> None:
    """Tell the running reconcile how far this kind has got; a no-op outside a run."""
    listener = _progress.get()
    if listener is not None:
        listener(done, total)


def listening(listener: Callable[[int, int | None], None] | None) -> contextvars.Token:
    """Install a progress listener (the reconcile runner does); reset with ``_progress.reset(token)``."""
    return _progress.set(listener)


def stop_listening(token: contextvars.Token) -> None:
    _progress.reset(token)


# --- discovery and adoption: what an account holds that Keyward may not manage yet ------------------------------
@dataclass(frozen=True)
class Observed:
    """A remote object as read from the platform: its id, a label, and its security-relevant facts (plain JSON,
    never a secret value). What the facts hold per kind is the observer's contract with the guardrails."""

    remote_id: str
    label: str
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Adopted:
    """What an adopter did with a batch: ``adopted`` maps remote id → new local object id, ``refused`` maps
    remote id → the reason (shown to the person on that object's row; nothing of it was created)."""

    adopted: Mapping[str, str] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Discoverable:
    """A kind of remote object discovery reads, and how Keyward takes it over.

    ``observe(client)`` yields every object of the kind on the account as ``Observed`` (paging through the
    platform's lists; never the whole account in memory). ``governed(remote_ids)`` says which of them a local
    row already governs: ``{remote_id: (object_id, workspace_id)}``. ``adopt(actor, workspace, observations)``
    creates the local rows for a batch of unmanaged observations in one transaction, changes nothing on the
    platform, and returns ``Adopted`` (the runner audits each object as ``platform.adopt``); None: observed only
    (the workspace-wide webhook). ``needs(observation)`` names the ``(kind, remote_id)`` objects that must be
    adopted first (a tool's secrets, a key's service account). ``order`` sorts kinds for discovery and adoption.
    """

    kind: str
    title: str
    order: int
    #: The audit trail's object type of the local rows adoption makes ("agents.agent").
    object_type: str
    observe: Callable[[PlatformClient], Iterable[Observed]]
    governed: Callable[[list[str]], Mapping[str, tuple[str, int | None]]]
    adopt: Callable[[Any, Any, list[Any]], Adopted] | None = None
    needs: Callable[[Any], Iterable[tuple[str, str]]] | None = None


_discoverables: dict[str, Discoverable] = {}
# Called with (account_id, workspace_ids touched or None) after a discovery run or an adoption: the guardrails.
_observation_listeners: list[Callable[[int, set[int] | None], None]] = []


def register_discoverable(discoverable: Discoverable) -> Discoverable:
    """Register a kind for discovery; an adoptable one also gets the drift page's "Adopt" for its objects unknown
    to Keyward."""
    _discoverables[discoverable.kind] = discoverable
    if discoverable.adopt is not None:
        register_drift_action(DriftAction(f"adopt_{discoverable.kind}", "Adopt into Keyward (nothing changes on the "
                                          "platform)", discoverable.kind, UNKNOWN_LOCALLY, _adopt_from_drift))
    return discoverable


def _adopt_from_drift(actor: Any, drift: Any) -> str:
    from project.sync.services.discovery import adopt_from_drift

    return adopt_from_drift(actor, drift)


def discoverables() -> list[Discoverable]:
    return sorted(_discoverables.values(), key=lambda d: (d.order, d.kind))


def discoverable(kind: str) -> Discoverable:
    try:
        return _discoverables[kind]
    except KeyError:
        raise LookupError(f"no discoverable kind {kind!r}") from None


def on_observations_changed(listener: Callable[[int, set[int] | None], None]) -> None:
    """Register ``listener(account_id, workspace_ids)``, called after a discovery run of the account (the
    workspace ids: None) and after an adoption (the workspaces adopted into). Registered once per process."""
    if listener not in _observation_listeners:
        _observation_listeners.append(listener)


def observation_listeners() -> list[Callable[[int, set[int] | None], None]]:
    return list(_observation_listeners)
