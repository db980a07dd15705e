"""Where a session stands with the second factor, and the rule that gates the admin on it.

A session passes when django-otp has verified it (OTPMiddleware's `user.is_verified()`). When OTP_REQUIRED is
off it also passes unverified unless the password step marked it pending, which it does for anyone with a
confirmed device: having a device always means being asked for it. Sessions made without the sign-in form
(`client.force_login` in tests) carry no mark and so pass while OTP_REQUIRED is off, at no query cost.
"""

from __future__ import annotations

from typing import Any

import django_otp
from django.conf import settings
from django.http import HttpRequest

PENDING_SESSION_KEY = "keyward_otp_pending"
# Set when the identity provider's `amr` named a second factor and OIDC_MFA_SATISFIES_TWO_FACTOR is on.
PROVIDER_MFA_SESSION_KEY = "keyward_idp_mfa"


def is_staff_session(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def is_verified(request: HttpRequest) -> bool:
    check = getattr(request.user, "is_verified", None)
    return bool(check and check())


def passes(request: HttpRequest) -> bool:
    """May this signed-in session see admin pages, as far as the second factor goes?"""
    if is_verified(request):
        return True
    if getattr(settings, "OIDC_MFA_SATISFIES_TWO_FACTOR", False) and request.session.get(PROVIDER_MFA_SESSION_KEY):
        return True
    if getattr(settings, "OTP_REQUIRED", False):
        return False
    return not request.session.get(PENDING_SESSION_KEY, False)


def needs_second_factor(request: HttpRequest) -> bool:
    """A signed-in staff session that must verify (or enrol) before anything else."""
    return is_staff_session(request) and not passes(request)


def mark_pending(request: HttpRequest) -> None:
    request.session[PENDING_SESSION_KEY] = True


def mark_verified(request: HttpRequest, device: Any) -> None:
    """Bind the session to the device that proved the second factor, under a fresh session key."""
    django_otp.login(request, device)
    request.session.pop(PENDING_SESSION_KEY, None)
    # A new key on every step up in privilege, as Django does at login.
    request.session.cycle_key()


def mark_verified_by_provider(request: HttpRequest) -> None:
    """The identity provider's multi-factor sign-in stands for Keyward's second step (the setting allows it)."""
    request.session[PROVIDER_MFA_SESSION_KEY] = True
    request.session.pop(PENDING_SESSION_KEY, None)
