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

from django.conf import settings
from django.db import models
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from project.fields import EncryptedCharField
from project.models import TimeStampedModel


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


class ExternalIdentity(TimeStampedModel):
    """A person as the identity provider knows them: (issuer, subject) → a Keyward login.

    Sign-in finds people by this pair, never by an email claim alone once linked, so a renamed mailbox at the
    provider cannot move someone onto another login. `groups` is the groups claim of the last sign-in."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    groups = models.JSONField(default=list, blank=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "identity provider login"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="external_identity_unique_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.email or self.subject} at {self.issuer}"


class IdentityProviderGroup(TimeStampedModel):
    """One group of the identity provider's groups claim mapped to a role in one workspace: everyone in the group
    holds that role there, checked again at each of their sign-ins."""

    group = models.CharField(max_length=200, help_text="The group's name exactly as the provider sends it in the "
                                                        "groups claim.")
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="idp_groups")
    role = models.ForeignKey("workspaces.Role", on_delete=models.PROTECT, related_name="idp_groups")

    class Meta:
        verbose_name = "identity provider group"
        ordering = ["group", "workspace__name"]
        constraints = [
            models.UniqueConstraint(fields=["group", "workspace", "role"], name="idp_group_unique_mapping"),
        ]
        indexes = [
            # The sign-in's lookup: every mapping of the groups in one claim.
            models.Index(fields=["group"], name="idp_group_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.group} → {self.role.name} in {self.workspace}"


class IdentityProviderGrant(models.Model):
    """Marks a role assignment as made by the identity provider's groups: the next sign-in without the group takes
    it back. Assignments granted by hand carry no mark and are never touched by a sign-in."""

    assignment = models.OneToOneField("workspaces.RoleAssignment", on_delete=models.CASCADE, primary_key=True,
                                      related_name="idp_grant")
    group = models.CharField(max_length=200)

    class Meta:
        verbose_name = "role granted by the identity provider"

    def __str__(self) -> str:
        return f"assignment {self.assignment_id} through group {self.group}"
