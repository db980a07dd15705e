"""The audit stream: every committed audit event, once and in order, to a signed webhook or to syslog (RFC 5424 over
TCP and UDP) on loopback, through the outbox; a receiver that is down for a while loses nothing; the backlog shows
on the audit trail's page; record() and record_many() both feed it; OCSF-style fields and never a secret."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from project import webhooks
from project.actors import SYSTEM
from project.audit import stream
from project.audit.models import AuditStreamEntry
from project.audit.services import diff, event, record, record_many
from project.sync.models import SyncJob
from project.sync.services import outbox_drain
from tests.conftest import login
from tests.receivers import HttpReceiver, SyslogListener, http_receiver, syslog_listener

pytestmark = pytest.mark.django_db
SECRET = webhooks.new_secret()
RFC5424 = re.compile(r'^<110>1 (\S+) (\S+) keyward - audit \[keyward@32473 eventId="(\d+)"\] (\{.*\})$')


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    yield from http_receiver()


@pytest.fixture
def webhook_stream(settings, receiver):
    settings.AUDIT_STREAM_URL = f"{receiver.url}/siem"
    settings.AUDIT_STREAM_SECRET = SECRET
    settings.SYNC_BACKOFF_BASE_SECONDS = 0
    settings.SYNC_MAX_ATTEMPTS = 3
    return receiver


def _events(workspace_ids, count, capture, start=0):
    with capture(execute=True):
        for i in range(start, start + count):
            ws = workspace_ids[i % len(workspace_ids)]
            record(actor=SYSTEM, action="secret.update", object_type="secrets_app.secret", object_id=i,
                   object_repr=f"s{i}", workspace_id=ws, changes={"value": "[changed]"})


def test_every_event_once_in_order_with_the_receiver_down_in_the_middle(
        webhook_stream, workspace, other_workspace, django_capture_on_commit_callbacks, superuser):
    receiver = webhook_stream
    ids = [workspace.pk, other_workspace.pk]
    receiver.statuses = [200] * 4 + [503] * 3  # down after the fourth event, for the job's three attempts
    _events(ids, 10, django_capture_on_commit_callbacks)
    outbox_drain(time_budget=30)
    job = SyncJob.objects.get(kind="audit_stream")
    assert job.state == SyncJob.State.DEAD and "HTTP 503" in job.last_error
    assert AuditStreamEntry.objects.count() == 6  # kept, visible
    page = login(superuser).get("/admin/audit/auditevent/").content.decode()
    assert "6 events waiting" in page
    _events(ids, 5, django_capture_on_commit_callbacks, start=10)  # the receiver is back; new events wake the stream
    outbox_drain(time_budget=30)
    assert AuditStreamEntry.objects.count() == 0
    delivered = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.ok]
    assert sorted(int(e["resources"][0]["uid"]) for e in delivered) == list(range(15))  # each exactly once
    for ws in ids:
        mine = [int(e["metadata"]["uid"]) for e in delivered if e["workspace"]["uid"] == str(ws)]
        assert mine == sorted(mine)  # in order per workspace
    assert "up to date" in login(superuser).get("/admin/audit/auditevent/").content.decode()


def test_the_body_has_ocsf_field_names_and_no_secret(webhook_stream, workspace, django_capture_on_commit_callbacks):
    from project.context import RequestContext, activate, deactivate

    token = activate(RequestContext(request_id="req-42", ip="203.0.113.9"))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            record(actor=SYSTEM, action="secret.update", object_type="secrets_app.secret", object_id=7,
                   object_repr="db-password", workspace_id=workspace.pk,
                   changes=diff({"value": "hunter2-canary"}, {"value": "s3cret-canary"}, secret_fields=["value"]))
    finally:
        deactivate(token)
    outbox_drain(time_budget=30)
    [got] = webhook_stream.requests
    body = got.json()
    assert body["class_name"] == "API Activity" and body["activity_name"] == "Update" and body["time"] > 0
    assert body["actor"]["user"]["name"] == "system" and body["action"] == "secret.update"
    assert body["resources"] == [{"type": "secrets_app.secret", "uid": "7", "name": "db-password"}]
    assert body["workspace"]["uid"] == str(workspace.pk) and body["src_endpoint"]["ip"] == "203.0.113.9"
    assert body["api"]["request"]["uid"] == "req-42"
    assert "canary" not in got.body.decode()


def test_record_many_feeds_the_stream_and_one_wake_per_transaction(webhook_stream, workspace,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        record_many([event(actor=SYSTEM, action="platform.adopt", object_type="agents.agent", object_id=i,
                           workspace_id=workspace.pk) for i in range(5)])
        record(actor=SYSTEM, action="agent.update", object_type="agents.agent", object_id=9,
               workspace_id=workspace.pk)
    assert sum(1 for c in callbacks if isinstance(c, stream.WakeAfterCommit)) == 1
    outbox_drain(time_budget=30)
    assert [r.json()["resources"][0]["uid"] for r in webhook_stream.requests] == ["0", "1", "2", "3", "4", "9"]


def test_no_stream_no_backlog(settings, workspace):
    settings.AUDIT_STREAM_URL = ""
    record(actor=SYSTEM, action="x.update", object_type="x.y", object_id=1, workspace_id=workspace.pk)
    assert AuditStreamEntry.objects.count() == 0


def test_the_periodic_sweep_wakes_a_stream_whose_nudge_was_lost(webhook_stream, workspace):
    record(actor=SYSTEM, action="x.update", object_type="x.y", object_id=1, workspace_id=workspace.pk)
    assert not SyncJob.objects.filter(kind="audit_stream").exists()  # the commit's wake-up never ran
    assert stream.sweep() is True and stream.sweep() is False
    outbox_drain(time_budget=30)
    assert len(webhook_stream.requests) == 1 and AuditStreamEntry.objects.count() == 0


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_syslog_rfc5424(protocol, settings, workspace, django_capture_on_commit_callbacks):
    listener: SyslogListener
    for listener in syslog_listener(protocol):
        settings.AUDIT_STREAM_URL = f"syslog+{protocol}://127.0.0.1:{listener.port}"
        _events([workspace.pk], 3, django_capture_on_commit_callbacks)
        outbox_drain(time_budget=30)
        messages = listener.wait_for(3)
        assert len(messages) == 3 and AuditStreamEntry.objects.count() == 0
        parsed = [RFC5424.match(m) for m in messages]
        assert all(parsed), messages
        bodies = [json.loads(m.group(4)) for m in parsed]
        assert [b["resources"][0]["uid"] for b in bodies] == ["0", "1", "2"]
        assert all(m.group(3) == b["metadata"]["uid"] for m, b in zip(parsed, bodies, strict=True))


def test_syslog_receiver_down_keeps_the_backlog(settings, workspace, django_capture_on_commit_callbacks):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    settings.AUDIT_STREAM_URL = f"syslog+tcp://127.0.0.1:{port}"
    settings.SYNC_BACKOFF_BASE_SECONDS = 0
    settings.SYNC_MAX_ATTEMPTS = 2
    _events([workspace.pk], 2, django_capture_on_commit_callbacks)
    outbox_drain(time_budget=30)
    job = SyncJob.objects.get(kind="audit_stream")
    assert job.state == SyncJob.State.DEAD and "could not reach the syslog receiver" in job.last_error
    assert AuditStreamEntry.objects.count() == 2
