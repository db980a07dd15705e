"""Keyward's admin site: Django's, plus the second sign-in step and two-factor enrolment in front of every page.

Installed as `admin.site` through KeywardAdminConfig, so the apps keep using `@admin.register` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from accounts import second_factor

#: The admin's navigation, grouped by task with plain names (index page and sidebar). A model registered later
#: and not listed here still shows, under its app's name at the end, so nothing becomes unreachable.
NAVIGATION: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Agents", (("agents", "agent", "Agents"), ("broker", "webhookagent", "Credential webhooks"))),
    ("Secrets and vault", (("secrets_app", "secret", "Secrets"), ("secrets_app", "tool", "Tools"),
                           ("secrets_app", "authconnection", "Auth connections"),
                           ("secrets_app", "oauthprovider", "OAuth providers (vault)"),
                           ("secrets_app", "usercredential", "End users' tokens (vault)"))),
    ("Keys", (("keys", "apikey", "API keys"), ("broker", "brokerkey", "Broker keys (session API)"),
              ("keys", "keypolicy", "Key policies"))),
    ("Access", (("auth", "user", "People"), ("workspaces", "roleassignment", "Role assignments"),
                ("workspaces", "role", "Roles"), ("accounts", "identityprovidergroup", "Identity provider groups"),
                ("workspaces", "serviceaccount", "Service accounts"), ("workspaces", "workspace", "Workspaces"),
                ("workspaces", "environment", "Environments"), ("workspaces", "platformaccount", "Platform accounts"))),
    ("Detection and response", (("alerts", "alert", "Alerts"), ("detection", "incident", "Incidents"),
                                ("detection", "detectionpolicy", "Detection policies"))),
    ("Platform sync", (("sync", "syncjob", "Sync jobs"), ("sync", "drift", "Drift"),
                       ("sync", "reconcilerun", "Reconcile runs"), ("sync", "observation", "Discovered objects"))),
    ("Audit", (("audit", "auditevent", "Audit trail"),)),
    ("Sign-in protection", (("axes", "accessattempt", "Failed sign-ins and lockouts"),
                            ("axes", "accesslog", "Successful sign-ins"),
                            ("otp_totp", "totpdevice", "Two-factor devices"))),
)


class KeywardAutocompleteView(AutocompleteJsonView):
    """Django's autocomplete, refusing (403) any field that is not a concrete relation: probed with a reverse
    relation's name, Django's own view crashes with a 500."""

    def process_request(self, request: HttpRequest) -> Any:
        try:
            model = apps.get_model(request.GET.get("app_label") or "", request.GET.get("model_name") or "")
            field = model._meta.get_field(request.GET.get("field_name") or "")
        except (LookupError, ValueError, FieldDoesNotExist):
            raise PermissionDenied from None
        if not (field.concrete and field.is_relation):
            raise PermissionDenied
        return super().process_request(request)


class KeywardAdminSite(admin.AdminSite):
    site_header = "Keyward"
    site_title = "Keyward"
    index_title = "Security control plane"
    site_url = None  # no public site: "View site" would lead nowhere useful
    # The home page lists every page grouped by task; a sidebar copy of it would take 300 of a 1280 px screen's
    # pixels from every list.
    enable_nav_sidebar = False

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Django's apps regrouped by task (NAVIGATION); an app's own page (app_label) keeps Django's list."""
        apps = super().get_app_list(request, app_label)
        if app_label:
            return apps
        found = {(app["app_label"], m["object_name"].lower()): (app, m) for app in apps for m in app["models"]}
        sections = []
        for n, (title, entries) in enumerate(NAVIGATION):
            models = []
            for label, model_name, name in entries:
                hit = found.pop((label, model_name), None)
                if hit is not None:
                    models.append({**hit[1], "name": name})
            if models:
                sections.append({"name": title, "app_label": f"kw-section-{n}", "app_url": models[0]["admin_url"],
                                 "has_module_perms": True, "models": models})
        leftovers: dict[str, dict[str, Any]] = {}
        for (label, _), (app, model) in found.items():
            leftovers.setdefault(label, {**app, "models": []})["models"].append(model)
        return sections + list(leftovers.values())

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        # Bulk delete would bypass the services (no audit, no sync): every delete goes one object at a time.
        self.disable_action("delete_selected")

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return KeywardAutocompleteView.as_view(admin_site=self)(request)

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and second_factor.passes(request)

    def second_factor_url(self, request: HttpRequest, next_url: str | None = None) -> str:
        """Where a session that has not passed the second factor goes: the code page, or enrolment."""
        from accounts import selectors

        name = "accounts_two_factor_verify" if selectors.has_confirmed_device(request.user) else \
            "accounts_two_factor_setup"
        url = reverse(f"admin:{name}", current_app=self.name)
        return f"{url}?{urlencode({'next': next_url})}" if next_url else url

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        wrapped = super().admin_view(view, cacheable)

        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if second_factor.needs_second_factor(request):
                if request.path == reverse("admin:logout", current_app=self.name):
                    return csrf_protect(never_cache(view))(request, *args, **kwargs)  # signing out needs no code
                return HttpResponseRedirect(self.second_factor_url(request, request.get_full_path()))
            return wrapped(request, *args, **kwargs)

        return update_wrapper(inner if cacheable else never_cache(inner), wrapped)

    @method_decorator(never_cache)
    @method_decorator(login_not_required)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from django.contrib.auth import REDIRECT_FIELD_NAME

        from accounts import selectors

        if request.method == "GET" and second_factor.needs_second_factor(request):
            return HttpResponseRedirect(self.second_factor_url(request, request.GET.get(REDIRECT_FIELD_NAME)))
        from django.conf import settings

        extra_context = {**(extra_context or {}), "identity_provider": settings.OIDC_PROVIDER_NAME
                         if settings.OIDC_ISSUER else None}
        response = super().login(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and request.user.is_authenticated:
            # The password was right. Anyone with a device is asked for it; OTP_REQUIRED also sends the rest
            # to enrolment (through the gate in admin_view and has_permission).
            if selectors.has_confirmed_device(request.user):
                second_factor.mark_pending(request)
            if second_factor.needs_second_factor(request):
                return HttpResponseRedirect(self.second_factor_url(request, response["Location"]))
        return response

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from accounts import views

        def staff(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return views.staff_view(self, view)

        return [
            path("two-factor/", staff(views.two_factor), name="accounts_two_factor"),
            path("two-factor/setup/", staff(views.setup), name="accounts_two_factor_setup"),
            path("two-factor/setup/confirm/", staff(views.setup_confirm), name="accounts_two_factor_confirm"),
            path("two-factor/verify/", staff(views.verify), name="accounts_two_factor_verify"),
            path("two-factor/recovery-codes/", staff(views.recovery_codes), name="accounts_recovery_codes"),
            path("two-factor/remove/", staff(views.remove), name="accounts_two_factor_remove"),
            *super().get_urls(),
        ]
