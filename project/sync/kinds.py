"""The catalogue of sync kinds: every kind of object the outbox carries to the platform, in one place.

The outbox knows kinds, not apps. An app that syncs objects of a kind names it from here (never as a bare
string) when it enqueues a job and when it registers the kind's push handler in its ``sync.py``
(``@register(SyncKind.AGENT)``). ``job_enqueue`` refuses a kind that is not listed, so a typo fails at the change
instead of leaving a job no worker can run; the system check ``sync.E001``/``sync.E002`` (``checks.py``) stops the
start when a listed kind has no push handler or a registered one serves a kind that is not listed.
"""

from __future__ import annotations

from enum import StrEnum


class SyncKind(StrEnum):
    """A kind of object with a copy on the platform. The value is stored in ``SyncJob.kind`` and ``Drift.kind``:
    never rename one without a data migration."""

    AGENT = "agent"
    API_KEY = "api_key"
    AUTH_CONNECTION = "auth_connection"
    REFRESH_TOOL = "refresh_tool"
    SECRET = "secret"
    SERVICE_ACCOUNT = "service_account"
    TOOL = "tool"
    # Deliveries that never touch the platform (registered with ``platform=False``): an alert notification to
    # one channel (the object is a project.alerts Delivery), and the audit stream's cursor (one object).
    NOTIFICATION = "notification"
    AUDIT_STREAM = "audit_stream"


# What job_enqueue and the system check accept, read at call time (the sync tests add their own kinds here).
CATALOGUE: frozenset[str] = frozenset(SyncKind)


class UnknownSyncKind(ValueError):
    """A job was asked for a kind outside the catalogue."""


def require_known(kind: str) -> str:
    """``kind`` if the catalogue lists it; raises UnknownSyncKind naming it otherwise."""
    if kind not in CATALOGUE:
        raise UnknownSyncKind(f"{kind!r} is not a sync kind (the catalogue, project/sync/kinds.py, lists "
                              f"{', '.join(sorted(CATALOGUE))})")
    return kind
