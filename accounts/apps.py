from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    """Sign-in protection: lockouts (django-axes) and two-factor sign-in (django-otp) for staff."""

    default = True
    name = "accounts"
    label = "accounts"
    verbose_name = "Sign-in protection"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts.middleware import session_renewed_at_sign_in

        user_logged_in.connect(session_renewed_at_sign_in, dispatch_uid="keyward_session_renewed_at_sign_in")


class KeywardAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Keyward's site as `admin.site`, so every `@admin.register` lands behind the
    two-factor gate without any app importing this one."""

    default = False
    default_site = "accounts.admin_site.KeywardAdminSite"
