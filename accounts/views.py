"""The two-factor pages (enrolment, the sign-in code, recovery codes, removal) and the lockout page.

These pages sit on the admin site but outside its gate: they are where the gate sends people. Each needs a
signed-in active staff user; the ones that change an existing device also need a session verified with it.
Every response here is `never_cache` (Cache-Control: no-store): the key and the recovery codes appear on exactly
one response each, and no browser or proxy may keep them.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

import qrcode
import qrcode.image.svg
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from accounts import second_factor, selectors, services
from accounts.forms import CodeForm

View = Callable[..., HttpResponse]


def staff_view(site: admin.AdminSite, view: View) -> View:
    """Signed-in active staff only (others go to the sign-in page); the second factor is not required here."""

    @wraps(view)
    def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not second_factor.is_staff_session(request):
            return redirect_to_login(request.get_full_path(), reverse("admin:login", current_app=site.name))
        return view(request, site, *args, **kwargs)

    return csrf_protect(never_cache(inner))


def _context(request: HttpRequest, site: admin.AdminSite, **extra: Any) -> dict[str, Any]:
    # Not site.each_context(): that builds the app list, which a session without its second factor must not see.
    return {"site_title": site.site_title, "site_header": site.site_header, "site_url": site.site_url,
            "has_permission": site.has_permission(request), "available_apps": [], "is_popup": False,
            "is_nav_sidebar_enabled": False, **extra}


def _next_url(request: HttpRequest, site: admin.AdminSite) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return reverse("admin:index", current_app=site.name)


def _url(site: admin.AdminSite, name: str) -> str:
    return reverse(f"admin:{name}", current_app=site.name)


def _qr_data_uri(uri: str) -> str:
    buffer = io.BytesIO()
    qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=10).save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- the second sign-in step -------------------------------------------------------------------------------
def verify(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    user = request.user
    next_url = _next_url(request, site)
    if second_factor.is_verified(request):
        return HttpResponseRedirect(next_url)
    if not selectors.has_confirmed_device(user):
        if settings.OTP_REQUIRED:
            return HttpResponseRedirect(_url(site, "accounts_two_factor_setup"))
        request.session.pop(second_factor.PENDING_SESSION_KEY, None)
        return HttpResponseRedirect(next_url)
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        logout(request)
        return lockout_response(request, None, credentials)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = services.otp_token_verify(actor=user, code=form.cleaned_data["code"])
        if device is not None:
            second_factor.mark_verified(request, device)
            return HttpResponseRedirect(next_url)
        # A wrong code counts like a wrong password towards the username+address lockout.
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if getattr(request, "axes_locked_out", False):
            logout(request)
            return lockout_response(request, None, credentials)
        form.add_error("code", "That code is not valid. Use the current code from your app, or an unused "
                               "recovery code.")
    return render(request, "admin/accounts/verify.html",
                  _context(request, site, title="Two-factor sign-in", form=form, next=next_url))


# --- enrolment --------------------------------------------------------------------------------------------
def setup(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """GET explains; POST makes a new unconfirmed authenticator and shows its key, on this response only."""
    user = request.user
    if selectors.has_confirmed_device(user):
        if not second_factor.passes(request):
            return HttpResponseRedirect(_url(site, "accounts_two_factor_verify"))
        messages.info(request, "Two-factor sign-in is already set up. Remove the authenticator to set up another.")
        return HttpResponseRedirect(_url(site, "accounts_two_factor"))
    context = _context(request, site, title="Set up two-factor sign-in", next=_next_url(request, site),
                       required=settings.OTP_REQUIRED)
    if request.method == "POST":
        device = services.otp_device_enrol(actor=user, user=user)
        uri = device.config_url
        context.update(show_key=True, otpauth_uri=uri, qr_data_uri=_qr_data_uri(uri),
                       manual_key=base64.b32encode(device.bin_key).decode(), form=CodeForm())
    return render(request, "admin/accounts/setup.html", context)


def _throttled_for(device: Any) -> int | None:
    """Seconds django-otp's throttle still holds the device (a code typed now is refused unread), or None."""
    allowed, info = device.verify_is_allowed()
    until = (info or {}).get("locked_until") if not allowed else None
    return max(1, math.ceil((until - timezone.now()).total_seconds())) if until is not None else None


def _wrong_code_message(wait: int | None) -> str:
    """Why a code was refused: "wait N seconds" when the throttle refused it unread, else the clock hint."""
    if wait is not None:
        return (f"Too many attempts: wait {wait} second{'s' if wait != 1 else ''}, then enter the code your app shows "
                "at that moment.")
    return "That code is not valid. Check your device's clock and enter the current code."


def setup_confirm(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    user = request.user
    device = selectors.unconfirmed_totp_device(user)
    if device is None:
        messages.warning(request, "Start the setup again: there is no authenticator waiting for confirmation.")
        return HttpResponseRedirect(_url(site, "accounts_two_factor_setup"))
    form = CodeForm(request.POST)
    codes = None
    wait = _throttled_for(device)
    if form.is_valid():
        codes = services.otp_device_confirm(actor=user, device=device, code=form.cleaned_data["code"])
    next_url = _next_url(request, site)
    if codes is None:
        # The key is not shown again: whoever needs it starts over with a new one.
        form.add_error("code", _wrong_code_message(wait))
        return render(request, "admin/accounts/setup.html",
                      _context(request, site, title="Set up two-factor sign-in", next=next_url,
                               required=settings.OTP_REQUIRED, show_key=False, form=form))
    device.refresh_from_db()
    second_factor.mark_verified(request, device)
    return _recovery_codes_page(request, site, codes, next_url, enrolled=True)


def _recovery_codes_page(request: HttpRequest, site: admin.AdminSite, codes: services.RecoveryCodes,
                         next_url: str, *, enrolled: bool) -> HttpResponse:
    return render(request, "admin/accounts/recovery_codes.html",
                  _context(request, site, title="Your recovery codes", codes=list(codes), next=next_url,
                           enrolled=enrolled))


# --- managing an existing device ---------------------------------------------------------------------------
def _needs_fresh_proof(request: HttpRequest) -> bool:
    """Changing a device is for sessions that proved it: a password alone must not replace or remove it."""
    return selectors.has_confirmed_device(request.user) and not second_factor.is_verified(request)


def two_factor(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    user = request.user
    if _needs_fresh_proof(request):
        return HttpResponseRedirect(f"{_url(site, 'accounts_two_factor_verify')}?{urlencode({'next': request.path})}")
    device = selectors.confirmed_totp_device(user)
    return render(request, "admin/accounts/two_factor.html",
                  _context(request, site, title="Two-factor sign-in", device=device,
                           recovery_codes_left=selectors.recovery_codes_left(user) if device else 0,
                           required=settings.OTP_REQUIRED))


def recovery_codes(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if _needs_fresh_proof(request):
        return HttpResponseRedirect(_url(site, "accounts_two_factor_verify"))
    try:
        codes = services.recovery_codes_regenerate(actor=request.user, user=request.user)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
        return HttpResponseRedirect(_url(site, "accounts_two_factor"))
    return _recovery_codes_page(request, site, codes, _url(site, "accounts_two_factor"), enrolled=False)


def remove(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if _needs_fresh_proof(request):
        return HttpResponseRedirect(_url(site, "accounts_two_factor_verify"))
    services.otp_device_remove(actor=request.user, user=request.user)
    messages.success(request, "Two-factor sign-in removed: your authenticator and recovery codes no longer work.")
    return HttpResponseRedirect(_url(site, "accounts_two_factor"))


# --- lockout ----------------------------------------------------------------------------------------------
def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a plain page saying what happened and when to try again, status 429."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    minutes = max(1, int(cool_off.total_seconds() // 60))
    site = admin.site
    context = {"site_title": site.site_title, "site_header": site.site_header, "site_url": site.site_url,
               "has_permission": False, "available_apps": [], "is_popup": False, "is_nav_sidebar_enabled": False,
               "title": "Sign-in locked", "minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT}
    response = render(request, "admin/accounts/lockout.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    add_never_cache_headers(response)
    return response
