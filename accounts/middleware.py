"""Request middleware of the admin's front door: the verified second factor and the sliding idle timeout."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.middleware import OTPMiddleware
from django_otp.models import Device

from accounts.backends import DEVICES_ATTR

REFRESHED_AT_KEY = "_keyward_refreshed_at"


class VerifiedDeviceMiddleware(OTPMiddleware):
    """django-otp's middleware (request.user.otp_device, request.user.is_verified()), checking the session's
    device against the confirmed devices KeywardModelBackend read with the user instead of loading it: no
    query per request. The same rule as django-otp's: the device must be the user's and confirmed, else the
    session forgets it. The device itself loads only if something reads its fields."""

    def _verify_user_sync(self, request: HttpRequest, user: Any) -> Any:
        confirmed = getattr(user, DEVICES_ATTR, None) if user.is_authenticated else None
        if confirmed is None:
            return super()._verify_user_sync(request, user)
        self._init_user_fields(user)
        persistent_id = request.session.get(DEVICE_ID_SESSION_KEY)
        normalized = self._normalize_persistent_id(persistent_id) if persistent_id else None
        if normalized in confirmed:
            user.otp_device = SimpleLazyObject(functools.partial(Device.from_persistent_id, normalized))
        elif DEVICE_ID_SESSION_KEY in request.session:
            del request.session[DEVICE_ID_SESSION_KEY]
        return user


def session_renewed_at_sign_in(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Signing in saves the session and starts its idle timeout: that counts as the first renewal."""
    if request is not None and hasattr(request, "session"):
        request.session[REFRESHED_AT_KEY] = int(time.time())


class SlidingSessionMiddleware:
    """Slides the admin's idle timeout (SESSION_COOKIE_AGE from the last request) without writing the session
    on every request: a signed-in session is saved, which renews its expiry, when its last renewal is older
    than SESSION_REFRESH_SECONDS (60). The timeout is exact to within that step; every other request reads
    the session and writes nothing. Must sit after SessionMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        # Only a session this request already read (a signed-in visitor's): never load one just to renew it.
        if session is None or not session.accessed or session.session_key is None or session.is_empty():
            return response
        now = int(time.time())
        refreshed = session.get(REFRESHED_AT_KEY)
        if not isinstance(refreshed, int) or now - refreshed >= settings.SESSION_REFRESH_SECONDS:
            session[REFRESHED_AT_KEY] = now  # modified: SessionMiddleware saves it and renews the expiry
        return response
