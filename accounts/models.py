"""Two-factor seeds encrypted at rest.

django-otp keeps each authenticator's TOTP seed in plain text in its own table (``otp_totp_totpdevice.key``):
anyone who can read that table could produce valid codes. Keyward keeps the seed in ``TOTPSecret`` instead, in
an encrypted field (``FIELD_ENCRYPTION_KEY``, failing closed, re-encrypted by ``reencrypt_fields`` like every
other secret), and fills django-otp's column with a random decoy that no one knows: a code check that bypassed
Keyward's model (django-otp's own forms, say) would fail, never pass. ``SealedTOTPDevice`` is django-otp's
device reading its seed from there; every sign-in path in ``accounts`` uses it.
"""

from __future__ import annotations

from binascii import unhexlify

from django.db import models
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from project.fields import EncryptedCharField


class TOTPSecret(models.Model):
    device = models.OneToOneField(TOTPDevice, on_delete=models.CASCADE, primary_key=True,
                                  related_name="sealed_secret")
    key = EncryptedCharField(max_length=80)

    class Meta:
        verbose_name = "authenticator seed"

    def __str__(self) -> str:
        return f"seed of device {self.device_id}"  # never the value


class SealedTOTPDevice(TOTPDevice):
    """A TOTP authenticator whose seed is ``TOTPSecret.key`` (django-otp's ``key`` column holds a decoy)."""

    class Meta:
        proxy = True
        verbose_name = "authenticator"

    @classmethod
    def create_sealed(cls, **fields: object) -> SealedTOTPDevice:
        """A new device with a fresh random seed, sealed; its ``key`` column gets an unrelated random decoy."""
        seed = random_hex(20)
        device = cls(**fields)
        device.key = random_hex(20)
        device.full_clean()
        device.save()
        TOTPSecret.objects.create(device=device, key=seed)
        return device

    @property
    def bin_key(self) -> bytes:
        # No sealed seed (or an unreadable one) raises: fail closed, never fall back to the column.
        return unhexlify(self.sealed_secret.key.encode())
