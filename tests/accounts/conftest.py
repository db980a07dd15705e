from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SealedTOTPDevice
from tests.factories import UserFactory, make_confirmed_device

PASSWORD = "correct-horse-battery"
LOGIN_URL = "/admin/login/"
VERIFY_URL = "/admin/two-factor/verify/"
SETUP_URL = "/admin/two-factor/setup/"
CONFIRM_URL = "/admin/two-factor/setup/confirm/"
STATUS_URL = "/admin/two-factor/"


def code_for(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The device's TOTP code, computed from its key as an authenticator app would (steps_ahead > 0 gives a
    later step, still inside the device's tolerance, for a second sign-in in the same 30 seconds)."""
    device.refresh_from_db()
    # From the sealed seed (the app's copy): django-otp's own key column holds only a decoy.
    seed = SealedTOTPDevice.objects.get(pk=device.pk).bin_key
    value = totp(seed, device.step, device.t0, device.digits, device.drift + steps_ahead)
    return f"{value:0{device.digits}d}"


def password_sign_in(client: Client, username: str, password: str = PASSWORD, next_url: str = "/admin/",
                     **extra: str):
    return client.post(LOGIN_URL, {"username": username, "password": password, "next": next_url}, **extra)


@dataclass
class Enrolled:
    user: object
    device: TOTPDevice
    recovery_codes: list[str] = field(repr=False)


@pytest.fixture
def otp_required(settings):
    settings.OTP_REQUIRED = True


@pytest.fixture
def staff(db):
    """A staff member with no role and no device: what everyone is on their first sign-in."""
    return UserFactory(username="alice")


@pytest.fixture
def enrolled(staff) -> Enrolled:
    """`staff` with a confirmed authenticator and ten recovery codes (set up through the services)."""
    device, codes = make_confirmed_device(staff)
    return Enrolled(user=staff, device=device, recovery_codes=codes)
