"""Admin forms. Secret parts are write-only fields: never prefilled, never rendered back (not even after a
validation error), blank on edit keeps the stored value.

Each form validates by running its service in a savepoint that is rolled back (``_post_clean``), so every
rule the service enforces (references, in-use renames, unreadable values) becomes an error on the right
field before anything is saved; ``run_service(commit=True)`` then does the real write.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models, transaction

from project.admin_base import apply_errors
from project.fields import CANNOT_DECRYPT, field_state
from secrets_app import services
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool
from secrets_app.validators import parse_header_lines, validate_tool_url

KEEP_HELP = "Write-only: never shown again. Leave blank to keep the current value."


class _Rollback(Exception):
    pass


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never draws a value: not the stored one, not the one just submitted (a bound form shown
    again after an error elsewhere would otherwise echo it)."""

    def format_value(self, value: Any) -> None:
        return None


def write_only(label: str, *, required: bool = False, textarea: bool = False, help_text: str = "") -> forms.CharField:
    widget: forms.Widget
    if textarea:
        widget = WriteOnlyTextarea(attrs={"rows": 4, "cols": 60, "autocomplete": "off", "spellcheck": "false"})
    else:
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
    return forms.CharField(label=label, required=required, strip=False, widget=widget, help_text=help_text)


class ServiceForm(forms.ModelForm):
    """A ModelForm whose save is a service call; the admin sets ``actor`` on the class it builds."""

    actor: Any = None
    write_only_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.original = self.instance if self.instance.pk else None
        for name in self.write_only_fields:
            field = self.fields.get(name)
            if field is None:
                continue
            field.initial = None  # never prefilled, whatever the instance holds
            if self.original is not None:
                field.required = False
                state = field_state(self.original, self._model_field(name))
                field.help_text = (f"⚠ {CANNOT_DECRYPT}. Restore the key it was written with, or enter a new value "
                                   "to replace it." if state == "unreadable" else KEEP_HELP)

    def _model_field(self, form_field: str) -> str:
        return form_field

    def get_initial_for_field(self, field: forms.Field, field_name: str) -> Any:
        if field_name in self.write_only_fields:
            return None
        return super().get_initial_for_field(field, field_name)

    def service_call(self) -> models.Model:
        raise NotImplementedError

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            with transaction.atomic():
                self.service_call()
                raise _Rollback
        except _Rollback:
            pass
        except ValidationError as exc:
            apply_errors(self, exc)

    def run_service(self) -> models.Model:
        return self.service_call()


class SecretForm(ServiceForm):
    value = write_only("Value", required=True)
    write_only_fields = ("value",)

    class Meta:
        model = Secret
        fields = ("workspace", "name", "description")

    def service_call(self) -> Secret:
        data = self.cleaned_data
        if self.original is None:
            return services.secret_create(actor=self.actor, workspace=data["workspace"], name=data["name"],
                                          description=data.get("description", ""), value=data.get("value") or "")
        return services.secret_update(actor=self.actor, secret=self.original, name=data["name"],
                                      description=data.get("description", ""), value=data.get("value") or None)


class ToolForm(ServiceForm):
    url = forms.CharField(label="URL", max_length=2048, validators=[validate_tool_url],
                          help_text="May contain {path_params}. https:// is required when a header sends a secret.")
    headers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 5, "cols": 70, "spellcheck": "false"}),
        help_text="One “Header-Name: value” per line. A value is plain text or exactly one reference: "
                  "{{ secret__name }} (a workspace secret), {{ secret__user_&lt;provider&gt;_token }} (the end "
                  "user's vault token) or {{ variable }}. Text around a reference (“Bearer {{ secret__x }}”) "
                  "is refused: the platform replaces a whole header value, so store “Bearer …” in the secret.")

    class Meta:
        model = Tool
        fields = ("workspace", "name", "description", "url", "method", "headers", "response_timeout_secs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["headers"] = "\n".join(f"{k}: {v}" for k, v in (self.instance.headers or {}).items())

    def clean_headers(self) -> dict[str, str]:
        return parse_header_lines(self.cleaned_data.get("headers") or "")

    def service_call(self) -> Tool:
        data = {f: self.cleaned_data[f] for f in services.tools.TOOL_FIELDS}
        if self.original is None:
            return services.tool_create(actor=self.actor, workspace=self.cleaned_data["workspace"], **data)
        return services.tool_update(actor=self.actor, tool=self.original, **data)


class AuthConnectionForm(ServiceForm):
    token_url = forms.URLField(label="Token URL", max_length=2048, required=False, assume_scheme="https")
    scopes = forms.CharField(required=False, help_text="Space-separated (client credentials and JWT bearer).")
    claims = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             help_text='JWT bearer: a JSON object with iss, aud and sub, e.g. {"iss": "keyward", '
                                       '"aud": "https://api.example.com", "sub": "svc-crm"}.')
    client_secret = write_only("Client secret")
    signing_secret = write_only("JWT signing secret")
    password = write_only("Password")
    token = write_only("Bearer token")
    custom_headers = write_only("Custom headers", textarea=True)
    write_only_fields = ("client_secret", "signing_secret", "password", "token", "custom_headers")

    class Meta:
        model = AuthConnection
        fields = ("workspace", "name", "kind", "provider", "client_id", "token_url", "scopes", "algorithm", "claims",
                  "username")
        widgets = {"kind": forms.RadioSelect}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = ", ".join(self.instance.header_names or []) if self.instance.pk else ""
        help_text = ("Custom headers kind: one “Header-Name: value” per line; the values are encrypted. "
                     "Write-only: leave blank to keep the current headers.")
        if names:
            help_text += f" Current header names: {names}."
        if self.original is not None and field_state(self.original, "header_values") == "unreadable":
            help_text = f"⚠ {CANNOT_DECRYPT}. " + help_text
        self.fields["custom_headers"].help_text = help_text
        if self.instance.pk and not self.is_bound:
            self.initial["scopes"] = " ".join(self.instance.scopes or [])
            self.initial["claims"] = json.dumps(self.instance.claims) if self.instance.claims else ""

    def _model_field(self, form_field: str) -> str:
        return "header_values" if form_field == "custom_headers" else form_field

    def clean_scopes(self) -> list[str]:
        return (self.cleaned_data.get("scopes") or "").split()

    def clean_claims(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("claims") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise ValidationError("Enter a JSON object, e.g. {\"iss\": \"keyward\"}.") from None
        if not isinstance(value, dict):
            raise ValidationError("Enter a JSON object, e.g. {\"iss\": \"keyward\"}.")
        return value

    def clean_custom_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("custom_headers") or ""
        return parse_header_lines(text) if text.strip() else None

    def service_call(self) -> AuthConnection:
        data = self.cleaned_data
        plain = {f: data.get(f) for f in ("name", "kind", "provider", "client_id", "token_url", "scopes",
                                          "algorithm", "claims", "username")}
        plain = {k: ("" if v is None and k not in ("scopes", "claims") else v) for k, v in plain.items()}
        secrets = {f: data.get(f) or None for f in ("client_secret", "signing_secret", "password", "token")}
        workspace = data["workspace"] if self.original is None else self.original.workspace
        return services.auth_connection_save(actor=self.actor, workspace=workspace, connection=self.original,
                                             secrets=secrets, headers=data.get("custom_headers"), **plain)


class OAuthProviderForm(ServiceForm):
    token_url = forms.URLField(label="Token URL", max_length=2048, assume_scheme="https",
                               help_text="Where refresh_token grants are sent (https).")
    client_secret = write_only("Client secret")
    write_only_fields = ("client_secret",)

    class Meta:
        model = OAuthProvider
        fields = ("workspace", "name", "slug", "token_url", "client_id", "send_client_secret_in_header")

    def service_call(self) -> OAuthProvider:
        data = self.cleaned_data
        fields = {f: data[f] for f in ("slug", "name", "token_url", "client_id", "send_client_secret_in_header")}
        workspace = data["workspace"] if self.original is None else self.original.workspace
        return services.provider_save(actor=self.actor, workspace=workspace, provider=self.original,
                                      client_secret=data.get("client_secret") or None, **fields)
