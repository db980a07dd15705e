"""Authenticator seeds are encrypted at rest (accounts.TOTPSecret); django-otp's own column holds a decoy."""

from __future__ import annotations

import importlib
import logging
from binascii import unhexlify

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.db import connection
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from accounts import services
from accounts.models import SealedTOTPDevice, TOTPSecret
from secrets_app.management.commands.reencrypt_fields import discover
from tests.accounts.conftest import code_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _code(seed_hex: str, device: TOTPDevice) -> str:
    return f"{totp(unhexlify(seed_hex), device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def _raw(sql: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk])
        return cursor.fetchone()[0]


def test_the_seed_is_encrypted_at_rest_and_django_otps_column_holds_a_decoy(enrolled):
    device = SealedTOTPDevice.objects.get(pk=enrolled.device.pk)
    seed = device.sealed_secret.key
    column = _raw("SELECT key FROM otp_totp_totpdevice WHERE id = %s", device.pk)
    stored = _raw("SELECT key FROM accounts_totpsecret WHERE device_id = %s", device.pk)
    assert len(seed) == 40 and column != seed and len(column) == 40
    assert seed not in stored and stored.startswith("gAAAAA")  # a Fernet token
    # A code made from the decoy is refused; django-otp's own model, which reads the column, refuses the real one.
    assert services.otp_token_verify(actor=enrolled.user, code=_code(column, device)) is None
    assert TOTPDevice.objects.get(pk=device.pk).verify_token(code_for(device)) is False
    device.refresh_from_db()
    device.throttle_reset()
    # The next step's code (the confirmation used this step's, and a code works once).
    assert services.otp_token_verify(actor=enrolled.user, code=code_for(device, steps_ahead=1)) is not None
    # Re-encryption after a key rotation covers the seeds like every other secret.
    assert "accounts.TOTPSecret" in {target.label for target in discover()}


def test_an_unreadable_seed_fails_closed_and_recovery_codes_still_work(enrolled, settings, caplog):
    code = code_for(enrolled.device, steps_ahead=1)
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]  # not the key that sealed the seed
    with caplog.at_level(logging.ERROR, logger="accounts.services"):
        assert services.otp_token_verify(actor=enrolled.user, code=code) is None
    assert "seed cannot be read" in caplog.text and code not in caplog.text
    assert services.otp_token_verify(actor=enrolled.user, code=enrolled.recovery_codes[0]) is not None


def test_enrolment_seals_a_fresh_seed_for_each_new_authenticator(staff):
    first = services.otp_device_enrol(actor=staff, user=staff)
    first_seed = first.sealed_secret.key
    second = services.otp_device_enrol(actor=staff, user=staff)  # restarts: the unconfirmed one is replaced
    assert not TOTPSecret.objects.filter(device_id=first.pk).exists()
    assert second.sealed_secret.key != first_seed and second.key != second.sealed_secret.key


def test_the_migration_seals_existing_seeds_and_going_back_restores_them():
    migration = importlib.import_module("accounts.migrations.0002_seal_existing_totp_seeds")
    user = UserFactory(username="early-adopter")
    seed = random_hex(20)
    legacy = TOTPDevice.objects.create(user=user, name="phone", confirmed=True, key=seed)

    migration.seal(apps, None)
    migration.seal(apps, None)  # twice: nothing sealed twice, nothing lost
    assert SealedTOTPDevice.objects.get(pk=legacy.pk).sealed_secret.key == seed
    assert TOTPDevice.objects.get(pk=legacy.pk).key != seed
    assert services.otp_token_verify(actor=user, code=_code(seed, legacy)) is not None

    migration.unseal(apps, None)
    assert TOTPDevice.objects.get(pk=legacy.pk).key == seed and not TOTPSecret.objects.exists()
