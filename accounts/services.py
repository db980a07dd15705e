"""Every write of sign-in protection: two-factor devices, recovery codes, the second sign-in step, lockout resets.

Each function runs in one transaction with its audit event. No TOTP key, recovery code or password ever reaches
an audit row, a log line or an exception message: audit rows name the method and counts, never the values.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from axes.utils import reset as axes_reset
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import selectors
from accounts.models import SealedTOTPDevice, TOTPSecret
from project.actors import Actor, checked
from project.audit.services import SECRET_SET, record
from project.fields import DecryptionError

logger = logging.getLogger(__name__)

RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
_TOTP_SHAPE = re.compile(r"^\d{6,8}$")


class RecoveryCodes(tuple):
    """The freshly issued recovery codes: iterable for the one page that shows them, opaque to repr()/str()
    so that no log line or error report can carry them by accident."""

    def __repr__(self) -> str:
        return f"<RecoveryCodes: {len(self)} codes>"

    __str__ = __repr__


def normalise_code(code: str) -> str:
    """People type codes with spaces, dashes or capitals; the stored forms are digits and lowercase base32."""
    return re.sub(r"[\s-]+", "", code or "").lower()


def _require_self(actor: Actor, user: Any) -> None:
    if checked(actor).pk is None or actor.pk != user.pk:
        raise PermissionDenied("Only the person themself may do this.")


def _require_superuser(actor: Actor) -> None:
    if not selectors.may_see_sign_in_records(actor):
        raise PermissionDenied("Only a superuser may do this.")


def _issue_recovery_codes(user: Any) -> RecoveryCodes:
    device = StaticDevice.objects.select_for_update().filter(user_id=user.pk).order_by("pk").first()
    if device is None:
        device = StaticDevice(user=user, name=RECOVERY_DEVICE_NAME)
    device.confirmed = True
    device.throttle_reset(commit=False)
    device.full_clean()
    device.save()
    device.token_set.all().delete()
    codes = RecoveryCodes(StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT))
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@transaction.atomic
def otp_device_enrol(*, actor: Actor, user: Any) -> SealedTOTPDevice:
    """Start enrolment: replace `user`'s unconfirmed authenticator (if any) with a new unconfirmed one holding a
    fresh random key, to be shown once. Only the person themself, and only while they have no confirmed device
    (to replace one, remove it first). Audits `accounts.otp_enrol_started`; enqueues nothing."""
    _require_self(actor, user)
    if TOTPDevice.objects.select_for_update().filter(user_id=user.pk, confirmed=True).exists():
        raise ValidationError("You already have an authenticator; remove it before setting up another.")
    TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).delete()
    # The seed goes into the encrypted accounts.TOTPSecret; django-otp's own column gets a decoy.
    device = SealedTOTPDevice.create_sealed(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    record(actor=actor, action="accounts.otp_enrol_started", target=device)
    return device


@transaction.atomic
def otp_device_confirm(*, actor: Actor, device: SealedTOTPDevice, code: str) -> RecoveryCodes | None:
    """Confirm `device` with a current code from the app. On success the device is confirmed and a new set of
    recovery codes replaces any old one (returned, to be shown once); audits `accounts.otp_device_confirmed`.
    A wrong code returns None, counts towards django-otp's throttle and audits `accounts.otp_enrol_failed`."""
    # of=self: the seed's row joins from the nullable side of an outer join, which FOR UPDATE cannot lock.
    locked = (SealedTOTPDevice.objects.select_related("sealed_secret").select_for_update(of=("self",))
              .filter(pk=device.pk).first())
    if locked is None or locked.user_id != getattr(actor, "pk", None):
        raise PermissionDenied("No such device.")
    if locked.confirmed:
        raise ValidationError("This authenticator is already confirmed.")
    if not locked.verify_token(normalise_code(code)):
        record(actor=actor, action="accounts.otp_enrol_failed", target=locked)
        return None
    locked.confirmed = True
    locked.save(update_fields=["confirmed"])
    codes = _issue_recovery_codes(actor)
    record(actor=actor, action="accounts.otp_device_confirmed", target=locked,
           changes={"confirmed": [False, True], "recovery_codes": SECRET_SET})
    return codes


@transaction.atomic
def recovery_codes_regenerate(*, actor: Actor, user: Any) -> RecoveryCodes:
    """Replace `user`'s recovery codes with RECOVERY_CODE_COUNT new ones (returned, to be shown once); every old
    code stops working. Only the person themself, with a confirmed authenticator. Audits
    `accounts.recovery_codes_regenerated` (that it happened, never the codes)."""
    _require_self(actor, user)
    if not TOTPDevice.objects.select_for_update().filter(user_id=user.pk, confirmed=True).exists():
        raise ValidationError("Set up an authenticator first.")
    codes = _issue_recovery_codes(user)
    record(actor=actor, action="accounts.recovery_codes_regenerated", target=user,
           changes={"recovery_codes": SECRET_SET})
    return codes


@transaction.atomic
def otp_device_remove(*, actor: Actor, user: Any) -> int:
    """Remove every two-factor device of `user` (authenticators and recovery codes), so they sign in with their
    password alone or, under OTP_REQUIRED, must enrol again. The person themself or a superuser. Audits
    `accounts.otp_device_removed` with the number removed and whether a superuser did it for someone else.
    Returns the number of devices removed."""
    if checked(actor).pk is None or (actor.pk != user.pk and not selectors.may_see_sign_in_records(actor)):
        raise PermissionDenied("Only the person themself or a superuser may remove two-factor devices.")
    removed = 0
    for model in (TOTPDevice, StaticDevice):
        devices = model.objects.filter(user_id=user.pk)
        removed += devices.count()
        devices.delete()  # recovery codes go with their device (CASCADE)
    record(actor=actor, action="accounts.otp_device_removed", target=user,
           changes={"devices_removed": removed, "by_other": actor.pk != user.pk})
    return removed


def _accepts(device: Device, code: str) -> bool:
    """device.verify_token, failing closed when an authenticator's sealed seed cannot be read (no seed row, or
    FIELD_ENCRYPTION_KEY lacks the key that sealed it): that device accepts nothing; recovery codes still work."""
    try:
        return bool(device.verify_token(code))
    except (DecryptionError, TOTPSecret.DoesNotExist):
        logger.error("authenticator %s of user %s: its seed cannot be read (is FIELD_ENCRYPTION_KEY complete?)",
                     device.pk, device.user_id)
        return False


@transaction.atomic
def otp_token_verify(*, actor: Actor, code: str) -> Device | None:
    """The second sign-in step: check `code` against the actor's authenticator (six to eight digits) or else
    their recovery codes (a matching recovery code is used up). Returns the device that accepted it, or None.
    Audits `accounts.otp_verified` (method, recovery codes left) or `accounts.otp_failed` (method); a failure
    also counts towards django-otp's per-device throttle, which the transaction keeps."""
    code = normalise_code(code)
    method = "totp" if _TOTP_SHAPE.match(code) else "recovery_code"
    if method == "totp":
        candidates = SealedTOTPDevice.objects.select_related("sealed_secret").select_for_update(of=("self",))
    else:
        candidates = StaticDevice.objects.select_for_update()
    devices = list(candidates.filter(user_id=actor.pk, confirmed=True).order_by("pk"))
    verified = next((d for d in devices if _accepts(d, code)), None) if code else None
    if verified is None:
        record(actor=actor, action="accounts.otp_failed", target=actor, changes={"method": method})
        return None
    changes: dict[str, Any] = {"method": method}
    if method == "recovery_code":
        changes["recovery_codes_left"] = selectors.recovery_codes_left(actor)
    record(actor=actor, action="accounts.otp_verified", target=actor, changes=changes)
    return verified


@transaction.atomic
def login_lockout_reset(*, actor: Actor, username: str | None, ip_address: str | None) -> int:
    """Clear the failed sign-in attempts of one username+address pair (axes' own reset API), lifting its
    lockout. Superusers only. Audits `accounts.lockout_reset`: who reset whom, from which address, how many
    records. A typed name that matches no account is not copied into the audit row (people sometimes type their
    password into the username box). Returns the number of attempt records removed."""
    _require_superuser(actor)
    if not username and not ip_address:
        raise ValidationError("A lockout reset needs a username or an address.")
    cleared = axes_reset(ip=ip_address, username=username)
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first() if username else None
    record(actor=actor, action="accounts.lockout_reset", target=user,
           object_type=None if user else "axes.accessattempt",
           object_repr=None if user else "(no account with that username)",
           changes={"ip_address": ip_address, "attempts_cleared": cleared})
    return cleared
