"""What each signed-in admin request loads: the user, the verified device and the permissions in one query,
and the session renewed once a minute instead of written every time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import middleware, services
from tests.accounts.conftest import VERIFY_URL, code_for, password_sign_in
from tests.factories import grant
from workspaces.models import RoleAssignment

pytestmark = pytest.mark.django_db


def _verified_client(enrolled) -> Client:
    client = Client()
    password_sign_in(client, enrolled.user.username)
    assert client.post(VERIFY_URL, {"code": code_for(enrolled.device, 1)}).status_code == 302
    return client


def _statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries
            if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def test_a_verified_admin_request_loads_session_and_person_in_two_queries(enrolled, workspace, otp_required):
    grant(enrolled.user, "Viewer", workspace)
    client = _verified_client(enrolled)
    client.get("/admin/")  # renews the session once, then not again within the minute
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/admin/")
    assert response.status_code == 200
    statements = _statements(captured)
    # The session row; the user with devices and permissions; then the index page's own "recent actions".
    assert "django_session" in statements[0]
    assert all(t in statements[1] for t in ("auth_user", "otp_totp_totpdevice", "otp_static_staticdevice",
                                            "keys_roleassignment"))
    assert len(statements) == 3 and "django_admin_log" in statements[2], statements


def test_the_second_factor_is_still_checked_against_the_device(enrolled, otp_required):
    client = _verified_client(enrolled)
    assert client.get("/admin/").status_code == 200
    enrolled.device.confirmed = False
    enrolled.device.save()
    response = client.get("/admin/")
    assert response.status_code == 302 and "two-factor" in response["Location"]  # an unconfirmed one verifies nothing
    assert DEVICE_ID_SESSION_KEY not in client.session  # and the session forgets it, as django-otp does


def test_a_removed_device_ends_the_verified_session(enrolled, otp_required):
    client = _verified_client(enrolled)
    services.otp_device_remove(actor=enrolled.user, user=enrolled.user)
    assert client.get("/admin/agents/agent/").status_code == 302


def test_another_users_device_does_not_verify_a_session(enrolled, superuser, otp_required):
    theirs = services.otp_device_enrol(actor=superuser, user=superuser)
    services.otp_device_confirm(actor=superuser, device=theirs, code=code_for(theirs))
    client = Client()
    client.force_login(enrolled.user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = theirs.persistent_id
    session.save()
    assert client.get("/admin/")["Location"].startswith(VERIFY_URL)


def test_a_recovery_code_session_is_recognised_too(enrolled, otp_required):
    client = Client()
    password_sign_in(client, enrolled.user.username)
    assert client.post(VERIFY_URL, {"code": enrolled.recovery_codes[0]}).status_code == 302
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("otp_static.staticdevice/")
    assert client.get("/admin/").status_code == 200


def test_permissions_read_with_the_user_match_the_rules(enrolled, workspace, other_workspace, otp_required):
    """Expired assignments grant nothing; each workspace keeps its own permissions."""
    grant(enrolled.user, "Viewer", workspace)
    admin_there = grant(enrolled.user, "Admin", other_workspace)
    client = _verified_client(enrolled)
    assert client.get("/admin/workspaces/workspace/").status_code == 200
    assert client.get(f"/admin/workspaces/workspace/{other_workspace.pk}/change/").status_code == 200
    RoleAssignment.objects.filter(pk=admin_there.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/admin/workspaces/workspace/{other_workspace.pk}/change/").status_code != 200  # not there now
    assert client.get(f"/admin/workspaces/workspace/{workspace.pk}/change/").status_code == 200  # still a viewer here


def test_the_idle_timeout_slides_once_a_minute(enrolled, otp_required, monkeypatch, settings):
    client = _verified_client(enrolled)
    key = client.session.session_key
    clock = [1_900_000_000]
    monkeypatch.setattr(middleware.time, "time", lambda: clock[0])  # after the sign-in: TOTP reads the clock too

    def expiry():
        return Session.objects.get(session_key=key).expire_date

    client.get("/admin/")
    first = expiry()
    clock[0] += 30
    client.get("/admin/")
    assert expiry() == first  # within the minute: read, not written
    clock[0] += settings.SESSION_REFRESH_SECONDS
    client.get("/admin/")
    assert expiry() > first  # a minute on: renewed, the idle timeout counts from now again


def test_anonymous_requests_get_no_session(db):
    client = Client()
    client.get("/healthz")
    client.get("/admin/login/")
    assert Session.objects.count() == 0
