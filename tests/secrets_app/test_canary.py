"""The issue's "done means": a canary value written through the admin appears nowhere afterwards."""

import logging

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse

from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from secrets_app.models import Secret, Tool

pytestmark = pytest.mark.django_db

CANARY = "kw-canary-7Gq2vX9pLm4RtY8wZ3nB"
SECOND = "kw-canary-second-Hh5kQ1sNv6Jd"


def _pages(client, secret, tool) -> dict[str, str]:
    urls = {
        "secret list": reverse("admin:secrets_app_secret_changelist"),
        "secret change": reverse("admin:secrets_app_secret_change", args=[secret.pk]),
        "secret history": reverse("admin:secrets_app_secret_history", args=[secret.pk]),
        "tool change": reverse("admin:secrets_app_tool_change", args=[tool.pk]),
        "tool list": reverse("admin:secrets_app_tool_changelist"),
        "audit list": reverse("admin:audit_auditevent_changelist"),
    }
    for event in AuditEvent.objects.all():
        urls[f"audit event {event.pk}"] = reverse("admin:audit_auditevent_change", args=[event.pk])
    try:
        urls["sync jobs"] = reverse("admin:sync_syncjob_changelist")
        for job in SyncJob.objects.filter(workspace_id__isnull=False):  # the audit stream's job: superusers only
            urls[f"sync job {job.pk}"] = reverse("admin:sync_syncjob_change", args=[job.pk])
    except NoReverseMatch:
        pass
    pages = {}
    for name, url in urls.items():
        response = client.get(url, follow=True)
        assert response.status_code == 200, (name, response.status_code)
        pages[name] = response.content.decode()
    return pages


def _stored_value(secret) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [secret.pk])
        return cursor.fetchone()[0]


def _assert_absent(where: str, text: str) -> None:
    for canary in (CANARY, SECOND):
        assert canary not in text, f"canary found in {where}"
        assert canary[8:24] not in text, f"part of the canary found in {where}"


@pytest.fixture
def siem():
    """A receiver on loopback for the audit stream and a notification webhook."""
    from tests.receivers import http_receiver

    yield from http_receiver()


def test_a_canary_written_through_the_admin_appears_nowhere(owner_client, workspace, platform, emulator, caplog,
                                                          django_capture_on_commit_callbacks, settings, siem):
    from project import webhooks
    from project.actors import SYSTEM
    from project.alerts import services as alert_services

    caplog.set_level(logging.DEBUG)
    settings.AUDIT_STREAM_URL, settings.AUDIT_STREAM_SECRET = f"{siem.url}/audit", webhooks.new_secret()
    with django_capture_on_commit_callbacks(execute=True):
        hook, _ = alert_services.notification_channel_save(actor=SYSTEM, workspace=workspace, name="hook",
                                                           kind="webhook", url=f"{siem.url}/alerts")
        alert_services.notification_rule_save(actor=SYSTEM, workspace=workspace, name="all", severities=[],
                                              kinds=[], channels=[hook], is_default=True)
    add = reverse("admin:secrets_app_secret_add")
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(add, {"workspace": workspace.pk, "name": "crm_token", "description": "CRM",
                                           "value": CANARY})
    assert response.status_code == 302
    secret = Secret.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("admin:secrets_app_tool_add"), {
            "workspace": workspace.pk, "name": "lookup", "description": "Find a customer",
            "url": "https://crm.example/api", "method": "POST", "response_timeout_secs": "20",
            "headers": "Authorization: {{ secret__crm_token }}"})
    assert response.status_code == 302
    tool = Tool.objects.get()
    change = reverse("admin:secrets_app_secret_change", args=[secret.pk])
    with django_capture_on_commit_callbacks(execute=True):  # an edit that keeps the value
        assert owner_client.post(change, {"name": "crm_token", "description": "CRM v2", "value": ""}).status_code == 302

    # It went where it should: encrypted at rest, and to the platform.
    stored = _stored_value(secret)
    assert stored.startswith("gAAAAA") and CANARY not in stored
    assert Fernet(settings.FIELD_ENCRYPTION_KEY[0]).decrypt(stored.encode()).decode() == CANARY
    secret.refresh_from_db(fields=["remote_id"])
    assert emulator.secret_value(secret.remote_id) == CANARY

    # And nowhere else.
    for name, page in _pages(owner_client, secret, tool).items():
        _assert_absent(name, page)
    refused = owner_client.get(reverse("admin:secrets_app_secret_delete", args=[secret.pk]), follow=True)
    assert "used by the tool lookup" in refused.content.decode()
    _assert_absent("delete refusal", refused.content.decode())
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(reverse("admin:secrets_app_tool_delete", args=[tool.pk]), {"post": "yes"})
    confirmation = owner_client.get(reverse("admin:secrets_app_secret_delete", args=[secret.pk]))
    assert confirmation.status_code == 200 and "Are you sure" in confirmation.content.decode()
    _assert_absent("delete confirmation", confirmation.content.decode())

    # The audit stream and the alert deliveries carried everything that happened, and no canary.
    with django_capture_on_commit_callbacks(execute=True):
        alert_services.alert_raise(actor=SYSTEM, workspace=workspace, kind="api_key_exposed", title="Exposed",
                                   dedup_key="canary", target=secret)
    from project.sync.services import outbox_drain

    outbox_drain(time_budget=30)
    paths = [r.path for r in siem.requests]
    assert paths.count("/alerts") == 1 and paths.count("/audit") >= AuditEvent.objects.count()
    for received in siem.requests:
        _assert_absent(f"what {received.path} received", received.body.decode())

    _assert_absent("audit table", str(list(AuditEvent.objects.values())))
    _assert_absent("admin log table", str(list(LogEntry.objects.values())))
    _assert_absent("sync job table", str(list(SyncJob.objects.values())))
    assert SyncJob.objects.filter(kind="secret", state="done").exists()
    logged = caplog.text + "".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    _assert_absent("captured logs", logged)


@pytest.mark.parametrize("debug", [True, False])
def test_a_server_error_while_saving_a_secret_shows_no_value(owner, workspace, settings, monkeypatch, caplog, debug):
    settings.DEBUG = debug
    caplog.set_level(logging.DEBUG)
    secret = Secret.objects.create(workspace=workspace, name="crm_token", value="before-error-Tt01")

    def broken(**kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr("secrets_app.services.secrets.job_enqueue", broken)
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.post(reverse("admin:secrets_app_secret_change", args=[secret.pk]),
                           {"name": "crm_token", "description": "", "value": SECOND})
    assert response.status_code == 500
    page = response.content.decode()
    if debug:
        assert "outbox unavailable" in page and "RuntimeError" in page  # the technical page, with locals
    _assert_absent("server error page", page)
    _assert_absent("error log", caplog.text + "".join(r.exc_text or "" for r in caplog.records))
    assert Secret.objects.get().value == "before-error-Tt01"


def test_a_secret_value_that_reaches_a_log_line_is_redacted(workspace, caplog, monkeypatch, drain):
    import project.logging

    secret = Secret.objects.create(workspace=workspace, name="crm_token", value="log-canary-Xx01-value")
    # A fresh worker process: it has never seen the value until the sync handler decrypts it for the push.
    monkeypatch.setattr(project.logging, "_known_values", set())
    from project.sync.services import job_enqueue

    job_enqueue(kind="secret", object_id=secret.pk, workspace_id=workspace.pk)
    drain()
    logging.getLogger("careless.library").warning("request body was %s", {"value": "log-canary-Xx01-value"})
    logging.getLogger("careless.library").warning("plain log-canary-Xx01-value")
    assert "log-canary-Xx01-value" not in caplog.text and caplog.text.count("[redacted]") >= 2
