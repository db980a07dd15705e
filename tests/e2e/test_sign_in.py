"""Two-factor sign-in in a real browser: enrolment on the page, the code step, a wrong code, a recovery code."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from django_otp.oath import totp
from playwright.sync_api import expect

from tests.e2e.conftest import password_step, person

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _code_from_shown_key(shown_key: str, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the key the page printed (base32, 30-second steps, 6 digits)."""
    return f"{totp(base64.b32decode(shown_key), step=30, t0=0, digits=6, drift=steps_ahead):06d}"


def _sign_out(page: Any) -> None:
    page.click("#logout-form button[type=submit]")
    expect(page.locator("#content")).to_contain_text("Log in again")


def test_newcomer_enrols_an_authenticator_in_the_browser_then_signs_in_with_its_code(page: Any, live_server: Any,
                                                                                   world: Any) -> None:
    base = live_server.url
    newcomer = person("acme-newcomer", "Admin", world.acme, enrolled=False)

    # The password alone opens nothing: OTP_REQUIRED sends a person without an authenticator to enrolment.
    password_step(page, base, newcomer.username)
    expect(page).to_have_url(re.compile(r"/admin/two-factor/setup/"))
    page.goto(f"{base}/admin/agents/agent/")
    expect(page).to_have_url(re.compile(r"/admin/two-factor/setup/"))
    expect(page.locator("#content")).not_to_contain_text("Website concierge")

    # Enrol: the key is shown once, the app's current code confirms it, ten recovery codes are shown once.
    page.click("input[type=submit][value='Begin setup']")
    shown_key = page.locator("p:has-text('Enter this key by hand') code").inner_text()
    expect(page.locator("img[alt='QR code of your two-factor key']")).to_be_visible()
    page.fill("#id_code", _code_from_shown_key(shown_key))
    page.click("input[type=submit][value=Confirm]")
    codes = page.locator(".keyward-recovery-codes li")
    expect(codes).to_have_count(10)
    recovery_codes = codes.all_inner_texts()
    page.click("text=I have saved my recovery codes")  # back to the page first asked for
    expect(page).to_have_url(re.compile(r"/admin/agents/agent/$"))
    expect(page.locator("#content")).to_contain_text("Select agent to change")

    # Next sign-in: the password, then the code step. django-otp refuses a time step twice, so the code is the
    # app's next one (inside the device's tolerance).
    _sign_out(page)
    password_step(page, base, newcomer.username)
    expect(page).to_have_url(re.compile(r"/admin/two-factor/verify/"))
    page.goto(f"{base}/admin/agents/agent/")  # nothing of the admin before the code
    expect(page).to_have_url(re.compile(r"/admin/two-factor/verify/"))
    page.fill("#id_code", _code_from_shown_key(shown_key, steps_ahead=1))
    page.click("input[type=submit][value=Verify]")
    expect(page).to_have_url(re.compile(r"/admin/agents/agent/$"))
    expect(page.locator("#user-tools")).to_contain_text("Log out")

    # A lost phone: a recovery code signs in, once.
    _sign_out(page)
    password_step(page, base, newcomer.username)
    page.fill("#id_code", recovery_codes[0])
    page.click("input[type=submit][value=Verify]")
    expect(page).to_have_url(f"{base}/admin/")
    _sign_out(page)
    password_step(page, base, newcomer.username)
    page.fill("#id_code", recovery_codes[0])
    page.click("input[type=submit][value=Verify]")
    # (Last: after a failure django-otp throttles the device for a second, and this suite never sleeps.)
    expect(page.locator(".errornote")).to_contain_text("That code is not valid")
    page.goto(f"{base}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/two-factor/verify/"))
