"""The audit stream: every committed audit event, as one JSON object with OCSF-style field names, to the deployment's
SIEM: a webhook signed per Standard Webhooks (``https://...``) or syslog, RFC 5424 over TCP (octet-counted frames,
RFC 6587) or UDP (``syslog+tcp://host:port``, ``syslog+udp://host:port``). Off unless ``AUDIT_STREAM_URL`` is set.

At least once, in order: ``record()`` and ``record_many()`` write an ``AuditStreamEntry`` beside each event in the
same transaction; after commit the outbox's single ``audit_stream`` job is woken (and a periodic sweep wakes it in
case that nudge was lost). The job sends the waiting entries in id order and deletes each once the sink took it; on
the first failure it stops (raising a transient error: retried with backoff, dead-lettered in the sync page after
the last attempt, the entries kept), so nothing is skipped and nothing overtakes an event that failed. A worker
dying between a send and the delete sends that event again (the message id, ``webhook-id`` or syslog MSGID's
structured data, stays the same). The backlog (entries waiting, the oldest) shows on the audit trail's page.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min

from project import webhooks
from project.audit.models import AuditEvent, AuditStreamEntry
from project.outbound import address_problem
from project.platform import errors
from project.sync.kinds import SyncKind
from project.sync.registry import register

STREAM_OBJECT = "stream"
#: One run of the stream job sends for at most this long, then queues the next run (the lease stays short).
RUN_SECONDS = 20.0
BATCH = 200
SYSLOG_PRI = 13 * 8 + 6  # facility 13 (log audit), severity 6 (informational)

# OCSF: Account Change (IAM) for changes to people and machine identities, API Activity for everything else.
ACCOUNT_OBJECTS = ("auth.user", "workspaces.serviceaccount", "workspaces.roleassignment", "accounts.")
ACTIVITY = {"create": 1, "read": 2, "update": 3, "delete": 4}


def enabled() -> bool:
    return bool(getattr(settings, "AUDIT_STREAM_URL", ""))


# --- writing the backlog (called by record() and record_many()) -------------------------------------------------
def enqueue(events: Iterable[AuditEvent]) -> None:
    """Queue saved events for the stream, in the caller's transaction; wake the stream after commit."""
    entries = [AuditStreamEntry(event_id=e.pk, workspace_id=e.workspace_id) for e in events]
    if not entries:
        return
    AuditStreamEntry.objects.bulk_create(entries, batch_size=1000)
    _wake_after_commit()


class WakeAfterCommit:
    """The on-commit wake-up of one transaction (registered once however many events it records)."""

    __slots__ = ("ran",)

    def __init__(self) -> None:
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        wake()


def _wake_after_commit() -> None:
    if connection.in_atomic_block and any(isinstance(func, WakeAfterCommit) and not func.ran
                                          for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(WakeAfterCommit(), robust=True)


def wake() -> None:
    """Make sure the stream job is queued (coalesced: there is at most one pending)."""
    from project.sync.services import job_enqueue

    job_enqueue(kind=SyncKind.AUDIT_STREAM, object_id=STREAM_OBJECT, object_repr="audit stream")


def sweep() -> bool:
    """The periodic safety net: wake the stream when events wait and no job is queued or running."""
    from project.sync.models import SyncJob

    if not enabled() or not AuditStreamEntry.objects.exists():
        return False
    if SyncJob.objects.filter(kind=SyncKind.AUDIT_STREAM, object_id=STREAM_OBJECT,
                              state__in=SyncJob.OPEN_STATES).exists():
        return False
    wake()
    return True


def backlog() -> dict[str, Any]:
    """What waits: {"configured", "waiting", "oldest"} for the audit trail's page."""
    if not enabled() and not AuditStreamEntry.objects.exists():
        return {"configured": False, "waiting": 0, "oldest": None}
    summary = AuditStreamEntry.objects.aggregate(oldest=Min("created_at"))
    return {"configured": enabled(), "waiting": AuditStreamEntry.objects.count(), "oldest": summary["oldest"],
            "target": _target_label()}


def _target_label() -> str:
    parts = urlsplit(settings.AUDIT_STREAM_URL or "")
    return f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else ""


# --- the event as the SIEM sees it ---------------------------------------------------------------------------
def _activity(action: str) -> tuple[int, str]:
    verb = action.rsplit(".", 1)[-1]
    for word, activity_id in ACTIVITY.items():
        if verb.startswith(word):
            return activity_id, word.capitalize()
    return 99, verb.replace("_", " ").capitalize() or "Other"


def ocsf(event: AuditEvent) -> dict[str, Any]:
    """One event with field names from OCSF's API Activity (6003) / Account Change (3001) classes. Never a secret:
    the trail itself holds none (record() callers pass field names; secret fields show only that they changed)."""
    account = event.object_type.startswith(ACCOUNT_OBJECTS)
    class_uid, class_name = (3001, "Account Change") if account else (6003, "API Activity")
    activity_id, activity_name = _activity(event.action)
    when: datetime = event.created_at
    target = {"type": event.object_type, "uid": event.object_id, "name": event.object_repr}
    body: dict[str, Any] = {
        "time": int(when.timestamp() * 1000), "time_dt": when.isoformat(),
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": 3 if account else 6,
        "category_name": "Identity & Access Management" if account else "Application Activity",
        "activity_id": activity_id, "activity_name": activity_name, "type_uid": class_uid * 100 + activity_id,
        "severity_id": 1, "status_id": 1, "status": "Success",
        "action": event.action,
        "actor": {"user": {"type": event.actor_type, "name": event.actor_label,
                           "uid": str(event.actor_user_id) if event.actor_user_id else None}},
        "api": {"operation": event.action, "request": {"uid": event.request_id or None}},
        "src_endpoint": {"ip": event.ip},
        "resources": [target],
        "workspace": {"uid": str(event.workspace_id) if event.workspace_id is not None else None},
        "metadata": {"uid": str(event.pk), "version": "1.1.0", "correlation_uid": event.request_id or None,
                     "tenant_uid": str(event.workspace_id) if event.workspace_id is not None else None,
                     "product": {"name": "Keyward", "vendor_name": "Keyward"}},
        "unmapped": {"changes": event.changes},
    }
    if account:
        body["user"] = {"type": event.object_type, "uid": event.object_id, "name": event.object_repr}
    return body


# --- sinks -----------------------------------------------------------------------------------------------------
class _Webhook:
    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret

    def send(self, body: dict[str, Any], event_id: int) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = webhooks.signed_headers(self.secret, f"msg_keyward_audit_{event_id}", data)
        webhooks.post(self.url, data, headers, what="the audit stream's webhook")

    def close(self) -> None:
        pass


class _Syslog:
    """RFC 5424 messages; over TCP framed by octet counting (RFC 6587), over UDP one datagram each."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.tcp = parts.scheme == "syslog+tcp"
        self.host, self.port = parts.hostname or "", parts.port or 514
        self.hostname = (socket.gethostname() or "-")[:255].replace(" ", "-")
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM if self.tcp else socket.SOCK_DGRAM)
        except OSError:
            raise errors.Unavailable("cannot resolve the syslog host", code="receiver_unavailable") from None
        family, kind, proto, _, address = infos[0]
        problem = address_problem(ipaddress.ip_address(address[0]))
        if problem:
            raise errors.ValidationFailed(f"the syslog host resolves to {problem}; Keyward does not call it",
                                          code="receiver_refused")
        sock = socket.socket(family, kind, proto)
        sock.settimeout(10)
        try:
            if self.tcp:
                sock.connect(address)
        except OSError as exc:
            sock.close()
            raise errors.Unavailable(f"could not reach the syslog receiver ({type(exc).__name__})",
                                     code="receiver_unavailable") from None
        self._sock, self._address = sock, address[:2]
        return sock

    def frame(self, body: dict[str, Any], event_id: int) -> bytes:
        when = body["time_dt"]
        data = json.dumps(body, separators=(",", ":"))
        sd = f'[keyward@32473 eventId="{event_id}"]'
        return f"<{SYSLOG_PRI}>1 {when} {self.hostname} keyward - audit {sd} {data}".encode()

    def send(self, body: dict[str, Any], event_id: int) -> None:
        message = self.frame(body, event_id)
        sock = self._connect()
        try:
            if self.tcp:
                sock.sendall(f"{len(message)} ".encode() + message)
            else:
                sock.sendto(message, self._address)  # type: ignore[arg-type]
        except OSError as exc:
            self.close()
            raise errors.Unavailable(f"the syslog receiver dropped the connection ({type(exc).__name__})",
                                     code="receiver_unavailable") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def sink() -> _Webhook | _Syslog | None:
    url = settings.AUDIT_STREAM_URL
    if not url:
        return None
    if url.startswith("syslog+"):
        return _Syslog(url)
    return _Webhook(url, settings.AUDIT_STREAM_SECRET)


@register(SyncKind.AUDIT_STREAM, platform=False)
def push_stream(job: Any, client: Any) -> str | None:
    """Send the waiting events in order; stop at the first failure (raised: the outbox retries with backoff)."""
    target = sink()
    if target is None:
        return None  # the stream was turned off: the backlog stays, visible, until it is turned on again
    deadline = time.monotonic() + RUN_SECONDS
    try:
        while time.monotonic() < deadline:
            batch = list(AuditStreamEntry.objects.select_related("event").order_by("id")[:BATCH])
            if not batch:
                return None
            for entry in batch:
                target.send(ocsf(entry.event), entry.event_id)
                AuditStreamEntry.objects.filter(pk=entry.pk).delete()
    finally:
        target.close()
    wake()  # more waits: the next run follows this one (never two at once: one object, one running job)
    return None
