"""Forms of the API-key pages. They shape input; every rule is enforced again by keys.services."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from keys.models import ALL_SCOPES, PLATFORM_SCOPES, ApiKey, KeyPolicy
from project.admin_base import apply_errors
from workspaces.models import Environment, ServiceAccount

#: The platform's 52 permissions grouped by area for the picker (a permission the platform adds later lands in
#: "Other" until it is placed here).
SCOPE_AREAS: dict[str, tuple[str, ...]] = {
    "Agents and conversations": ("convai_read", "convai_write", "webhooks_write", "flows", "templates",
                                 "conversation_privacy_manage", "agents_architect"),
    "Speech and audio": ("text_to_speech", "speech_to_speech", "speech_to_text", "sound_generation",
                         "audio_isolation", "forced_alignment", "music_generation", "image_video_generation",
                         "speech_history_read", "speech_history_write", "synthid_detector"),
    "Voices": ("voices_read", "voices_write", "voice_generation", "add_voice_from_voice_library",
               "create_instant_voice_clone", "create_professional_voice_clone", "publish_voice_to_voice_library",
               "share_voice_externally", "voice_collections_read", "voice_collections_write"),
    "Models": ("models_read", "models_write"),
    "Projects, dubbing and dictionaries": ("projects_read", "projects_write", "dubbing_read", "dubbing_write",
                                           "audio_native_read", "audio_native_write",
                                           "pronunciation_dictionaries_read", "pronunciation_dictionaries_write"),
    "Account and workspace": ("user_read", "user_write", "workspace_read", "workspace_write",
                              "workspace_analytics_full_read", "workspace_members_read", "workspace_members_invite",
                              "workspace_members_remove", "group_members_manage", "service_account_write",
                              "create_user_api_key", "audit_log_read", "terms_of_service_accept",
                              "copy_resources_cross_workspace"),
}


def _scope_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    placed = {s for scopes in SCOPE_AREAS.values() for s in scopes}
    groups = [(area, [(s, s) for s in scopes if s in PLATFORM_SCOPES]) for area, scopes in SCOPE_AREAS.items()]
    other = [(s, s) for s in PLATFORM_SCOPES if s not in placed]
    return [g for g in groups if g[1]] + ([("Other", other)] if other else [])


SCOPE_CHOICES = _scope_choices()


class ScopePicker(forms.CheckboxSelectMultiple):
    """The scopes by area, with a search box (keys/static/keys/scope_picker.js; without script, every box shows)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"class": "kw-scope-picker", **(attrs or {})})

    class Media:
        js = ("keys/scope_picker.js",)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class ScopesMixin(forms.Form):
    all_scopes = forms.BooleanField(
        label="All scopes", required=False,
        help_text="Every permission, including ones the platform adds later. Rarely what a key needs; flagged in "
                  "production.")
    scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES, required=False, widget=ScopePicker,
        help_text="Least privilege: only what this key's job calls.")
    allowed_ips = forms.CharField(
        label="Allowed IPs", required=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 50}),
        help_text="Optional: one IPv4/IPv6 address or CIDR range per line (203.0.113.0/24, 2001:db8::/48). "
                  "Empty = any address. Enterprise feature on the platform.")

    def clean_allowed_ips(self) -> list[str]:
        return _lines(self.cleaned_data.get("allowed_ips", ""))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("all_scopes"):
            if data.get("scopes"):
                self.add_error("scopes", "Choose either “All scopes” or individual scopes, not both.")
            data["scopes"] = ALL_SCOPES
        elif not data.get("scopes") and "scopes" not in self.errors:
            self.add_error("scopes", "Choose at least one scope.")
        return data


class ApiKeyIssueForm(ScopesMixin):
    """Issue a key. `request_uuid` is the key's future id: a resubmitted form finds the key it already made."""

    request_uuid = forms.UUIDField(widget=forms.HiddenInput)
    service_account = forms.ModelChoiceField(queryset=ServiceAccount.objects.none())
    environment = forms.ModelChoiceField(queryset=Environment.objects.none())
    name = forms.CharField(max_length=120, help_text="What uses the key, e.g. “billing backend”.")
    credit_quota = forms.IntegerField(
        min_value=0, required=False,
        help_text="Credits this key may spend per billing period. Required where the environment has a budget; "
                  "the quotas of an environment's live keys cannot add up past it.")
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"], help_text="Optional (UTC).")

    field_order = ["request_uuid", "service_account", "environment", "name", "all_scopes", "scopes", "credit_quota",
                   "allowed_ips", "expires_at"]

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        accounts = ServiceAccount.objects.filter(is_active=True).select_related("workspace").restrict(user,
                                                                                                 "keys.issue")
        environments = Environment.objects.select_related("workspace").restrict(user, "keys.issue")
        self.fields["service_account"].queryset = accounts.order_by("workspace__name", "name")
        self.fields["service_account"].label_from_instance = lambda sa: f"{sa.workspace} / {sa.name}"
        self.fields["environment"].queryset = environments.order_by("workspace__name", "name")
        if not self.is_bound:
            self.initial.setdefault("request_uuid", uuid.uuid4())

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        account, environment = data.get("service_account"), data.get("environment")
        if account and environment and account.workspace_id != environment.workspace_id:
            self.add_error("environment", f"Choose an environment of {account.workspace}, the account's workspace.")
        return data


class ApiKeyChangeForm(ScopesMixin, forms.ModelForm):
    """Change an active key's name, scopes, quota, network allowlist and expiry (synced with a PATCH)."""

    class Meta:
        model = ApiKey
        fields = ("name", "credit_quota", "expires_at")

    field_order = ["name", "all_scopes", "scopes", "credit_quota", "allowed_ips", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["all_scopes"] = self.instance.has_all_scopes
            self.initial["scopes"] = [] if self.instance.has_all_scopes else list(self.instance.scopes)
            self.initial["allowed_ips"] = "\n".join(self.instance.allowed_ips)

    actor: Any = None  # set by the admin (the person changing the key)

    def update_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"name": data["name"], "scopes": data["scopes"], "credit_quota": data["credit_quota"],
                "allowed_ips": data["allowed_ips"], "expires_at": data["expires_at"]}

    def _post_clean(self) -> None:
        # Instead of the model's own validation: the service's, which also checks the budget across rows.
        if self.errors:
            return
        from keys.services import api_key_update_check

        try:
            api_key_update_check(actor=self.actor, key=self.instance, **self.update_fields())
        except ValidationError as exc:
            apply_errors(self, exc)


class RotateForm(forms.Form):
    request_uuid = forms.UUIDField(widget=forms.HiddenInput)
    overlap_days = forms.IntegerField(
        min_value=0, max_value=90, label="Overlap (days)",
        help_text="How long the old key stays valid next to its successor. It is revoked after that once it has "
                  "gone quiet; while it is still used an alert says so.")

    def __init__(self, *args: Any, policy: KeyPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.update(request_uuid=uuid.uuid4(), overlap_days=policy.default_overlap_days)


class RotateNowForm(forms.Form):
    request_uuid = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["request_uuid"] = uuid.uuid4()


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}),
                             help_text="Goes in the audit trail, e.g. “leaked in a CI log”, “service retired”.")


class SuspendForm(forms.Form):
    """The reason for suspending (required) or resuming (optional) a key; it goes in the audit trail."""

    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 60}),
                             help_text="Goes in the audit trail, e.g. “investigating a spend spike”.")

    def __init__(self, *args: Any, required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required


class LeakCheckForm(forms.Form):
    text = forms.CharField(
        label="Text to check", strip=False, widget=forms.Textarea(attrs={"rows": 14, "cols": 100,
                                                                          "autocomplete": "off",
                                                                          "spellcheck": "false"}),
        help_text="A log excerpt, a screenshot's OCR, a diff. Checked in memory and not stored, logged or echoed.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["text"].validators.append(_max_chars)


def _max_chars(value: str) -> None:
    limit = settings.API_KEY_LEAK_CHECK_MAX_CHARS
    if len(value) > limit:
        raise ValidationError(f"At most {limit:,} characters per check; split the text.")


class KeyPolicyForm(forms.ModelForm):
    class Meta:
        model = KeyPolicy
        fields = ("workspace", "rotation_period_days", "max_live_keys_per_account_per_env", "idle_days",
                  "default_overlap_days", "quiet_hours")


class BudgetsForm(forms.Form):
    """One budget field per environment the person may manage (`budget_<id>`; blank = no budget)."""

    def __init__(self, *args: Any, environments: list[tuple[Environment, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = []
        for env, allocated in environments:
            name = f"budget_{env.pk}"
            self.fields[name] = forms.IntegerField(min_value=0, required=False, label=str(env),
                                                   initial=env.credit_budget)
            self.rows.append((env, allocated, name))

    def budgets(self) -> dict[int, int | None]:
        return {env.pk: self.cleaned_data.get(name) for env, _, name in self.rows}
