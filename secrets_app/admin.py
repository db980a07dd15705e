"""Admin for secrets, tools, auth connections and the vault. Thin: forms validate through the services and
saves call them; secret parts are write-only and never rendered, listed or echoed on an error page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from project import access
from project.admin_base import WorkspaceScopedAdmin, badge, scoped_related_filter, sync_badge
from project.fields import CANNOT_DECRYPT, field_state
from project.sync.selectors import jobs_for_object, with_sync_state
from secrets_app import services
from secrets_app.forms import AuthConnectionForm, OAuthProviderForm, SecretForm, ServiceForm, ToolForm
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool, ToolSecretReference, UserCredential
from secrets_app.selectors import SELECTORS

PERMISSION = "secrets.manage"


HELD_BY_PLATFORM = "value held by the platform only"


def held_badge() -> str:
    return format_html('<span class="kw-tone-warn">{}</span> (adopted: Keyward manages it fully once a new value '
                       "is set here)", HELD_BY_PLATFORM)


def state_badge(state: str) -> str:
    if state == "unreadable":
        return badge(CANNOT_DECRYPT, "bad", tag="strong")
    if state == "set":
        return format_html('<span class="kw-tone-ok">{}</span> (encrypted, write-only)', "set")
    return "not set"


def selected(model_admin: WorkspaceScopedAdmin, request: HttpRequest) -> QuerySet:
    """The admin's rows: the model's selector (scoped to the person's workspaces, encrypted fields deferred),
    in the admin's ordering."""
    queryset = SELECTORS[model_admin.model](request.user, model_admin.view_permission)
    ordering = model_admin.get_ordering(request)
    return queryset.order_by(*ordering) if ordering else queryset


class SecretsAdminBase(WorkspaceScopedAdmin):
    """Shared by the write-enabled admins here: the form's actor, saves through the form's service call,
    every POST field hidden from error reports, and a service's refusal shown as a message."""

    manage_permission = PERMISSION
    secret_fields: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selected(self, request)

    def get_exclude(self, request: HttpRequest, obj: Model | None = None) -> Any:
        # The encrypted model fields never take part in the ModelForm: no initial value is read (or decrypted)
        # and no cleaned value is written onto the instance. The form's declared write-only fields of the same
        # names carry new values to the service.
        return [*(super().get_exclude(request, obj) or ()), *self.secret_fields]

    add_fieldsets: Any = None

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None and self.add_fieldsets is not None:
            return self.add_fieldsets
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # A view-only page turns every listed field into a read-only display of the model's value: the
            # write-only fields must not be listed at all.
            hidden = set(getattr(self.form, "write_only_fields", ())) | set(self.secret_fields)
            fieldsets = [(name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
                         for name, opts in fieldsets]
        return fieldsets

    def get_form(self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            # The form ran the service already; this is a race (e.g. a secret deleted meanwhile). Nothing was
            # saved: the admin's transaction rolled back.
            for message in exc.messages:
                self.message_user(request, message, level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def service_save(self, request: HttpRequest, obj: Model, form: ServiceForm, change: bool) -> Model:
        return form.run_service()

    def sync_detail_for(self, kind: str, obj: Model) -> str:
        if not obj.pk:
            return "—"
        jobs = jobs_for_object(kind, obj.pk, limit=1)
        if not jobs:
            return sync_badge(None, None)
        job = jobs[0]
        reason = format_html("<br>Reason: {}", job.last_error) if job.last_error else ""
        return format_html("{} (attempts: {}, updated {}){}", sync_badge(job.state, job.last_error), job.attempts,
                           job.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"), reason)


class UsedByToolsFilter(admin.SimpleListFilter):
    """Whether any tool references the secret. A named filter, not a raw `tool_references__isnull` lookup in the
    address: Django refuses lookups across a reverse relation unless a list filter declares them."""

    title = "used by tools"
    parameter_name = "used"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Used by a tool"), ("no", "No tool uses it")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(tool_references__isnull=False).distinct()
        if self.value() == "no":
            return queryset.filter(tool_references__isnull=True)
        return queryset


@admin.register(Secret)
class SecretAdmin(SecretsAdminBase):
    form = SecretForm
    secret_fields = ("value",)
    # Grouped by workspace through the unique (workspace, name) index: the first page reads 100 index entries
    # instead of sorting the table by the joined workspace name (the model's ordering).
    ordering = ("workspace_id", "name")
    list_display = ("name", "workspace", "last_changed_at", "last_changed_by", "used_by", "sync_status")
    list_select_related = ("workspace", "last_changed_by")
    list_filter = (UsedByToolsFilter,)
    search_fields = ("name",)
    readonly_fields = ("reference", "value_state", "used_by_detail", "agents_reached", "last_changed_at",
                       "last_changed_by",
                       "remote_id", "sync_detail")

    add_fieldsets = ((None, {"fields": ("workspace", "name", "description", "value")}),)
    fieldsets = (
        (None, {"fields": ("workspace", "name", "reference", "description")}),
        ("Value", {"fields": ("value_state", "value")}),
        ("Use and history", {"fields": ("used_by_detail", "agents_reached", "last_changed_at", "last_changed_by")}),
        ("Platform", {"fields": ("remote_id", "sync_detail")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        refs = ToolSecretReference.objects.select_related("tool").only("secret_id", "header", "tool__name")
        qs = super().get_queryset(request).prefetch_related(Prefetch("tool_references", queryset=refs))
        return with_sync_state(qs, services.SECRET_KIND)

    @admin.display(description="used by tools")
    def used_by(self, secret: Secret) -> str:
        return ", ".join(sorted({ref.tool.name for ref in secret.tool_references.all()})) or "—"

    @admin.display(description="sync")
    def sync_status(self, secret: Secret) -> str:
        return sync_badge(getattr(secret, "sync_state", None), getattr(secret, "sync_error", None))

    @admin.display(description="use in headers as")
    def reference(self, secret: Secret) -> str:
        return secret.reference if secret.pk else "—"

    @admin.display(description="value")
    def value_state(self, secret: Secret) -> str:
        if secret.pk and not secret.value_known:
            return held_badge()
        return state_badge(field_state(secret, "value")) if secret.pk else "—"

    @admin.display(description="used by tools")
    def used_by_detail(self, secret: Secret) -> str:
        refs = sorted(secret.tool_references.all(), key=lambda r: (r.tool.name, r.header)) if secret.pk else []
        if not refs:
            return "No tool uses this secret."
        return format_html_join(", ", '<a href="{}">{}</a> ({})', (
            (reverse("admin:secrets_app_tool_change", args=[r.tool_id]), r.tool.name, r.header) for r in refs))

    @admin.display(description="sync state")
    def sync_detail(self, secret: Secret) -> str:
        return self.sync_detail_for(services.SECRET_KIND, secret)

    @admin.display(description="agents reached through its tools")
    def agents_reached(self, secret: Secret) -> str:
        from secrets_app.selectors import agents_using_tools

        tools = [ref.tool for ref in secret.tool_references.all()] if secret.pk else []
        agents = agents_using_tools(tools)
        if not agents:
            return "None that Keyward has seen (agents are read at discovery and at each guardrail refresh)."
        return format_html_join(", ", "{}", ((format_html('<a href="{}">{}</a>', reverse(
            "admin:agents_agent_change", args=[a.pk]), a.name) if a.pk else str(a),) for a in agents))

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        secret = self.get_scoped_object_or_404(request, object_id)
        if not self.has_delete_permission(request, secret):
            raise PermissionDenied
        tools = services.tools_using(secret)
        if tools:
            # Refused before the confirmation page, with the tools named (the service refuses too).
            self.message_user(request, services.secrets.in_use_message(secret, tools), level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:secrets_app_secret_change", args=[secret.pk]))
        return super().delete_view(request, object_id, extra_context)

    def service_delete(self, request: HttpRequest, obj: Secret) -> None:
        services.secret_delete(actor=request.user, secret=obj)


@admin.register(Tool)
class ToolAdmin(SecretsAdminBase):
    form = ToolForm
    # Grouped by workspace through the unique (workspace, name) index: the first page reads 100 index entries
    # instead of sorting the table by the joined workspace name (the model's ordering).
    ordering = ("workspace_id", "name")
    list_display = ("name", "workspace", "method", "url", "secrets", "sync_status")
    list_select_related = ("workspace",)
    search_fields = ("name", "=remote_id")
    readonly_fields = ("secrets_detail", "remote_id", "sync_detail")
    fieldsets = (
        (None, {"fields": ("workspace", "name", "description")}),
        ("Request", {"fields": ("method", "url", "headers", "response_timeout_secs", "secrets_detail")}),
        ("Platform", {"fields": ("remote_id", "sync_detail")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        refs = ToolSecretReference.objects.select_related("secret").only("tool_id", "header", "secret__name")
        qs = super().get_queryset(request).prefetch_related(Prefetch("secret_references", queryset=refs))
        return with_sync_state(qs, services.TOOL_KIND)

    @admin.display(description="secrets")
    def secrets(self, tool: Tool) -> str:
        return ", ".join(sorted({r.secret.name for r in tool.secret_references.all()})) or "—"

    @admin.display(description="secrets referenced")
    def secrets_detail(self, tool: Tool) -> str:
        refs = list(tool.secret_references.all()) if tool.pk else []
        if not refs:
            return "None."
        return format_html_join(", ", '{}: <a href="{}">{}</a>', (
            (r.header, reverse("admin:secrets_app_secret_change", args=[r.secret_id]), r.secret.name) for r in refs))

    @admin.display(description="sync")
    def sync_status(self, tool: Tool) -> str:
        return sync_badge(getattr(tool, "sync_state", None), getattr(tool, "sync_error", None))

    @admin.display(description="sync state")
    def sync_detail(self, tool: Tool) -> str:
        return self.sync_detail_for(services.TOOL_KIND, tool)

    def service_delete(self, request: HttpRequest, obj: Tool) -> None:
        services.tool_delete(actor=request.user, tool=obj)


@admin.register(AuthConnection)
class AuthConnectionAdmin(SecretsAdminBase):
    form = AuthConnectionForm
    secret_fields = AuthConnection.SECRET_FIELDS
    # Grouped by workspace through the unique (workspace, name) index: the first page reads 100 index entries
    # instead of sorting the table by the joined workspace name (the model's ordering).
    ordering = ("workspace_id", "name")
    list_display = ("name", "workspace", "kind", "provider", "updated_at", "last_changed_by", "sync_status")
    list_select_related = ("workspace", "last_changed_by")
    list_filter = ("kind",)
    search_fields = ("name", "provider", "=remote_id")
    readonly_fields = ("secret_parts", "remote_id", "sync_detail")
    fieldsets = (
        (None, {"fields": ("workspace", "name", "kind", "provider")}),
        # The kw-kind classes let the page show only the chosen kind's fields (static/keyward/admin.css).
        ("OAuth2 client credentials", {"fields": ("client_id", "client_secret"),
                                       "classes": ("kw-kind", "kw-kind--oauth2_client_credentials")}),
        ("OAuth2 client credentials and JWT bearer", {
            "fields": ("token_url", "scopes"),
            "classes": ("kw-kind", "kw-kind--oauth2_client_credentials", "kw-kind--oauth2_jwt")}),
        ("OAuth2 JWT bearer", {"fields": ("signing_secret", "algorithm", "claims"),
                               "classes": ("kw-kind", "kw-kind--oauth2_jwt")}),
        ("Basic auth", {"fields": ("username", "password"), "classes": ("kw-kind", "kw-kind--basic_auth")}),
        ("Bearer token", {"fields": ("token",), "classes": ("kw-kind", "kw-kind--bearer_auth")}),
        ("Custom headers", {"fields": ("custom_headers",), "classes": ("kw-kind", "kw-kind--custom_header_auth")}),
        ("Stored secret parts", {"fields": ("secret_parts",)}),
        ("Platform", {"fields": ("remote_id", "sync_detail"),
                      "description": "The platform holds one header per custom-header connection: a connection "
                                     "with several headers stays local (its sync job says why)."}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_sync_state(super().get_queryset(request), services.AUTH_CONNECTION_KIND)

    @admin.display(description="sync")
    def sync_status(self, conn: AuthConnection) -> str:
        return sync_badge(getattr(conn, "sync_state", None), getattr(conn, "sync_error", None))

    @admin.display(description="sync state")
    def sync_detail(self, conn: AuthConnection) -> str:
        return self.sync_detail_for(services.AUTH_CONNECTION_KIND, conn)

    @admin.display(description="secret parts")
    def secret_parts(self, conn: AuthConnection) -> str:
        if not conn.pk:
            return "—"
        if not conn.secrets_known:
            return held_badge()
        fields = AuthConnection.KIND_SECRETS.get(conn.kind, ())
        return format_html_join(", ", "{}: {}", ((f.replace("_", " "), state_badge(field_state(conn, f)))
                                                 for f in fields))

    def service_delete(self, request: HttpRequest, obj: AuthConnection) -> None:
        services.auth_connection_delete(actor=request.user, connection=obj)


@admin.register(OAuthProvider)
class OAuthProviderAdmin(SecretsAdminBase):
    form = OAuthProviderForm
    secret_fields = ("client_secret",)
    list_display = ("name", "slug", "workspace", "token_url", "client_id", "credential_count")
    list_select_related = ("workspace",)
    search_fields = ("name", "slug")
    readonly_fields = ("client_secret_state",)
    fields = ("workspace", "name", "slug", "token_url", "client_id", "client_secret_state", "client_secret",
              "send_client_secret_in_header")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Explicit: the count's GROUP BY drops the model's ordering, and the autocomplete pages by it.
        return (super().get_queryset(request).annotate(credentials_total=Count("credentials"))
                .order_by("workspace__name", "name", "pk"))

    @admin.display(description="end-user credentials")
    def credential_count(self, provider: OAuthProvider) -> int:
        return getattr(provider, "credentials_total", 0)

    @admin.display(description="client secret")
    def client_secret_state(self, provider: OAuthProvider) -> str:
        return state_badge(field_state(provider, "client_secret")) if provider.pk else "—"

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        provider = self.get_scoped_object_or_404(request, object_id)
        count = provider.credentials.count()
        if count and self.has_delete_permission(request, provider):
            self.message_user(request, f"“{provider}” still holds {count} end-user credential(s); revoke and delete "
                                       "them first.", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:secrets_app_oauthprovider_change", args=[provider.pk]))
        return super().delete_view(request, object_id, extra_context)

    def service_delete(self, request: HttpRequest, obj: OAuthProvider) -> None:
        services.provider_delete(actor=request.user, provider=obj)


@admin.register(UserCredential)
class UserCredentialAdmin(WorkspaceScopedAdmin):
    """The vault, read-only: tokens arrive from the OAuth flow and leave only through the session broker.
    Actions revoke and force a refresh; no page shows a token."""

    manage_permission = PERMISSION
    list_display = ("provider", "end_user_id", "workspace", "scope_list", "expires_at", "last_refreshed_at", "state")
    list_select_related = ("provider", "workspace")
    list_filter = ("state", scoped_related_filter("provider"))
    search_fields = ("=end_user_id",)
    fields = ("workspace", "provider", "end_user_id", "scope_list", "expires_at", "last_refreshed_at", "state",
              "last_error", "token_state")
    readonly_fields = fields
    actions = ["revoke", "force_refresh"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selected(self, request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return self._any(request, PERMISSION)

    @admin.display(description="scopes")
    def scope_list(self, credential: UserCredential) -> str:
        return " ".join(credential.scopes or []) or "—"

    @admin.display(description="tokens")
    def token_state(self, credential: UserCredential) -> str:
        return format_html("access token: {}; refresh token: {}",
                           state_badge(field_state(credential, "access_token")),
                           state_badge(field_state(credential, "refresh_token")))

    def _each(self, request: HttpRequest, queryset: QuerySet) -> list[UserCredential]:
        allowed = []
        for credential in queryset.select_related("provider"):
            if access.has_perm(request.user, PERMISSION, credential.workspace_id):
                allowed.append(credential)
            else:
                self.message_user(request, f"{credential}: you lack {PERMISSION} in its workspace.",
                                  level=messages.WARNING)
        return allowed

    # --- the credential's own page: Refresh now, Revoke (each confirmed first) ---------------------------------
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/refresh/", view(self.refresh_view), name="secrets_app_usercredential_refresh"),
            path("<path:object_id>/revoke/", view(self.revoke_view), name="secrets_app_usercredential_revoke"),
            *super().get_urls(),
        ]

    def _confirm(self, request: HttpRequest, credential: UserCredential, **context: Any) -> HttpResponse:
        return self.render_page(request, "admin/keyward/confirm.html", obj=credential, original=credential,
                                **context)

    def refresh_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        credential = self.get_scoped_object_or_404(request, object_id, PERMISSION)
        if request.method != "POST":
            return self._confirm(request, credential, title=f"Refresh {credential} now", confirm_label="Refresh now",
                                 lines=["Keyward asks the provider for a new access token with the stored refresh "
                                        "token. The end user notices nothing."])
        self.force_refresh(request, UserCredential.objects.filter(pk=credential.pk))
        return HttpResponseRedirect(self.change_url(credential))

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        credential = self.get_scoped_object_or_404(request, object_id, PERMISSION)
        if request.method != "POST":
            return self._confirm(request, credential, title=f"Revoke {credential}", confirm_label="Revoke",
                                 danger=True, warning="Revoking wipes this end user's tokens at once; it cannot be "
                                                      "undone.",
                                 lines=["Their next conversation gets no token from the vault until they connect "
                                        "their account again."])
        self.revoke(request, UserCredential.objects.filter(pk=credential.pk))
        return HttpResponseRedirect(self.change_url(credential))

    @admin.action(description="Revoke selected credentials (wipes their tokens)", permissions=["manage"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for credential in self._each(request, queryset):
            services.credential_revoke(actor=request.user, credential=credential)
            done += 1
        if done:
            self.message_user(request, f"{done} credential(s) revoked.", level=messages.SUCCESS)

    @admin.action(description="Refresh selected credentials now", permissions=["manage"])
    def force_refresh(self, request: HttpRequest, queryset: QuerySet) -> None:
        for credential in self._each(request, queryset):
            try:
                result = services.credential_refresh(actor=request.user, credential=credential)
            except ValidationError as exc:
                self.message_user(request, f"{credential}: {' '.join(exc.messages)}", level=messages.WARNING)
                continue
            if result.state == UserCredential.State.ACTIVE:
                self.message_user(request, f"{credential}: refreshed; expires {result.expires_at or 'never'}.",
                                  level=messages.SUCCESS)
            else:
                self.message_user(request, f"{credential}: refresh failed ({result.last_error}).",
                                  level=messages.ERROR)
