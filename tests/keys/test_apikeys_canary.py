"""Canary: a key issued (and a successor rotated) through the admin appears on its one page and nowhere else:
not in any database table, the sessions, the logs, the audit trail, the outbox, or any later page."""

import base64
import logging
import uuid
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.urls import reverse

from keys import services
from keys.models import ApiKey, key_digest
from tests.conftest import SECRET_SHAPE, drain
from tests.factories import environment, make_platform_usage

pytestmark = pytest.mark.django_db


def _every_stored_value() -> str:
    """Every value of every column of every table, as text (raw SQL: no model, manager or field hides one)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - our own table names
            for row in cursor.fetchall():
                chunks.extend(bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                              for v in row)
    for session in Session.objects.all():
        chunks.append(str(session.get_decoded()))
    return "\n".join(chunks)


def _forms_of(secret: str) -> list[str]:
    body = secret[3:-4]  # the part no hint shows
    return [secret, body, body[:20], base64.b64encode(secret.encode()).decode(), secret.upper()]


def test_issued_secret_appears_nowhere_but_its_one_page(owner_client, owner, account, emulator, clock, caplog,
                                                        django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    add = reverse("admin:keys_apikey_add")
    form = {"request_uuid": str(uuid.uuid4()), "service_account": account.pk,
            "environment": environment(account.workspace).pk, "name": "canary", "scopes": ["workspace_read"],
            "credit_quota": "100", "allowed_ips": "127.0.0.1", "expires_at": ""}
    with django_capture_on_commit_callbacks(execute=True):
        page = owner_client.post(add, form).content.decode()
    (first,) = set(SECRET_SHAPE.findall(page))
    key = ApiKey.objects.get()

    # Everything that can happen to a key afterwards: sync, usage, rotation, leak check, revocation, sweeps.
    clock.advance(seconds=61)
    drain()
    emulator.add_usage([make_platform_usage(first, clock.now - timedelta(minutes=5))])
    services.api_key_usage_ingest()
    with django_capture_on_commit_callbacks(execute=True):
        page = owner_client.post(reverse("admin:keys_apikey_rotate", args=[key.pk]),
                                 {"request_uuid": str(uuid.uuid4()), "overlap_days": "0"}).content.decode()
    (second,) = set(SECRET_SHAPE.findall(page))
    owner_client.post(reverse("admin:keys_apikey_leak_check"), {"text": f"oops {first} and {second}"})
    with django_capture_on_commit_callbacks(execute=True):
        successor = ApiKey.objects.get(predecessor=key)
        owner_client.post(reverse("admin:keys_apikey_revoke", args=[successor.pk]), {"reason": "canary"})
    clock.advance(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_keys_sweep()
    drain()

    owner_client.force_login(owner)  # two days on, the session has expired
    stored = _every_stored_value()
    pages = "".join(owner_client.get(url).content.decode() for url in (
        reverse("admin:keys_apikey_changelist"), reverse("admin:keys_apikey_change", args=[key.pk]),
        reverse("admin:keys_apikey_change", args=[successor.pk]), reverse("admin:audit_auditevent_changelist"),
        reverse("admin:sync_syncjob_changelist"), reverse("admin:alerts_alert_changelist"),
        reverse("admin:keys_apikey_add")))
    logs = caplog.text + "".join(str(r.args) + str(r.msg) for r in caplog.records)
    for secret in (first, second):
        for form_of_it in _forms_of(secret):
            assert form_of_it not in stored, "a secret is stored in the database"
            assert form_of_it not in pages, "a secret shows on a later page"
            assert form_of_it not in logs, "a secret is in the logs"
    # What is kept instead: hint and digest.
    assert ApiKey.objects.get(pk=key.pk).digest == key_digest(first)
    assert ApiKey.objects.get(pk=key.pk).hint == first[-4:] and f"…{first[-4:]}" in pages
    assert ApiKey.objects.get(pk=key.pk).state == "revoked" and successor.digest == key_digest(second)
