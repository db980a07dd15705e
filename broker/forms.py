from __future__ import annotations

import secrets
from typing import Any

from django import forms

from broker.models import BrokerKey, TokenType, WebhookAgent
from workspaces.models import Workspace


class NetworksField(forms.CharField):
    """A textarea of addresses and ranges, one per line (commas work too); the model normalises them."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Allowed addresses")
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 50}))
        kwargs.setdefault("help_text", "One IPv4/IPv6 address or CIDR range per line (203.0.113.0/24, "
                                       "2001:db8::/32). Empty = any address. A range's host bits must be zero.")
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


class TokenTypesField(forms.MultipleChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Single-use token types")
        kwargs.setdefault("choices", TokenType.choices)
        kwargs.setdefault("widget", forms.CheckboxSelectMultiple)
        kwargs.setdefault("help_text", "Single-use tokens for speech clients (POST /api/v1/tokens/<type>) this key "
                                       "may mint; none = none. They count against the rate limit and quota.")
        super().__init__(**kwargs)


class _WorkspaceLabelled(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj} — {obj.workspace}"


class _WorkspaceLabelledMultiple(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj} — {obj.workspace}"


class BrokerKeyIssueForm(forms.Form):
    workspace = forms.ModelChoiceField(queryset=Workspace.objects.none())
    service_account = _WorkspaceLabelled(queryset=None, help_text="The app backend that will hold the key; it "
                                         "needs a role with sessions.mint")
    environment = forms.ModelChoiceField(queryset=None)
    name = forms.CharField(max_length=120, help_text="What the key is for, e.g. “web app backend”")
    agents = _WorkspaceLabelledMultiple(queryset=None, widget=forms.SelectMultiple(attrs={"size": 8}),
                                        required=False,
                                        help_text="Signed-URL agents the key may open sessions for")
    token_types = TokenTypesField()
    allowed_networks = NetworksField()
    rate_limit_per_minute = forms.IntegerField(min_value=1, initial=60, label="Rate limit (requests per minute)")
    session_quota = forms.IntegerField(min_value=1, initial=1000)
    quota_period = forms.ChoiceField(choices=BrokerKey.QuotaPeriod.choices, initial=BrokerKey.QuotaPeriod.DAY)
    expires_at = forms.DateTimeField(required=False, help_text="Optional (UTC): YYYY-MM-DD HH:MM")
    carries_vault_tokens = forms.BooleanField(
        required=False, label="Carries vault tokens",
        help_text="Sessions opened with this key get their end user's vault tokens through the credential webhook "
                  "(the key's holder names the end user). Needs secrets.manage in the workspace.")
    issue_nonce = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, choices: dict[str, Any], workspaces: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workspace"].queryset = workspaces
        for name, queryset in choices.items():
            self.fields[name].queryset = queryset
        if not self.is_bound:
            self.initial["issue_nonce"] = secrets.token_urlsafe(24)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        workspace = data.get("workspace")
        if workspace is not None:
            for name in ("service_account", "environment"):
                obj = data.get(name)
                if obj is not None and obj.workspace_id != workspace.pk:
                    self.add_error(name, "This belongs to another workspace.")
            foreign = [a.name for a in data.get("agents") or [] if a.workspace_id != workspace.pk]
            if foreign:
                self.add_error("agents", f"Not agents of this workspace: {', '.join(foreign)}.")
        if "agents" in data and not data.get("agents") and not data.get("token_types"):
            self.add_error("agents", "Choose at least one agent the key may open sessions for (or a single-use "
                                     "token type it may mint).")
        return data


class BrokerKeyChangeForm(forms.ModelForm):
    allowed_networks = NetworksField()
    token_types = TokenTypesField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "agents" in self.fields:
            self.fields["agents"].required = False  # a key for speech tokens only has none; the service checks

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "agents" in data and not data.get("agents") and not data.get("token_types"):
            self.add_error("agents", "Choose at least one agent the key may open sessions for (or a single-use "
                                     "token type it may mint).")
        return data

    class Meta:
        model = BrokerKey
        fields = ("name", "agents", "token_types", "allowed_networks", "rate_limit_per_minute", "session_quota",
                  "quota_period", "expires_at", "carries_vault_tokens")


class WebhookAgentForm(forms.ModelForm):
    credential_webhook = forms.BooleanField(
        required=False, label="Credential webhook on",
        help_text="At conversation start the platform asks Keyward for the end user's fresh vault tokens, which "
                  "reach tool headers as secret__ dynamic variables, never the browser or the model.")
    credential_webhook_caller_id = forms.BooleanField(
        required=False, label="Identify phone callers by caller id",
        help_text="Also take a phone call's caller id (E.164) as the end user id. Caller ids can be spoofed: "
                  "only for vaults keyed by phone number, where that risk is accepted.")

    class Meta:
        model = WebhookAgent
        fields = ("credential_webhook", "credential_webhook_caller_id")

