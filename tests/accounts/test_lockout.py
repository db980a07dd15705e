from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client

from accounts import services
from project.audit.models import AuditEvent
from tests.accounts.conftest import VERIFY_URL, code_for, password_sign_in

pytestmark = pytest.mark.django_db


def _fail(client: Client, username: str, times: int, **extra: str) -> list:
    return [password_sign_in(client, username, password="not-the-password", **extra) for _ in range(times)]


def test_sign_in_locks_after_the_failure_limit_with_a_clear_page(staff, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    client = Client()
    responses = _fail(client, staff.username, 5)

    assert [r.status_code for r in responses[:4]] == [200] * 4
    locked = responses[4]
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(30 * 60)
    html = locked.content.decode()
    assert "Sign-in is locked" in html and "30 minutes" in html and "Traceback" not in html
    assert "no-store" in locked["Cache-Control"]
    # While locked, even the right password is refused.
    right = password_sign_in(client, staff.username)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_lockout_follows_the_configured_limit(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    responses = _fail(Client(), staff.username, 2)
    assert [r.status_code for r in responses] == [200, 429]


def test_lockout_holds_one_username_from_one_address_only(staff):
    _fail(Client(), staff.username, 5)
    elsewhere = password_sign_in(Client(), staff.username, REMOTE_ADDR="203.0.113.9")
    assert elsewhere.status_code == 302


def test_wrong_codes_count_towards_the_lockout_and_end_the_session(enrolled):
    client = Client()
    assert password_sign_in(client, enrolled.user.username).status_code == 302
    wrong = f"{(int(code_for(enrolled.device, 1)) + 1) % 1_000_000:06d}"
    responses = [client.post(VERIFY_URL, {"code": wrong}) for _ in range(5)]
    assert [r.status_code for r in responses[:4]] == [200] * 4
    assert responses[4].status_code == 429
    assert "_auth_user_id" not in client.session
    assert password_sign_in(Client(), enrolled.user.username).status_code == 429


def test_superuser_resets_a_lockout_and_it_is_audited(staff, superuser):
    _fail(Client(), staff.username, 5)
    attempt = AccessAttempt.objects.get(username=staff.username)
    admin_client = Client()
    admin_client.force_login(superuser)

    listing = admin_client.get("/admin/axes/accessattempt/?locked=yes")
    assert listing.status_code == 200 and staff.username in listing.content.decode()
    response = admin_client.post("/admin/axes/accessattempt/", {
        "action": "reset_lockout", "_selected_action": [attempt.pk]})

    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username=staff.username).exists()
    event = AuditEvent.objects.get(action="accounts.lockout_reset")
    assert event.actor_user == superuser
    assert (event.object_type, event.object_id, event.object_repr) == ("auth.user", str(staff.pk), staff.username)
    assert event.changes == {"ip_address": "127.0.0.1", "attempts_cleared": 1}
    assert password_sign_in(Client(), staff.username).status_code == 302


def test_reset_of_an_unknown_username_does_not_copy_it_into_the_audit(superuser):
    typed = "hunter2-oops-my-password"
    _fail(Client(), typed, 5)
    services.login_lockout_reset(actor=superuser, username=typed, ip_address="127.0.0.1")
    event = AuditEvent.objects.get(action="accounts.lockout_reset")
    assert typed not in str(event.__dict__)


@pytest.mark.parametrize("who", ["owner", "member", "outsider"])
def test_only_superusers_see_or_reset_lockouts(request, staff, who):
    _fail(Client(), staff.username, 5)
    attempt = AccessAttempt.objects.get(username=staff.username)
    client = Client()
    client.force_login(request.getfixturevalue(who))

    assert client.get("/admin/axes/accessattempt/").status_code == 403
    assert client.get(f"/admin/axes/accessattempt/{attempt.pk}/change/").status_code == 404
    response = client.post("/admin/axes/accessattempt/", {"action": "reset_lockout", "_selected_action": [attempt.pk]})
    assert response.status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    assert not AuditEvent.objects.filter(action="accounts.lockout_reset").exists()


def test_lockout_changelist_query_count_does_not_grow_with_rows(superuser, django_assert_num_queries):
    client = Client()
    client.force_login(superuser)
    client.get("/admin/axes/accessattempt/")  # warm the session and the content types

    def seed(n: int) -> None:
        AccessAttempt.objects.bulk_create(
            AccessAttempt(username=f"user{i}-{n}", ip_address="10.0.0.1", user_agent=f"ua{n}", http_accept="*/*",
                          path_info="/admin/login/", get_data="", post_data="", failures_since_start=1)
            for i in range(n))

    seed(10)
    # session, user (with devices and permissions), count, page; the session was renewed by the warm-up
    with django_assert_num_queries(4) as ten:
        assert client.get("/admin/axes/accessattempt/").status_code == 200
    seed(200)
    with django_assert_num_queries(len(ten.captured_queries)):
        assert client.get("/admin/axes/accessattempt/").status_code == 200
