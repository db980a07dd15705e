"""Admin forms of the keys app. They offer only choices the signed-in person may use and repeat the
services' checks (the `*_check` functions) so a refusal shows on the right field; the services enforce."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils.html import format_html

from project.admin_base import apply_errors
from project.fields import DecryptionError
from workspaces import selectors, services
from workspaces.models import PlatformAccount, Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.permissions import CATALOGUE
from workspaces.services import people as services_people
from workspaces.services.platform_accounts import Verification, platform_key_verify, validate_base_url

PERMISSION_CHOICES = [(name, f"{name}: {text}") for name, text in CATALOGUE.items()]


class ActorFormMixin:
    """The admin sets `actor` (the signed-in person) on the form class it builds for each request."""

    actor: Any = None

    def _workspaces(self, permission: str) -> Any:
        return Workspace.objects.restrict(self.actor, permission)



class RoleForm(ActorFormMixin, forms.ModelForm):
    permissions = forms.MultipleChoiceField(choices=PERMISSION_CHOICES, widget=forms.CheckboxSelectMultiple,
                                            help_text="Only permissions you hold yourself in the role's workspace.")

    class Meta:
        model = Role
        fields = ("workspace", "name", "description", "permissions")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "workspace" in self.fields:
            self.fields["workspace"].required = True
            self.fields["workspace"].help_text = "The workspace this custom role belongs to."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        workspace = data.get("workspace") if "workspace" in self.fields else self.instance.workspace
        if workspace is None or "permissions" not in data:
            return data
        try:
            services.role_check(actor=self.actor, workspace_id=workspace.pk, permissions=data["permissions"],
                                role=self.instance if self.instance.pk else None)
        except ValidationError as exc:
            apply_errors(self, exc)
        return data


class RoleAssignmentForm(ActorFormMixin, forms.ModelForm):
    person = forms.CharField(
        required=False, max_length=254,
        help_text="Username or email of someone who already has a Keyward login. Leave blank to choose a "
                  "service account instead.")

    class Meta:
        model = RoleAssignment
        fields = ("workspace", "role", "person", "service_account", "expires_at")
        help_texts = {"expires_at": "Optional: the assignment grants nothing after this time (UTC)."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workspace"].queryset = self._workspaces("roles.assign")
        self.fields["role"].queryset = selectors.grantable_roles_anywhere(self.actor)
        self.fields["role"].help_text = ("Only roles within your own permissions in the chosen workspace; a custom "
                                         "role only in its own workspace.")
        self.fields["service_account"].queryset = (selectors.service_accounts_for(self.actor, "roles.assign")
                                                   .filter(is_active=True))
        self.fields["person"].help_text = format_html(
            "{} New to Keyward? <a href=\"{}\">Add a person</a> (creates their login with this first role).",
            self.fields["person"].help_text, reverse("admin:auth_user_add"))

    def clean_person(self) -> Any:
        text = (self.cleaned_data.get("person") or "").strip()
        if not text:
            return None
        users = get_user_model().objects
        user = users.filter(username=text).first()
        if user is None:
            matches = list(users.filter(email__iexact=text)[:2])
            if len(matches) > 1:
                raise ValidationError("Several logins share this email; enter the username instead.")
            user = matches[0] if matches else None
        if user is None:
            raise ValidationError("Nobody signs in with this username or email. Use “Add a person” to create "
                                  "their login.")
        return user

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        user, service_account = data.get("person"), data.get("service_account")
        if self.errors:
            return data
        if (user is None) == (service_account is None):
            raise ValidationError("Choose either a person or a service account.")
        self.instance.user = user
        try:
            services.role_assign_check(actor=self.actor, workspace=data["workspace"], role=data["role"], user=user,
                                       service_account=service_account, expires_at=data.get("expires_at"))
        except PermissionDenied as exc:
            self.add_error("workspace", str(exc))
        except ValidationError as exc:
            apply_errors(self, exc, rename={"user": "person"})
        return data


class PersonForm(ActorFormMixin, forms.ModelForm):
    """Add a person: their login (no password yet) and their first role in one workspace."""

    workspace = forms.ModelChoiceField(queryset=Workspace.objects.none())
    role = forms.ModelChoiceField(queryset=Role.objects.none(),
                                  help_text="Only roles within your own permissions in the chosen workspace.")
    expires_at = forms.DateTimeField(required=False, label="Role expires at",
                                     help_text="Optional: the role grants nothing after this time (UTC).")

    class Meta:
        model = get_user_model()
        fields = ("username", "email", "first_name", "last_name")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["workspace"].queryset = self._workspaces("roles.assign")
        self.fields["role"].queryset = selectors.grantable_roles_anywhere(self.actor)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            services_people.person_create_check(actor=self.actor, workspace=data["workspace"], role=data["role"],
                                         email=data.get("email") or "", expires_at=data.get("expires_at"))
        except PermissionDenied as exc:
            self.add_error("workspace", str(exc))
        except ValidationError as exc:
            apply_errors(self, exc)
        return data


class UserChangeForm(forms.ModelForm):
    class Meta:
        model = get_user_model()
        fields = ("first_name", "last_name", "email", "is_active")


class ServiceAccountForm(forms.ModelForm):
    class Meta:
        model = ServiceAccount
        fields = ("workspace", "name", "description")


# --- platform accounts ---------------------------------------------------------------------------------------
class PlatformAccountForm(forms.ModelForm):
    """Name, API URL and the admin key (write-only: never rendered back; blank on an existing account keeps the
    key). A new URL or key is verified against the platform here, so a refusal shows on its field; the service
    takes that answer instead of asking again."""

    base_url = forms.URLField(label="API base URL", max_length=300, assume_scheme="https",
                              help_text="e.g. https://api.elevenlabs.io (or a data-residency URL)")
    api_key = forms.CharField(
        label="Admin key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Pasted once, verified with read calls, stored encrypted; only its last four characters are "
                  "shown afterwards. On an existing account, leave blank to keep the current key.")

    workspace = forms.ModelChoiceField(
        queryset=Workspace.objects.none(), required=False,
        help_text="The workspace this account serves (one you manage, with nothing on another account yet). "
                  "Superusers may leave it blank and bind workspaces later.")

    actor: Any = None

    class Meta:
        model = PlatformAccount
        fields = ("name", "base_url")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verification: Verification | None = None
        if "workspace" in self.fields:
            self.fields["workspace"].queryset = Workspace.objects.restrict(self.actor, "workspace.manage")
            self.fields["workspace"].required = not getattr(self.actor, "is_superuser", False)
        if self.instance.pk is None:
            self.fields["api_key"].help_text = "Pasted once, verified with read calls, stored encrypted; only its " \
                                               "last four characters are shown afterwards."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        url, key = data.get("base_url"), data.get("api_key") or ""
        if not url or self.errors:
            return data
        try:
            data["base_url"] = url = validate_base_url(url)
        except ValidationError as exc:
            apply_errors(self, exc)
            return data
        existing = self.instance.pk is not None
        if not key and not existing:
            self.add_error("api_key", "Paste the account's admin key.")
            return data
        if key or not existing or url != self.instance.base_url:
            try:
                current = key or self.instance.api_key
            except DecryptionError:
                self.add_error("api_key", "The stored key cannot be decrypted (FIELD_ENCRYPTION_KEY): paste it again.")
                return data
            try:
                self.verification = platform_key_verify(base_url=url, api_key=current)
            except ValidationError as exc:
                apply_errors(self, exc)
        return data


class KeyRotationForm(forms.Form):
    """Rotate Keyward's key for an account: blank lets Keyward issue the successor where it can; a pasted key is
    the successor otherwise (verified before use). Write-only."""

    successor = forms.CharField(
        label="Successor key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank and Keyward issues the successor itself in the key's service account (same "
                  "permissions and allowed IPs). Paste one issued by hand otherwise.")
    overlap_hours = forms.IntegerField(
        label="Overlap (hours)", min_value=0, max_value=24 * 30,
        help_text="How long the old key stays valid; afterwards it is revoked once the platform shows no use.")


class ConfirmForm(forms.Form):
    """A page that asks only "are you sure?" (its POST is the answer)."""


class WorkspaceAccountForm(forms.ModelForm):
    """The workspace's platform account, chosen among the accounts the person may see."""

    class Meta:
        model = Workspace
        fields = ("name", "slug", "description", "platform_account")
