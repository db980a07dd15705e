"""Platform error text is redacted before it is stored in SyncJob.last_error and shown in the admin (issue 19,
item 6): key-shaped strings and secret values this process has handled never land there."""

from __future__ import annotations

import pytest
from django.urls import reverse

from project.logging import register_secret_value
from project.platform import errors
from project.sync import registry, services
from project.sync.models import SyncJob

pytestmark = pytest.mark.django_db

PLATFORM_KEY = "sk_" + "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
SECRET_VALUE = "registered-secret-value-Wq83"


@pytest.fixture
def echoing_platform(monkeypatch):
    """A handler whose platform refuses the change and echoes what it was sent in its error message."""
    def push(job, client):
        raise errors.PlatformError(f"invalid value {SECRET_VALUE!r} for header; key {PLATFORM_KEY} lacks access",
                                   status=422, code="invalid_request")

    register_secret_value(SECRET_VALUE)
    monkeypatch.setitem(registry._handlers, "claim_test", push)


def test_a_refused_change_stores_a_redacted_reason(echoing_platform, superuser, client):
    services.job_enqueue(kind="claim_test", object_id=1, nudge=False)
    services.outbox_drain(client=object(), time_budget=10)
    job = SyncJob.objects.get()
    assert job.state == SyncJob.State.FAILED and "invalid value" in job.last_error
    assert SECRET_VALUE not in job.last_error and PLATFORM_KEY not in job.last_error
    client.force_login(superuser)
    page = client.get(reverse("admin:sync_syncjob_change", args=[job.pk])).content.decode()
    assert SECRET_VALUE not in page and PLATFORM_KEY not in page


def test_a_retried_change_stores_a_redacted_reason_too(monkeypatch):
    def push(job, client):
        raise errors.Unavailable(f"upstream said: Authorization: Bearer {PLATFORM_KEY}", status=503)

    monkeypatch.setitem(registry._handlers, "claim_test", push)
    services.job_enqueue(kind="claim_test", object_id=2, nudge=False)
    services.outbox_drain(client=object(), time_budget=10, max_jobs=1)
    job = SyncJob.objects.get()
    assert "upstream said" in job.last_error and PLATFORM_KEY not in job.last_error
