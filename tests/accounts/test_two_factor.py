from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from project.audit.models import AuditEvent
from tests.accounts.conftest import (
    CONFIRM_URL,
    SETUP_URL,
    STATUS_URL,
    VERIFY_URL,
    code_for,
    password_sign_in,
)

pytestmark = pytest.mark.django_db


def _signed_in_without_code(user) -> Client:
    client = Client()
    response = password_sign_in(client, user.username)
    assert response.status_code == 302
    return client


def _verified(user, device, steps_ahead: int = 1) -> Client:
    client = _signed_in_without_code(user)
    response = client.post(VERIFY_URL, {"code": code_for(device, steps_ahead), "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    return client


# --- enrolment ---------------------------------------------------------------------------------------------
def test_enrolment_end_to_end_from_first_sign_in_to_admin(staff, otp_required):
    client = Client()
    response = password_sign_in(client, staff.username)
    assert response.status_code == 302 and response["Location"].startswith(SETUP_URL)
    # Every admin page sends the person to enrolment first.
    assert client.get("/admin/")["Location"].startswith(SETUP_URL)
    assert client.get("/admin/auth/user/")["Location"].startswith(SETUP_URL)

    intro = client.get(SETUP_URL)
    assert intro.status_code == 200 and not TOTPDevice.objects.filter(user=staff).exists()

    page = client.post(SETUP_URL, {"next": "/admin/"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    device = TOTPDevice.objects.get(user=staff)
    assert device.confirmed is False
    html = page.content.decode()
    assert "data:image/svg+xml;base64," in html and "otpauth://totp/Keyward" in html

    done = client.post(CONFIRM_URL, {"code": code_for(device), "next": "/admin/"})
    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    device.refresh_from_db()
    assert device.confirmed is True
    codes = list(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))
    assert len(codes) == 10
    assert all(code in done.content.decode() for code in codes)
    assert "shown only on this page" in done.content.decode()

    # Confirming proved the second factor: the admin opens at once.
    assert client.get("/admin/").status_code == 200
    actions = list(AuditEvent.objects.filter(actor_user=staff).order_by("id").values_list("action", flat=True))
    assert actions[-2:] == ["accounts.otp_enrol_started", "accounts.otp_device_confirmed"]


def test_enrolment_refuses_a_wrong_code_and_does_not_show_the_key_again(staff, otp_required):
    client = _signed_in_without_code(staff)
    client.post(SETUP_URL)
    device = TOTPDevice.objects.get(user=staff)
    wrong = f"{(int(code_for(device)) + 1) % 1_000_000:06d}"

    response = client.post(CONFIRM_URL, {"code": wrong})

    assert response.status_code == 200
    assert "That code is not valid" in response.content.decode()
    assert device.key not in response.content.decode() and "otpauth://" not in response.content.decode()
    device.refresh_from_db()
    assert device.confirmed is False and device.throttling_failure_count == 1
    assert client.get("/admin/")["Location"].startswith(SETUP_URL)
    assert AuditEvent.objects.filter(action="accounts.otp_enrol_failed", actor_user=staff).count() == 1


def test_starting_setup_again_replaces_the_unconfirmed_key(staff, otp_required):
    client = _signed_in_without_code(staff)
    client.post(SETUP_URL)
    first = TOTPDevice.objects.get(user=staff)
    client.post(SETUP_URL)
    second = TOTPDevice.objects.get(user=staff)
    assert first.pk != second.pk and first.key != second.key


def test_setup_is_refused_to_a_password_only_session_of_someone_with_a_device(enrolled):
    client = _signed_in_without_code(enrolled.user)
    response = client.post(SETUP_URL)
    assert response.status_code == 302 and response["Location"].startswith(VERIFY_URL)
    assert TOTPDevice.objects.filter(user=enrolled.user).count() == 1


def test_enrol_service_refuses_someone_else(staff, superuser):
    with pytest.raises(PermissionDenied):
        services.otp_device_enrol(actor=superuser, user=staff)


# --- the second sign-in step --------------------------------------------------------------------------------
def test_sign_in_asks_for_the_code_after_the_password(enrolled):
    client = Client()
    response = password_sign_in(client, enrolled.user.username, next_url="/admin/auth/user/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY_URL)
    assert client.get("/admin/")["Location"].startswith(VERIFY_URL)

    response = client.post(VERIFY_URL, {"code": code_for(enrolled.device, 1), "next": "/admin/auth/user/"})

    assert response.status_code == 302 and response["Location"] == "/admin/auth/user/"
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action="accounts.otp_verified", changes__method="totp").count() == 1


def test_wrong_code_at_sign_in_is_refused(enrolled):
    client = _signed_in_without_code(enrolled.user)
    wrong = f"{(int(code_for(enrolled.device, 1)) + 1) % 1_000_000:06d}"

    response = client.post(VERIFY_URL, {"code": wrong})

    assert response.status_code == 200 and "That code is not valid" in response.content.decode()
    assert client.get("/admin/")["Location"].startswith(VERIFY_URL)
    assert AuditEvent.objects.filter(action="accounts.otp_failed", actor_user=enrolled.user).count() == 1


def test_a_used_code_cannot_be_replayed(enrolled):
    code = code_for(enrolled.device, 1)
    first = _signed_in_without_code(enrolled.user)
    assert first.post(VERIFY_URL, {"code": code})["Location"] == "/admin/"

    second = _signed_in_without_code(enrolled.user)
    assert second.post(VERIFY_URL, {"code": code}).status_code == 200
    assert second.get("/admin/")["Location"].startswith(VERIFY_URL)


def test_recovery_code_signs_in_once(enrolled):
    code = enrolled.recovery_codes[0]
    client = _signed_in_without_code(enrolled.user)
    response = client.post(VERIFY_URL, {"code": code.upper()})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    event = AuditEvent.objects.get(action="accounts.otp_verified")
    assert event.changes == {"method": "recovery_code", "recovery_codes_left": 9}

    again = _signed_in_without_code(enrolled.user)
    response = again.post(VERIFY_URL, {"code": code})
    assert response.status_code == 200 and "That code is not valid" in response.content.decode()
    assert again.get("/admin/")["Location"].startswith(VERIFY_URL)


def test_device_holders_are_asked_for_the_code_even_when_not_required(enrolled, settings):
    settings.OTP_REQUIRED = False
    client = _signed_in_without_code(enrolled.user)
    assert client.get("/admin/")["Location"].startswith(VERIFY_URL)


def test_next_pointing_elsewhere_is_ignored(enrolled):
    client = _signed_in_without_code(enrolled.user)
    response = client.post(VERIFY_URL, {"code": code_for(enrolled.device, 1), "next": "https://evil.example/"})
    assert response["Location"] == "/admin/"


def test_an_unverified_session_can_sign_out(enrolled):
    client = _signed_in_without_code(enrolled.user)
    response = client.post("/admin/logout/")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


# --- OTP_REQUIRED -------------------------------------------------------------------------------------------
def test_otp_required_sends_staff_without_device_to_enrolment(staff, otp_required):
    client = Client()
    client.force_login(staff)
    for url in ("/admin/", "/admin/agents/agent/", "/admin/password_change/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(SETUP_URL), url


def test_otp_required_refuses_unverified_sessions(enrolled, otp_required):
    client = Client()
    client.force_login(enrolled.user)
    response = client.get("/admin/agents/agent/")
    assert response.status_code == 302 and response["Location"].startswith(VERIFY_URL)
    assert client.get("/admin/login/")["Location"].startswith(VERIFY_URL)


def test_otp_off_leaves_force_login_admin_access_untouched(owner_client, settings):
    assert settings.OTP_REQUIRED is False
    assert owner_client.get("/admin/").status_code == 200
    assert owner_client.get("/admin/agents/agent/").status_code == 200


def test_user_tools_link_to_the_two_factor_page(owner_client):
    assert 'href="/admin/two-factor/"' in owner_client.get("/admin/").content.decode()


# --- managing one's own device ------------------------------------------------------------------------------
def test_status_page_shows_codes_left_but_never_a_code_or_the_key(enrolled):
    client = _verified(enrolled.user, enrolled.device)
    html = client.get(STATUS_URL).content.decode()
    assert "Unused recovery codes: <strong>10</strong>" in html
    assert enrolled.device.key not in html
    assert not any(code in html for code in enrolled.recovery_codes)


def test_regenerating_recovery_codes_retires_the_old_ones(enrolled):
    client = _verified(enrolled.user, enrolled.device)
    response = client.post("/admin/two-factor/recovery-codes/")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new = set(StaticToken.objects.filter(device__user=enrolled.user).values_list("token", flat=True))
    assert len(new) == 10 and not new & set(enrolled.recovery_codes)
    assert AuditEvent.objects.filter(action="accounts.recovery_codes_regenerated").count() == 1


def test_changing_a_device_needs_a_verified_session(enrolled):
    client = _signed_in_without_code(enrolled.user)
    assert client.post("/admin/two-factor/remove/")["Location"].startswith(VERIFY_URL)
    assert client.post("/admin/two-factor/recovery-codes/")["Location"].startswith(VERIFY_URL)
    assert TOTPDevice.objects.filter(user=enrolled.user).exists()


def test_removing_ones_own_device_under_otp_required_leads_back_to_enrolment(enrolled, otp_required):
    client = _verified(enrolled.user, enrolled.device)
    response = client.post("/admin/two-factor/remove/")
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=enrolled.user).exists()
    assert not StaticToken.objects.filter(device__user=enrolled.user).exists()
    assert client.get("/admin/")["Location"].startswith(SETUP_URL)
    event = AuditEvent.objects.get(action="accounts.otp_device_removed")
    assert event.changes == {"devices_removed": 2, "by_other": False}


def test_superuser_removes_another_users_device_and_it_is_audited(enrolled, superuser):
    client = Client()
    client.force_login(superuser)
    response = client.post("/admin/otp_totp/totpdevice/", {
        "action": "remove_two_factor", "_selected_action": [enrolled.device.pk]})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=enrolled.user).exists()
    event = AuditEvent.objects.get(action="accounts.otp_device_removed")
    assert event.actor_user == superuser and event.object_id == str(enrolled.user.pk)
    assert event.changes["by_other"] is True


@pytest.mark.parametrize("who", ["owner", "member", "outsider"])
def test_only_superusers_see_or_remove_other_peoples_devices(request, enrolled, who):
    actor = request.getfixturevalue(who)
    client = Client()
    client.force_login(actor)
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 403
    response = client.post("/admin/otp_totp/totpdevice/", {
        "action": "remove_two_factor", "_selected_action": [enrolled.device.pk]})
    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        services.otp_device_remove(actor=actor, user=enrolled.user)
    assert TOTPDevice.objects.filter(user=enrolled.user).exists()


def test_device_admin_never_shows_the_key(enrolled, superuser):
    client = Client()
    client.force_login(superuser)
    html = client.get(f"/admin/otp_totp/totpdevice/{enrolled.device.pk}/change/").content.decode()
    assert enrolled.user.username in html and enrolled.device.key not in html


def test_recovery_codes_do_not_show_in_repr(enrolled, staff):
    codes = services.recovery_codes_regenerate(actor=staff, user=staff)
    assert len(codes) == 10
    assert not any(code in repr(codes) or code in str(codes) for code in codes)


def test_setup_says_wait_when_throttled_not_the_clock(staff, otp_required):
    client = _signed_in_without_code(staff)
    client.post(SETUP_URL)
    device = TOTPDevice.objects.get(user=staff)
    first = client.post(CONFIRM_URL, {"code": "000000"}).content.decode()
    assert "Check your device" in first and "Too many attempts" not in first
    # django-otp now holds the device (1 s after one failure, doubling): a code typed at once is refused unread.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=5,
                                                   throttling_failure_timestamp=timezone.now())
    second = client.post(CONFIRM_URL, {"code": code_for(device)}).content.decode()
    assert "Too many attempts: wait" in second and "Check your device" not in second
