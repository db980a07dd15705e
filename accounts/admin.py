"""Admin pages for sign-in records and two-factor devices: superusers only, read-only, writes through services.

django-axes' own pages are switched off (AXES_ENABLE_ADMIN = False) and django-otp's are unregistered here, so
every page still uses Keyward's admin base. Lockouts are superuser-only on purpose: a reset re-opens password
guessing against an account, attempt rows name usernames that may belong to no workspace (or to several, or to
a superuser), and nothing short of a superuser can vouch for all of those.
"""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import idp, selectors, services
from accounts.models import IdentityProviderGrant, IdentityProviderGroup
from project import access
from project.admin_base import ReadOnlyScopedAdmin, WorkspaceFilter, WorkspaceScopedAdmin, apply_errors
from workspaces.models import Role
from workspaces.services.roles import role_grant_check

for _model in (TOTPDevice, StaticDevice, AccessAttempt, AccessLog):
    try:
        admin.site.unregister(_model)  # django-otp's pages show keys and codes; ours never do
    except NotRegistered:
        pass


class SuperuserOnlyAdmin(ReadOnlyScopedAdmin):
    """Read-only pages for rows that belong to no workspace: the access policy's answer for "no workspace"
    (superusers only) decides who sees them."""

    view_permission = selectors.SIGN_IN_RECORDS_PERMISSION
    workspace_form_fields = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = admin.ModelAdmin.get_queryset(self, request)
        return qs if selectors.may_see_sign_in_records(request.user) else qs.none()

    def _any(self, request: HttpRequest, permission: str) -> bool:
        return selectors.may_see_sign_in_records(request.user)

    def _on(self, request: HttpRequest, permission: str, obj: Model | None) -> bool:
        return selectors.may_see_sign_in_records(request.user)


class LockedOutFilter(admin.SimpleListFilter):
    title = "locked out"
    parameter_name = "locked"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Locked out now")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT,
                                   attempt_time__gt=selectors.lockout_threshold())
        return queryset


@admin.register(AccessAttempt)
class LockoutAdmin(SuperuserOnlyAdmin):
    """Failed sign-ins per username+address; a row at the failure limit is a lockout until it cools off."""

    list_display = ("attempt_time", "username", "ip_address", "failures_since_start", "locked", "user_agent")
    list_filter = (LockedOutFilter,)
    # AccessAttempt indexes username and ip_address (axes' model).
    search_fields = ("=username", "=ip_address")
    # The stored form data is left out: it is noise next to these fields, masked or not.
    fields = ("username", "ip_address", "user_agent", "path_info", "attempt_time", "failures_since_start")
    readonly_fields = fields
    actions = ["reset_lockout"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The stored form data grows with every failure and no page here shows it.
        return super().get_queryset(request).defer("get_data", "post_data")

    @admin.display(boolean=True, description="locked out")
    def locked(self, obj: AccessAttempt) -> bool:
        return selectors.is_locked_out(obj)

    @admin.action(description="Reset lockout (clear the failed attempts)")
    def reset_lockout(self, request: HttpRequest, queryset: QuerySet) -> None:
        pairs = {(a.username, a.ip_address) for a in queryset}
        cleared = 0
        for username, ip_address in sorted(pairs, key=lambda p: (p[0] or "", p[1] or "")):
            cleared += services.login_lockout_reset(actor=request.user, username=username, ip_address=ip_address)
        self.message_user(request, f"Reset {len(pairs)} lockout(s); {cleared} attempt record(s) cleared.",
                          level=messages.SUCCESS)


@admin.register(AccessLog)
class SignInAdmin(SuperuserOnlyAdmin):
    """Successful sign-ins (and when they signed out), as recorded by django-axes."""

    list_display = ("attempt_time", "username", "ip_address", "logout_time", "user_agent")
    search_fields = ("=username", "=ip_address")
    fields = ("username", "ip_address", "user_agent", "path_info", "attempt_time", "logout_time")
    readonly_fields = fields


@admin.register(TOTPDevice)
class TwoFactorDeviceAdmin(SuperuserOnlyAdmin):
    """Who has two-factor sign-in set up; a superuser can remove someone's devices (they then enrol again)."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_select_related = ("user",)
    list_filter = ("confirmed",)
    search_fields = ("=user__username",)
    # Never the key, the drift or the throttle state.
    fields = ("user", "name", "confirmed", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ["remove_two_factor"]

    @admin.action(description="Remove two-factor sign-in for these users (they must set it up again)")
    def remove_two_factor(self, request: HttpRequest, queryset: QuerySet) -> None:
        users = {device.user_id: device.user for device in queryset.select_related("user")}
        for user in users.values():
            services.otp_device_remove(actor=request.user, user=user)
        self.message_user(request, f"Two-factor sign-in removed for {len(users)} user(s).", level=messages.SUCCESS)


@admin.register(IdentityProviderGroup)
class IdentityProviderGroupAdmin(WorkspaceScopedAdmin):
    """Access › Identity provider groups: a provider group → a role in a workspace, applied at each sign-in."""

    view_permission = "roles.assign"
    manage_permission = "roles.assign"
    list_display = ("group", "role", "workspace", "members_signed_in")
    list_select_related = ("workspace", "role")
    list_filter = (WorkspaceFilter,)
    search_fields = ("group",)
    fields = ("group", "workspace", "role")

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.fields if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a mapping is added or removed, never edited

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role":
            allowed = access.workspaces_with(request.user, self.manage_permission)
            roles = Role.objects.all()
            kwargs["queryset"] = roles if allowed is None else roles.filter(
                Q(workspace__isnull=True) | Q(workspace__in=allowed))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The people holding a role through this mapping, counted in the list's own query.
        grants = (IdentityProviderGrant.objects.filter(group=OuterRef("group"),
                                                       assignment__workspace_id=OuterRef("workspace_id"),
                                                       assignment__role_id=OuterRef("role_id"))
                  .order_by().values("group").annotate(n=Count("pk")).values("n"))
        return super().get_queryset(request).annotate(holders=Coalesce(Subquery(grants), 0))

    @admin.display(description="people holding the role through it", ordering="holders")
    def members_signed_in(self, mapping: IdentityProviderGroup) -> int:
        return mapping.holders

    def save_model(self, request: HttpRequest, obj: IdentityProviderGroup, form: Any, change: bool) -> None:
        saved = idp.idp_group_create(actor=request.user, group=obj.group, workspace=obj.workspace, role=obj.role)
        obj.pk = saved.pk
        obj._state.adding = False

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        admin_user = request.user

        class Checked(form):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data = super().clean()
                if self.instance.pk is None and data.get("workspace") and data.get("role"):
                    try:
                        role_grant_check(actor=admin_user, workspace=data["workspace"], role=data["role"])
                    except ValidationError as exc:
                        apply_errors(self, exc)
                    except PermissionDenied as exc:
                        self.add_error("workspace", str(exc))
                return data

        return Checked

    def service_delete(self, request: HttpRequest, obj: IdentityProviderGroup) -> None:
        idp.idp_group_delete(actor=request.user, mapping=obj)
