"""Admin pages of tenancy and access: workspaces and their environments, roles, assignments, service accounts,
and the people (Django's User, replaced by a workspace-scoped admin; Group is not used).

Adding people: "Add user" (titled "Add a person") creates a staff login with no usable password and its
first role in one workspace, for anyone holding `roles.assign` somewhere; "Add role assignment" gives a role
to someone who already has a login (by username or email) or to a service account. A superuser sets the
new person's password (the "Set password" link) or the deployment's single sign-on does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from project import access
from project.admin_base import WorkspaceFilter, WorkspaceScopedAdmin, badge
from project.platform.errors import PlatformError
from project.sync.services import discovery
from workspaces import access as policy
from workspaces import selectors, services
from workspaces.forms import (
    ConfirmForm,
    KeyRotationForm,
    PersonForm,
    PlatformAccountForm,
    RoleAssignmentForm,
    RoleForm,
    ServiceAccountForm,
    UserChangeForm,
    WorkspaceAccountForm,
)
from workspaces.models import Environment, PlatformAccount, Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.services import people as services_people
from workspaces.services import platform_accounts as account_services
from workspaces.services.platform_accounts import workspace_bind_account

User = get_user_model()


# --- shared pieces -------------------------------------------------------------------------------------
class ScopedRoleFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        return [(role.pk, str(role)) for role in selectors.roles_for(request.user, model_admin.view_permission)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(role_id=self.value()) if self.value() else queryset


class KeysAdmin(WorkspaceScopedAdmin):
    """Gives forms the signed-in person and turns a service's refusal into a message, nothing changed."""

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def _refused(self, request: HttpRequest, exc: ValidationError, where: str) -> HttpResponse:
        for message in exc.messages:
            self.message_user(request, message, level=messages.ERROR)
        return HttpResponseRedirect(where)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:  # a rule that changed between the form's check and the save
            return self._refused(request, exc, request.get_full_path())

    def delete_check(self, request: HttpRequest, obj: Model) -> None:
        """Raise ValidationError when the service would refuse to delete obj (shown before confirming)."""

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # 404 outside the person's workspaces
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        try:
            self.delete_check(request, obj)
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as exc:
            return self._refused(request, exc, change_url)


# --- roles ---------------------------------------------------------------------------------------------
@admin.register(Role)
class RoleAdmin(KeysAdmin):
    form = RoleForm
    manage_permission = "roles.assign"
    list_display = ("name", "scope", "permission_list", "description")
    list_filter = ("is_builtin",)
    search_fields = ("name",)
    fields = ("workspace", "name", "description", "permissions")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.roles_for(request.user, self.view_permission)

    @admin.display(description="workspace")
    def scope(self, role: Role) -> str:
        return "built-in (every workspace)" if role.workspace_id is None else str(role.workspace)

    @admin.display(description="permissions")
    def permission_list(self, role: Role) -> str:
        return ", ".join(role.permissions)

    def _manageable(self, request: HttpRequest, role: Role) -> bool:
        # A role beyond the person's own rights is read-only to them (the service refuses it anyway).
        return (not role.is_builtin and access.has_perm(request.user, self.manage_permission, role.workspace_id)
                and set(role.permissions) <= policy.permissions_in(request.user, role.workspace_id))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is not None and obj.workspace_id is None:
            return self._any(request, self.view_permission)
        return super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) if obj is None else self._manageable(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) if obj is None else self._manageable(request, obj)

    def service_save(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> Role:
        data = {f: form.cleaned_data[f] for f in ("name", "description", "permissions")}
        if change:
            return services.role_update(actor=request.user, role=obj, **data)
        return services.role_create(actor=request.user, workspace=form.cleaned_data["workspace"], **data)

    def delete_check(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete_check(actor=request.user, role=obj)

    def service_delete(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete(actor=request.user, role=obj)


# --- role assignments ----------------------------------------------------------------------------------
@admin.register(RoleAssignment)
class RoleAssignmentAdmin(KeysAdmin):
    manage_permission = "roles.assign"
    list_display = ("principal_link", "role", "workspace", "granted_by", "expires_at", "state")
    list_select_related = ("workspace", "role", "user", "service_account", "granted_by")
    list_filter = (WorkspaceFilter, ScopedRoleFilter)
    search_fields = ("user__username", "user__email", "service_account__name", "role__name")
    add_fields = ("workspace", "role", "person", "service_account", "expires_at")
    view_fields = ("workspace", "role", "principal_link", "granted_by", "expires_at", "state", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.role_assignments_for(request.user, self.view_permission)

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.add_fields if obj is None else self.view_fields

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = RoleAssignmentForm if obj is None else forms.ModelForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.view_fields if obj is not None else ()

    @admin.display(description="granted to")
    def principal_link(self, assignment: RoleAssignment) -> str:
        if assignment.service_account_id:
            return format_html("{} (service account)", assignment.service_account)
        return str(assignment.user)

    @admin.display(description="state")
    def state(self, assignment: RoleAssignment) -> str:
        if assignment.expires_at is not None and assignment.expires_at <= timezone.now():
            return "expired (grants nothing)"
        if assignment.service_account_id and not assignment.service_account.is_active:
            return "dormant (service account disabled)"
        return "active"

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # an assignment is granted or revoked, never edited: revoke and grant again

    def service_save(self, request: HttpRequest, obj: RoleAssignment, form: Any, change: bool) -> RoleAssignment:
        data = form.cleaned_data
        return services.role_assign(actor=request.user, workspace=data["workspace"], role=data["role"],
                                    user=data["person"], service_account=data["service_account"],
                                    expires_at=data.get("expires_at"))

    def delete_check(self, request: HttpRequest, obj: RoleAssignment) -> None:
        services.role_revoke_check(actor=request.user, assignment=obj)

    def service_delete(self, request: HttpRequest, obj: RoleAssignment) -> None:
        services.role_revoke(actor=request.user, assignment=obj)


# --- service accounts ----------------------------------------------------------------------------------
def _keys_phrase(count: int, noun: str = "key") -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


@admin.register(ServiceAccount)
class ServiceAccountAdmin(KeysAdmin):
    form = ServiceAccountForm
    manage_permission = "keys.issue"
    list_display = ("name", "workspace", "is_active", "remote_id", "created_by", "created_at")
    list_select_related = ("workspace", "created_by")
    list_filter = ("is_active", WorkspaceFilter)
    search_fields = ("name", "=remote_id")
    fields = ("workspace", "name", "description", "is_active", "disabled_at", "disabled_by", "remote_id",
              "created_by", "roles", "keys")
    readonly_fields = ("is_active", "disabled_at", "disabled_by", "remote_id", "created_by", "roles", "keys")
    actions = ["disable_service_accounts", "enable_service_accounts"]
    # The keys apps hang their keys on a service account (api_keys, broker_keys); this floor reads them through
    # those reverse relations and links to their pages by URL name, importing neither app.
    LIVE_API_KEY_STATES = ("pending", "active", "superseded")

    def _live_counts(self, sa: ServiceAccount) -> tuple[int, int]:
        api = getattr(sa, "api_keys", None)
        broker = getattr(sa, "broker_keys", None)
        return (api.filter(state__in=self.LIVE_API_KEY_STATES).count() if api is not None else 0,
                broker.filter(revoked_at__isnull=True).count() if broker is not None else 0)

    @admin.display(description="keys")
    def keys(self, sa: ServiceAccount) -> str:
        if not sa.pk:
            return "—"
        rows = []
        for key in sa.api_keys.select_related("environment").order_by("-created_at")[:50]:
            rows.append(format_html('<li><a href="{}">{}</a> — API key, {}, {}</li>',
                                    reverse("admin:keys_apikey_change", args=[key.pk]), key.name,
                                    key.environment.name, key.get_state_display()))
        for key in sa.broker_keys.select_related("environment").order_by("-created_at")[:50]:
            rows.append(format_html('<li><a href="{}">{}</a> — broker key, {}, {}</li>',
                                    reverse("admin:broker_brokerkey_change", args=[key.pk]), key,
                                    key.environment.name, "revoked" if key.revoked_at else "live"))
        if not rows:
            return "none"
        items = format_html_join("", "{}", ((r,) for r in rows))
        return format_html('<ul class="kw-sublist" id="service-account-keys">{}</ul>', items)

    def get_urls(self) -> list:
        return [path("<path:object_id>/disable/", self.admin_site.admin_view(self.disable_view),
                     name="workspaces_serviceaccount_disable"), *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        sa = self.get_scoped_object_or_404(request, object_id)
        can_disable = sa.is_active and access.has_perm(request.user, "keys.revoke", sa.workspace_id)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}),
                                                                   "can_disable": can_disable})

    def disable_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        sa = self.get_scoped_object_or_404(request, object_id, "keys.revoke")
        if request.method == "POST":
            try:
                done = services.service_account_disable(actor=request.user, service_account=sa)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), level=messages.ERROR)
            else:
                self.message_user(request, f"Disabled “{sa}”: {_keys_phrase(done.keys_revoked)} revoked.",
                                  level=messages.SUCCESS)
            return HttpResponseRedirect(self.change_url(sa))
        api, broker = self._live_counts(sa)
        return self.render_page(request, "admin/keyward/confirm.html", title=f"Disable {sa}", obj=sa, original=sa,
                                confirm_label="Disable and revoke its keys", danger=True,
                                warning=f"Disabling “{sa}” revokes its {_keys_phrase(api, 'API key')} and "
                                        f"{_keys_phrase(broker, 'broker key')} at once; revoked keys stay revoked "
                                        "if you enable it again.",
                                lines=["Its roles stay assigned but grant nothing while it is disabled."])

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.service_accounts_for(request.user, self.view_permission)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # audit events and keys refer to it: disable it instead

    @admin.display(description="roles")
    def roles(self, sa: ServiceAccount) -> str:
        if not sa.pk:
            return "—"
        rows = format_html_join(", ", "{}", ((a.role.name,) for a in sa.role_assignments.select_related("role")))
        assign = (reverse("admin:workspaces_roleassignment_add")
                  + f"?workspace={sa.workspace_id}&service_account={sa.pk}")
        return format_html('{} <a href="{}">Assign a role</a>', rows or "none", assign)

    def service_save(self, request: HttpRequest, obj: ServiceAccount, form: Any, change: bool) -> ServiceAccount:
        data = {f: form.cleaned_data[f] for f in services.SERVICE_ACCOUNT_FIELDS}
        if change:
            return services.service_account_update(actor=request.user, service_account=obj, **data)
        return services.service_account_create(actor=request.user, workspace=form.cleaned_data["workspace"], **data)

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str, needs: tuple[str, ...]) -> None:
        done, refused, keys_revoked = 0, [], 0
        service = services.service_account_disable if verb == "disabled" else services.service_account_enable
        for sa in queryset:
            if not all(access.has_perm(request.user, p, sa.workspace_id) for p in needs):
                refused.append(f"{sa}: you lack {' and '.join(needs)} in its workspace")
                continue
            try:
                keys_revoked += getattr(service(actor=request.user, service_account=sa), "keys_revoked", 0)
                done += 1
            except ValidationError as exc:
                refused.append(f"{sa}: {' '.join(exc.messages)}")
        if done:
            revoked = f"; {_keys_phrase(keys_revoked)} revoked" if verb == "disabled" else ""
            self.message_user(request, f"{done} service account(s) {verb}{revoked}.", level=messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    @admin.action(description="Disable selected service accounts (revokes their keys)")
    def disable_service_accounts(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "disabled", ("keys.revoke",))

    @admin.action(description="Enable selected service accounts")
    def enable_service_accounts(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "enabled", ("keys.issue", "keys.revoke"))

    def _anywhere(self, request: HttpRequest, *permissions: str) -> bool:
        """Does the person hold all these permissions together in at least one workspace?"""
        sets = [access.workspaces_with(request.user, p) for p in permissions]
        return any(s is None for s in sets) or bool(set.intersection(*sets))

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not self._anywhere(request, "keys.revoke"):
            actions.pop("disable_service_accounts", None)
        if not self._anywhere(request, "keys.issue", "keys.revoke"):
            actions.pop("enable_service_accounts", None)
        return actions


# --- people (Django's User) -----------------------------------------------------------------------------
admin.site.unregister(User)
admin.site.unregister(Group)  # Django groups grant nothing in Keyward: roles do


@admin.register(User)
class PersonAdmin(KeysAdmin):
    """People who hold a role where the signed-in person may assign roles. Only superusers change a login
    (it is shared by every workspace); anyone with roles.assign adds people to their workspaces."""

    view_permission = "roles.assign"
    manage_permission = "roles.assign"
    # A person belongs to the workspaces where they hold a role (get_queryset and the has_* checks below
    # use it through the selectors; the base class's single-object lookup does not apply).
    workspace_lookup_override = "role_assignments__workspace_id"
    workspace_form_fields = ()
    list_display = ("username", "email", "first_name", "last_name", "is_active", "roles_here")
    list_filter = ("is_active",)
    search_fields = ("username", "first_name", "last_name", "email")
    ordering = ("username",)
    add_fieldsets = (("Person", {"fields": ("username", "email", "first_name", "last_name")}),
                     ("First role", {"fields": ("workspace", "role", "expires_at")}))
    change_fieldsets = ((None, {"fields": ("username", "first_name", "last_name", "email", "is_active",
                                           "password_state", "last_login", "date_joined")}),
                        ("Roles in your workspaces", {"fields": ("roles_here",)}))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = RoleAssignment.objects.select_related("role", "workspace").restrict(request.user,
                                                                                    self.view_permission)
        return (selectors.users_for(request.user, self.view_permission).order_by("username")
                .prefetch_related(Prefetch("role_assignments", queryset=visible, to_attr="visible_assignments")))

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # No probing of password hashes through changelist filters (as Django's own UserAdmin).
        return not lookup.startswith("password") and super().lookup_allowed(lookup, value, request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None or policy.is_superuser(request.user):
            return self._any(request, self.view_permission)
        return selectors.users_for(request.user, self.view_permission).filter(pk=obj.pk).exists()

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy.is_superuser(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # disable the login instead: the audit trail keeps naming the person

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else ("username", "password_state", "last_login", "date_joined", "roles_here")

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = PersonForm if obj is None else UserChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        return super().add_view(request, form_url, {"title": "Add a person", **(extra_context or {})})

    @admin.display(description="roles")
    def roles_here(self, user: Any) -> str:
        # visible_assignments comes from get_queryset (list and change page alike): this person's roles in the
        # viewer's workspaces only, never in the others.
        return ", ".join(f"{a.role.name} in {a.workspace}" for a in user.visible_assignments) or "—"

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Model | None:
        obj = super().get_object(request, object_id, from_field)
        obj._viewer_is_superuser = policy.is_superuser(request.user)  # type: ignore[union-attr]
        return obj

    @admin.display(description="password")
    def password_state(self, user: Any) -> str:
        state = "set" if user.has_usable_password() else "not set (cannot sign in with a password)"
        if not getattr(user, "_viewer_is_superuser", False):
            return state
        return format_html('{} <a href="{}">Set password</a>', state,
                           reverse("admin:auth_user_password_change", args=[user.pk]))

    def service_save(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        if change:
            return services_people.user_update(actor=request.user, user=obj,
                                               **{f: data[f] for f in services_people.USER_FIELDS})
        return services_people.person_create(actor=request.user, workspace=data["workspace"], role=data["role"],
                                             username=data["username"], email=data["email"],
                                             first_name=data["first_name"], last_name=data["last_name"],
                                             expires_at=data.get("expires_at"))

    def get_urls(self) -> list:
        return [path("<path:object_id>/password/", self.admin_site.admin_view(self.password_view),
                     name="auth_user_password_change"), *super().get_urls()]

    @method_decorator(sensitive_post_parameters())
    def password_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        user = self.get_scoped_object_or_404(request, unquote(object_id))  # 404 outside the person's reach
        if not self.has_change_permission(request, user):
            raise PermissionDenied

        def set_password(form: AdminPasswordChangeForm) -> str:
            usable = form.cleaned_data["set_usable_password"]
            services_people.user_set_password(actor=request.user, user=user,
                                              password=form.cleaned_data["password1"] if usable else None)
            if user.pk == request.user.pk:
                user.refresh_from_db()
                update_session_auth_hash(request, user)
            return "Password changed." if usable else "Password sign-in turned off."

        def django_context(form: AdminPasswordChangeForm) -> dict[str, Any]:
            # What Django's own change_password.html expects (as UserAdmin.user_change_password gives it).
            return {
                "adminForm": admin.helpers.AdminForm(form, [(None, {"fields": list(form.base_fields)})], {}),
                "form_url": "", "is_popup": IS_POPUP_VAR in request.GET, "is_popup_var": IS_POPUP_VAR,
                "add": True, "change": False, "has_delete_permission": False, "has_change_permission": True,
                "has_absolute_url": False, "original": user, "save_as": False, "show_save": True,
            }

        return self.form_page(request, user, form_class=lambda data: AdminPasswordChangeForm(user, data),
                              template="admin/auth/user/change_password.html",
                              title=f"Set password: {user.get_username()}", on_valid=set_password,
                              message_level=messages.INFO, context=django_context)


# --- workspaces and environments ---------------------------------------------------------------------------
@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    workspace_form_fields = ()
    form = WorkspaceAccountForm
    list_display = ("name", "slug", "platform_account", "created_at")
    list_select_related = ("platform_account",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "description", "platform_account")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "platform_account":
            kwargs["queryset"] = PlatformAccount.objects.restrict(request.user, "workspace.manage")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return access.has_perm(request.user, "workspace.manage", None)  # superusers only

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # a workspace holds the audit trail's context; it is never deleted from the admin

    def service_save(self, request: HttpRequest, obj: Workspace, form: Any, change: bool) -> Workspace:
        data = {f: form.cleaned_data[f] for f in ("name", "slug", "description")}
        account = form.cleaned_data.get("platform_account")
        if not change:
            return services.workspace_create(actor=request.user, platform_account=account, **data)
        workspace = services.workspace_update(actor=request.user, workspace=Workspace.objects.get(pk=obj.pk), **data)
        if account is not None and account.pk != workspace.platform_account_id:
            workspace = workspace_bind_account(actor=request.user, workspace=workspace, account=account)
        return workspace

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:  # a move refused (the workspace has objects on its account)
            for message in exc.messages:
                self.message_user(request, message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


# --- platform accounts -------------------------------------------------------------------------------------
class RotationDueFilter(admin.SimpleListFilter):
    title = "key rotation"
    parameter_name = "rotation"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("due", f"Due (key older than {settings.PLATFORM_KEY_ROTATION_DAYS} days)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() != "due":
            return queryset
        return queryset.filter(key_set_at__lt=timezone.now() - timedelta(days=settings.PLATFORM_KEY_ROTATION_DAYS))


@admin.register(PlatformAccount)
class PlatformAccountAdmin(WorkspaceScopedAdmin):
    """Platform accounts and Keyward's key for each: seen by people of the workspaces bound to one, managed by
    superusers and by Admins of every such workspace (the services check it). The key is write-only."""

    form = PlatformAccountForm
    workspace_form_fields = ()
    manage_permission = "workspace.manage"
    list_display = ("name", "base_url", "state_badge", "key", "key_age", "workspace_count", "last_success_at",
                    "last_failure_at")
    list_filter = ("state", RotationDueFilter)
    search_fields = ("name",)
    change_form_template = "admin/workspaces/platformaccount/change_form.html"
    readonly_fields = ("state_badge", "verified_at", "last_success_at", "last_failure_at", "last_failure", "plan",
                       "key", "key_age", "key_version", "listed_as", "overlap", "bound_workspaces")

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ((None, {"fields": ("name", "base_url", "api_key", "workspace")}),)
        return ((None, {"fields": ("name", "base_url", "api_key")}),
                ("State", {"fields": ("state_badge", "verified_at", "last_success_at", "last_failure_at",
                                      "last_failure", "plan", "bound_workspaces")}),
                ("Keyward's key", {"fields": ("key", "key_age", "key_version", "listed_as", "overlap")}))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The count's GROUP BY drops Meta.ordering: order explicitly, or pages could repeat or skip rows.
        return super().get_queryset(request).annotate(bound=Count("workspaces")).order_by("name", "pk")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._any(request, self.view_permission)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None:
            return self._any(request, self.view_permission)
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def _may_manage(self, request: HttpRequest, account: PlatformAccount | None) -> bool:
        try:
            account_services._require_account_admin(request.user, account)
        except PermissionDenied:
            return False
        return True

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._may_manage(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may_manage(request, obj) if obj is not None else self._may_manage(request, None)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None:
            return access.has_perm(request.user, "workspace.manage", None)
        return self._may_manage(request, obj) and not obj.is_default and not obj.workspaces.exists()

    # --- columns ---
    @admin.display(description="state")
    def state_badge(self, account: PlatformAccount) -> str:
        tone = {"verified": "ok", "failing": "bad"}.get(account.state, "quiet")
        return badge(account.get_state_display(), tone, title=account.last_failure or None)

    @admin.display(description="key")
    def key(self, account: PlatformAccount) -> str:
        return f"…{account.key_hint}" if account.key_hint else "set (too short for a hint)"

    @admin.display(description="key age")
    def key_age(self, account: PlatformAccount) -> str:
        if account.key_set_at is None:
            return "—"
        days = (timezone.now() - account.key_set_at).days
        due = days >= settings.PLATFORM_KEY_ROTATION_DAYS
        return format_html("{} days{}", days, " (rotation due)" if due else "")

    @admin.display(description="workspaces")
    def workspace_count(self, account: PlatformAccount) -> int:
        return getattr(account, "bound", 0)

    @admin.display(description="plan")
    def plan(self, account: PlatformAccount) -> str:
        info = account.platform_info or {}
        return info.get("tier") or "not said by the platform (the key may not read the subscription)"

    @admin.display(description="where the platform lists the key")
    def listed_as(self, account: PlatformAccount) -> str:
        if not account.key_remote_id:
            return "not listed in a service account Keyward can see: rotate by pasting a successor"
        perms = account.key_permissions
        granted = "every permission" if perms in (None, "all") else ", ".join(perms)
        return format_html("service account {}, key {} ({})", account.key_service_account_id,
                           account.key_remote_id, granted)

    @admin.display(description="previous key")
    def overlap(self, account: PlatformAccount) -> str:
        if not account.previous_key_hint and not account.overlap_until:
            return "none"
        return format_html("…{} valid until {} (then revoked once unused)", account.previous_key_hint,
                           account.overlap_until.strftime("%Y-%m-%d %H:%M UTC") if account.overlap_until else "—")

    @admin.display(description="bound workspaces")
    def bound_workspaces(self, account: PlatformAccount) -> str:
        names = list(account.workspaces.order_by("name").values_list("name", flat=True)) if account.pk else []
        return ", ".join(names) or "none yet"

    # --- writes ---
    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = account_services.platform_account_update(
                actor=request.user, account=PlatformAccount.objects.get(pk=obj.pk), name=data["name"],
                base_url=data["base_url"], api_key=data.get("api_key") or "", verified=form.verification)
        else:
            saved = account_services.platform_account_create(
                actor=request.user, name=data["name"], base_url=data["base_url"], api_key=data["api_key"],
                verified=form.verification, bind=data.get("workspace"))
        obj.pk, obj._state.adding, obj._state.db = saved.pk, False, saved._state.db

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        account_services.platform_account_delete(actor=request.user, account=obj)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:  # a rule that changed between the form's check and the save
            for message in exc.messages:
                self.message_user(request, message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Model | None = None) -> Any:
        context["can_manage"] = obj is not None and self._may_manage(request, obj)
        context["can_discover"] = obj is not None and discovery.may_discover(request.user, obj.pk)
        allowed = access.workspaces_with(request.user, "incidents.manage")
        context["can_open_incident"] = obj is not None and (
            allowed is None or obj.workspaces.filter(pk__in=allowed).exists())
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- pages ---
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [path("<path:object_id>/verify/", view(self.verify_view), name="workspaces_platformaccount_verify"),
                path("<path:object_id>/rotate/", view(self.rotate_view), name="workspaces_platformaccount_rotate"),
                path("<path:object_id>/revoke-previous/", view(self.revoke_previous_view),
                     name="workspaces_platformaccount_revoke_previous"),
                path("<path:object_id>/discover/", view(self.discover_view),
                     name="workspaces_platformaccount_discover"),
                *super().get_urls()]

    def discover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from workspaces.admin_discovery import discover_page

        return discover_page(self, request, object_id)

    def _managed(self, request: HttpRequest, object_id: str) -> PlatformAccount:
        account = self.get_object(request, unquote(object_id))  # 404 outside the person's workspaces
        if not self._may_manage(request, account):
            raise PermissionDenied
        return account

    def _page(self, request: HttpRequest, account: PlatformAccount, *, action: str, title: str, form_class: Any,
              submit: str, on_valid: Any, form_kwargs: dict | None = None) -> HttpResponse:
        return self.form_page(request, account, form_class=form_class, form_kwargs=form_kwargs,
                              template="admin/workspaces/platformaccount/action.html", title=title,
                              on_valid=on_valid,
                              context={"account": account, "action": action, "submit_label": submit,
                                       "can_self_rotate": account_services.platform_key_can_self_rotate(account)})

    def verify_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = self._managed(request, object_id)

        def verify(form: Any) -> str:
            checked = account_services.platform_account_check(actor=request.user, account=account)
            plan = checked.platform_info.get("tier") or "plan not said"
            return f"The platform accepts the key of “{checked}” ({plan})."

        return self._page(request, account, action="verify", title=f"Verify {account}", form_class=ConfirmForm,
                          submit="Verify now", on_valid=verify)

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = self._managed(request, object_id)

        def rotate(form: Any) -> str:
            hours = form.cleaned_data["overlap_hours"]
            try:
                rotated = account_services.platform_account_rotate_key(
                    actor=request.user, account=account, pasted_key=form.cleaned_data["successor"],
                    overlap=timedelta(hours=hours))
            except PlatformError as exc:
                raise ValidationError(f"The platform refused or did not answer ({exc.code}); nothing was switched. "
                                      "Try again: a successor an earlier attempt made is cleaned up first.") from None
            return (f"Keyward now uses a new key for “{rotated}” (…{rotated.key_hint}). The old key (…"
                    f"{rotated.previous_key_hint}) stays valid for {hours} hour(s), then is revoked once unused.")

        def rotation_form(data: Any) -> KeyRotationForm:
            return KeyRotationForm(data, initial={"overlap_hours": settings.PLATFORM_KEY_OVERLAP_HOURS})

        return self._page(request, account, action="rotate", title=f"Rotate Keyward's key for {account}",
                          form_class=rotation_form, submit="Rotate key", on_valid=rotate)

    def revoke_previous_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = self._managed(request, object_id)

        def revoke(form: Any) -> str:
            try:
                account_services.platform_account_revoke_previous(actor=request.user, account=account)
            except PlatformError as exc:
                raise ValidationError(f"The platform refused or did not answer ({exc.code}).") from None
            return f"The previous key of “{account}” is revoked."

        return self._page(request, account, action="revoke", title=f"Revoke the previous key of {account}",
                          form_class=ConfirmForm, submit="Revoke previous key", on_valid=revoke)


@admin.register(Environment)
class EnvironmentAdmin(WorkspaceScopedAdmin):
    list_display = ("name", "workspace", "platform_environment", "budget", "is_production")
    list_select_related = ("workspace",)
    list_filter = ("is_production",)
    fields = ("workspace", "name", "platform_environment", "budget", "is_production")
    readonly_fields = ("budget",)

    @admin.display(description="credit budget")
    def budget(self, env: Environment) -> str:
        # Budgets are checked against the live keys' quotas, so they change only on the budgets page.
        amount = "none" if env.credit_budget is None else f"{env.credit_budget:,}"
        return format_html('{} (<a href="{}">change on the budgets page</a>)', amount,
                           reverse("admin:keys_apikey_budgets"))

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # keys and usage refer to environments; retire one by removing its budget instead

    def service_save(self, request: HttpRequest, obj: Environment, form: Any, change: bool) -> Environment:
        data = {f: form.cleaned_data[f] for f in services.ENV_FIELDS if f != "credit_budget"}
        workspace = obj.workspace if change else form.cleaned_data["workspace"]
        return services.environment_save(actor=request.user, workspace=workspace,
                                         environment=obj if change else None, **data)


from workspaces import admin_discovery  # noqa: E402,F401  (registers the observations' list)
