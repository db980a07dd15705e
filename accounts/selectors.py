"""Reads for sign-in protection: a person's two-factor devices, and the lockout records an actor may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SealedTOTPDevice
from project import access
from project.actors import Actor

# Lockout records and devices belong to no workspace: the policy's "workspace None" answer (superusers only)
# decides who sees them.
SIGN_IN_RECORDS_PERMISSION = "workspace.manage"


def confirmed_totp_device(user: Any) -> SealedTOTPDevice | None:
    return SealedTOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk").first()


def has_confirmed_device(user: Any) -> bool:
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


def unconfirmed_totp_device(user: Any) -> SealedTOTPDevice | None:
    return SealedTOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("-pk").first()


def recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user_id=user.pk, device__confirmed=True).count()


def recovery_device(user: Any) -> StaticDevice | None:
    return StaticDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk").first()


def may_see_sign_in_records(actor: Actor) -> bool:
    return access.has_perm(actor, SIGN_IN_RECORDS_PERMISSION, None)


def access_attempts_for(actor: Actor) -> QuerySet[AccessAttempt]:
    qs = AccessAttempt.objects.all()
    return qs if may_see_sign_in_records(actor) else qs.none()


def access_logs_for(actor: Actor) -> QuerySet[AccessLog]:
    qs = AccessLog.objects.all()
    return qs if may_see_sign_in_records(actor) else qs.none()


def totp_devices_for(actor: Actor) -> QuerySet[TOTPDevice]:
    qs = TOTPDevice.objects.all()
    return qs if may_see_sign_in_records(actor) else qs.none()


def lockout_threshold() -> datetime:
    """Failures recorded after this moment still count (axes forgets older ones at the next attempt)."""
    return timezone.now() - settings.AXES_COOLOFF_TIME


def is_locked_out(attempt: AccessAttempt) -> bool:
    return attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT and attempt.attempt_time > lockout_threshold()
