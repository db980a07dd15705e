"""The one admin base class every ModelAdmin in Keyward uses.

It scopes querysets to the workspaces where the signed-in person holds the view permission, checks the
matching permission on the object's own workspace for add, change, delete and custom actions, limits the
workspace choices in forms, answers 404 for objects outside the person's reach, and routes writes to
services (subclasses implement `service_save` and `service_delete`).

The custom pages an admin adds through `get_urls()` share three pieces: `get_scoped_object_or_404` (the object,
404 out of reach, 403 without a permission on its workspace), `form_page` (bind a form, call a service, show its
refusal on the form, message and redirect) and `render_page` (a template in the admin's frame). `apply_errors` is
the one place a service's `ValidationError` lands on a form. None of them sets cache headers: the admin site wraps
every view in `never_cache` (accounts/admin_site.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from project import access
from project.querysets import workspace_model, workspace_path


def apply_errors(form: forms.BaseForm, exc: ValidationError, *, rename: dict[str, str] | None = None) -> None:
    """Put a service's refusal on a form: errors keyed by one of the form's fields on that field (after `rename`,
    service name -> form name), every other error above the form."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        name = (rename or {}).get(name, name)
        form.add_error(name if name in form.fields else None, errors)


def with_workspace_labels(field: Any) -> Any:
    """A choice of workspace-owned objects names each one's workspace ("billing · Acme"): names repeat across
    workspaces, and a person in several must see which "billing" they pick. Labels that already name it stay."""
    queryset = getattr(field, "queryset", None)
    if queryset is None:
        return field
    try:
        workspace_field = queryset.model._meta.get_field("workspace")
    except FieldDoesNotExist:
        return field
    if not workspace_field.is_relation:
        return field
    field.queryset = queryset.select_related("workspace")

    def label(obj: Model) -> str:
        text = str(obj)
        workspace = obj.workspace if obj.workspace_id else None  # type: ignore[attr-defined]
        return text if workspace is None or workspace.name in text else f"{text} · {workspace.name}"

    field.label_from_instance = label
    return field


#: What a form page's `on_valid` returns: a success message (then the page redirects), or the response to send.
Outcome = str | HttpResponseBase


class WorkspaceScopedAdmin(admin.ModelAdmin):
    #: A page listing something that is not workspace-owned itself names the lookup to a workspace id here
    #: (people: through their role assignments); otherwise it is the model's `workspace_path` (project.querysets).
    workspace_lookup_override: str = ""
    #: Permission needed to see rows, and to add/change/delete them.
    view_permission: str = "workspace.view"
    manage_permission: str = "workspace.manage"
    #: Permission for adding; defaults to manage_permission.
    add_permission: str | None = None
    #: Form fields that choose a workspace (limited to workspaces where the person may manage).
    workspace_form_fields: tuple[str, ...] = ("workspace",)
    show_full_result_count = False

    # --- scoping -----------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.restricted(super().get_queryset(request), request, self.view_permission)

    def restricted(self, queryset: QuerySet, request: HttpRequest, permission: str) -> QuerySet:
        """The rows of the workspaces where the person holds `permission` (RestrictedQuerySet.restrict)."""
        if hasattr(queryset, "restrict"):
            return queryset.restrict(request.user, permission)
        allowed = access.workspaces_with(request.user, permission)
        if allowed is None:
            return queryset
        return queryset.filter(**{f"{self.workspace_lookup}__in": allowed}) if allowed else queryset.none()

    @property
    def workspace_lookup(self) -> str:
        return self.workspace_lookup_override or workspace_path(self.model)

    def workspace_id_of(self, obj: Model) -> int | None:
        value: Any = obj
        for part in self.workspace_lookup.split("__"):
            if value is None:
                return None
            value = getattr(value, part, None)
        return value

    def _any(self, request: HttpRequest, permission: str) -> bool:
        allowed = access.workspaces_with(request.user, permission)
        return allowed is None or bool(allowed)

    def _on(self, request: HttpRequest, permission: str, obj: Model | None) -> bool:
        if obj is None:
            return self._any(request, permission)
        return access.has_perm(request.user, permission, self.workspace_id_of(obj))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._any(request, self.view_permission)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._on(request, self.view_permission, obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._any(request, self.add_permission or self.manage_permission)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._on(request, self.manage_permission, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._on(request, self.manage_permission, obj)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Model | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Another workspace's object looks exactly like one that does not exist.
            raise Http404("No such object.")
        return obj

    def get_scoped_object_or_404(self, request: HttpRequest, object_id: str, *permissions: str) -> Model:
        """The object behind a page: 404 when the person cannot see it (another workspace's object looks like one
        that does not exist), then 403 when they lack one of `permissions` in its workspace."""
        obj: Model = self.get_object(request, object_id)  # type: ignore[assignment]
        for permission in permissions:
            access.require(request.user, permission, self.workspace_id_of(obj))
        return obj

    # --- custom pages (added through get_urls) --------------------------------------------------------------
    def change_url(self, obj: Model) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk],
                       current_app=self.admin_site.name)

    def render_page(self, request: HttpRequest, template: str, *, title: str, obj: Model | None = None,
                    **context: Any) -> TemplateResponse:
        """A custom page in the admin's frame: the site's context, this model's opts, the title and, for a page
        about one object, its change page as `change_url`."""
        request.current_app = self.admin_site.name
        page = {**self.admin_site.each_context(request), "opts": self.opts, "title": title}
        if obj is not None:
            page["change_url"] = self.change_url(obj)
        return TemplateResponse(request, template, {**page, **context})

    def form_page(self, request: HttpRequest, obj: Model | None, *,
                  form_class: Callable[..., forms.BaseForm], template: str, title: str,
                  on_valid: Callable[[Any], Outcome], form_kwargs: dict[str, Any] | None = None,
                  success_url: str | None = None, message_level: int = messages.SUCCESS,
                  context: dict[str, Any] | Callable[[Any], dict[str, Any]] | None = None) -> HttpResponseBase:
        """A page with one form: GET shows it; a valid POST runs `on_valid(form)`, which calls the service.

        `on_valid` returns the success message (shown, then a redirect to `success_url`, by default the object's
        change page, else this page) or a response of its own (a show-once secret page). A `ValidationError` it
        raises is put on the form (`apply_errors`) and the page is shown again. Look the object up with
        `get_scoped_object_or_404` first (404, 403); `form_class` is called with the POST data (or None) and
        `form_kwargs`; `context` adds to the template's context, or builds that addition from the form.
        """
        form = form_class(request.POST or None, **(form_kwargs or {}))
        if request.method == "POST" and form.is_valid():
            try:
                outcome = on_valid(form)
            except ValidationError as exc:
                apply_errors(form, exc)
            else:
                if isinstance(outcome, HttpResponseBase):
                    return outcome
                self.message_user(request, outcome, message_level)
                where = success_url or (self.change_url(obj) if obj is not None else request.get_full_path())
                return HttpResponseRedirect(where)
        extra = context(form) if callable(context) else (context or {})
        return self.render_page(request, template, title=title, obj=obj, form=form, media=self.media + form.media,
                                **extra)

    # --- forms ---------------------------------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in self.workspace_form_fields:
            kwargs["queryset"] = db_field.remote_field.model._default_manager.restrict(
                request.user, self.add_permission or self.manage_permission)
        return with_workspace_labels(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        return with_workspace_labels(super().formfield_for_manytomany(db_field, request, **kwargs))

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            # Moving an object between workspaces would move it across a trust boundary.
            fields += [f for f in self.workspace_form_fields if f not in fields and hasattr(obj, f)]
        return fields

    # --- the per-object audit history ("Keyward history" on every change page) ------------------------------
    def keyward_history_url(self, request: HttpRequest, obj: Model | None) -> str | None:
        """The audit list filtered to this object, for people who may read the trail of its workspace."""
        if obj is None or obj.pk is None:
            return None
        if not access.has_perm(request.user, "audit.view", self.workspace_id_of(obj)):
            return None
        from django.urls import reverse
        from django.utils.http import urlencode

        query = urlencode({"object_type": obj._meta.label_lower, "object_id": obj.pk})
        return f"{reverse('admin:audit_auditevent_changelist')}?{query}"

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Model | None = None) -> Any:
        context["keyward_history_url"] = self.keyward_history_url(request, obj) if change else None
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- writes go through services -------------------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        saved = self.service_save(request, obj, form, change)
        if saved is not None and saved is not obj:
            obj.pk = saved.pk
            obj._state.adding = False
            obj._state.db = saved._state.db

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self.service_delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            if not self.has_delete_permission(request, obj):
                raise Http404("No such object.")
            self.service_delete(request, obj)

    def service_save(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> Model | None:
        raise NotImplementedError(f"{type(self).__name__} must save through a service")

    def service_delete(self, request: HttpRequest, obj: Model) -> None:
        raise NotImplementedError(f"{type(self).__name__} must delete through a service")


class ReadOnlyScopedAdmin(WorkspaceScopedAdmin):
    """Lists and details only: no add, change or delete for anyone, superusers included."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class WorkspaceFilter(admin.SimpleListFilter):
    """The workspaces where the person holds the list's view permission, by name: fixed choices from the
    workspaces table (no DISTINCT scan of the listed table), filtering along the listed model's workspace path."""

    title = "workspace"
    parameter_name = "workspace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        permission = getattr(model_admin, "view_permission", "workspace.view")
        workspaces = workspace_model()._default_manager.restrict(request.user, permission).order_by("name")
        return [(str(pk), name) for pk, name in workspaces.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value or not value.isdigit():
            return queryset
        return queryset.filter(**{workspace_path(queryset.model): int(value)})


def scoped_related_filter(field: str, *, title: str | None = None,
                          permission: str = "workspace.view") -> type[admin.SimpleListFilter]:
    """A list filter over a foreign key whose choices are only the related objects in the person's workspaces.

    Django's default related-field filters read the whole related table, which would show another workspace's
    names as filter choices.
    """

    class ScopedRelatedFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__id__exact"

        def __init__(self, request: HttpRequest, params: Any, model: type[Model], model_admin: Any) -> None:
            self.title = title or model._meta.get_field(field).verbose_name
            self.related_model = model._meta.get_field(field).related_model
            super().__init__(request, params, model, model_admin)

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            qs = self.related_model._default_manager.restrict(request.user, permission)
            return [(str(obj.pk), str(obj)) for obj in qs[:200]]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            return queryset.filter(**{f"{field}_id": self.value()}) if self.value() else queryset

    ScopedRelatedFilter.__name__ = f"Scoped{field.title().replace('_', '')}Filter"
    return ScopedRelatedFilter


# --- badges: a state's label, coloured by a tone class of static/keyward/admin.css (no inline style: the CSP) ---
def badge(label: str, tone: str, *, title: str | None = None, tag: str = "span") -> str:
    """`<span class="kw-badge kw-tone-ok">synced</span>`; tones: ok, warn, bad, critical, info, muted, quiet."""
    if title is None:
        return format_html('<{} class="kw-badge kw-tone-{}">{}</{}>', tag, tone, label, tag)
    return format_html('<{} class="kw-badge kw-tone-{}" title="{}">{}</{}>', tag, tone, title, label, tag)


# --- the sync state of an object, as a badge in lists and pages ----------------------------------------------
SYNC_LABELS = {
    None: ("never queued", "muted"), "pending": ("pending", "warn"), "running": ("syncing", "warn"),
    "done": ("synced", "ok"), "failed": ("failed", "bad"), "dead": ("failed (gave up)", "bad"),
    "superseded": ("pending", "warn"), "discarded": ("not synced (discarded)", "muted"),
}


def sync_badge(state: str | None, error: str | None) -> str:
    label, tone = SYNC_LABELS.get(state, (state, "muted"))
    return badge(label, tone, title=error or "")
