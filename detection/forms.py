"""Forms of the detection admin: the detection policy, opening an incident, and one form per step of the walk.
Forms validate input only; the services check every rule and right again."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from detection.incidents import CONTROLS
from detection.models import ENFORCEABLE_GUARDRAILS, DetectionPolicy, Guardrail
from project.alerts.models import Alert

DATETIME_WIDGET = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


def when_field(label: str, required: bool = True, help_text: str = "") -> forms.DateTimeField:
    return forms.DateTimeField(label=label, required=required, widget=DATETIME_WIDGET,
                               input_formats=DATETIME_FORMATS, help_text=help_text)


class DetectionPolicyForm(forms.ModelForm):
    time_zone = forms.CharField(initial="UTC", help_text="An IANA name, e.g. Europe/Berlin or America/New_York.")
    guardrail_enforce = forms.MultipleChoiceField(
        label="guardrails to enforce", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(rule.value, rule.label) for rule in Guardrail if rule in ENFORCEABLE_GUARDRAILS],
        help_text="Unticked rules only raise an alert. A ticked rule also pushes Keyward's policy back to the "
                  "platform when the platform's copy of an agent or key Keyward governs breaks it (audited as the "
                  "system, with the rule's name). The other rules (idle keys, the workspace-wide webhook) have "
                  "nothing of Keyward's to restore: they alert.")

    class Meta:
        model = DetectionPolicy
        fields = ("workspace", "time_zone", "spike_factor", "spike_min_credits", "baseline_days",
                  "unusual_hours_enabled", "unusual_start_hour", "unusual_end_hour", "unusual_min_credits",
                  "idle_days", "concurrency_samples", "guard_notice_percent", "guard_warning_percent",
                  "suspend_prod_at_limit", "suspend_nonprod_at_limit", "billing_period_day", "guardrail_enforce")


class OpenIncidentForm(forms.Form):
    """The subject comes from the URL (alert, key or secret) or is chosen here (by hand)."""

    api_key = forms.ModelChoiceField(queryset=None, required=False, label="API key")
    secret = forms.ModelChoiceField(queryset=None, required=False)
    workspace = forms.ModelChoiceField(queryset=None, required=False,
                                       help_text="Only for an incident about neither a key nor a secret.")
    title = forms.CharField(max_length=200, required=False, help_text="Blank: a title naming the subject.")
    severity = forms.ChoiceField(choices=[("", "from the source"), *Alert.Severity.choices], required=False)
    summary = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False,
                              help_text="What is known so far (where it was found, by whom).")
    exposure_start = when_field("exposed since", required=False,
                                help_text="UTC. Blank: the key's issue time for a leak, the alert's window for an "
                                          "alert; you can set it in the blast-radius step.")

    def __init__(self, *args: Any, keys: Any, secrets: Any, workspaces: Any, fixed: bool,
                 account: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["api_key"].queryset = keys
        self.fields["secret"].queryset = secrets
        self.fields["workspace"].queryset = workspaces
        if fixed:  # the subject comes from the URL
            for name in ("api_key", "secret", "workspace"):
                del self.fields[name]
        if account is not None:  # Keyward's key for a platform account: handled in one of its workspaces
            self.fields["workspace"] = forms.ModelChoiceField(
                queryset=workspaces.filter(platform_account=account), empty_label=None,
                help_text="Where the incident is handled: a workspace bound to the account, where you may manage "
                          "incidents.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "api_key" in self.fields:
            chosen = [n for n in ("api_key", "secret") if data.get(n)]
            if len(chosen) > 1:
                raise ValidationError("Choose a key or a secret, not both.")
            if not chosen and not data.get("workspace"):
                raise ValidationError("Choose the key or secret the incident is about (or its workspace).")
        return data


class RevokeStepForm(forms.Form):
    reason = forms.CharField(max_length=250, required=False, widget=forms.TextInput(attrs={"size": 80}),
                             help_text="Goes in the key's audit trail and the timeline.")

    def __init__(self, *args: Any, paste_successor: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if paste_successor:
            self.fields["successor_key"] = forms.CharField(
                label="successor key", widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text="The platform does not list Keyward's key in a service account Keyward can see, so it "
                          "cannot issue the successor itself: paste a key issued by hand on the platform. It is "
                          "verified before it is used, stored encrypted and never shown again.")


class ReplaceStepForm(forms.Form):
    request_uuid = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def __init__(self, *args: Any, secret_subject: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if secret_subject:
            self.fields["new_value"] = forms.CharField(
                label="new value", widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text="The fresh value from the secret's issuer. Stored encrypted, never shown or logged.")


class BlastRadiusForm(forms.Form):
    exposure_start = when_field("exposed since (UTC)")
    exposure_end = when_field("exposed until (UTC)", required=False,
                              help_text="Blank: when the key was revoked, or now.")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                            help_text="Does the pattern match legitimate traffic or abuse? Which endpoints?")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("exposure_start") and data.get("exposure_end") and data["exposure_start"] > data["exposure_end"]:
            raise ValidationError("The window ends before it starts.")
        return data


class RelatedForm(forms.Form):
    refs = forms.MultipleChoiceField(label="rotate", required=False, widget=forms.CheckboxSelectMultiple)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args: Any, candidates: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["refs"].choices = [(c["ref"], f"{c['kind'].replace('_', ' ')} {c['name']} — {c['reason']}")
                                       for c in candidates]


class PostmortemForm(forms.Form):
    root_cause = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}),
                                 help_text="How did the credential escape (repo, logs, client bundle, CI, ticket)?")
    controls = forms.MultipleChoiceField(choices=list(CONTROLS.items()), required=False,
                                         widget=forms.CheckboxSelectMultiple, label="controls added")
    controls_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                     label="other controls / details")


class CloseForm(forms.Form):
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class NoteForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="note")


class AssignAlertForm(forms.Form):
    """An alert's owner: someone who can work alerts in its workspace (the service checks again)."""

    assignee = forms.ModelChoiceField(queryset=None, required=False, empty_label="— nobody —",
                                      help_text="People holding incidents.manage in the alert's workspace.")

    def __init__(self, *args: Any, alert: Alert, **kwargs: Any) -> None:
        from django.contrib.auth import get_user_model

        from project import access
        from workspaces.models import RoleAssignment

        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(
            pk__in=RoleAssignment.objects.filter(workspace_id=alert.workspace_id, user__isnull=False)
            .values("user_id"), is_active=True).order_by("username")
        allowed = [u.pk for u in users if access.has_perm(u, "incidents.manage", alert.workspace_id)]
        self.fields["assignee"].queryset = get_user_model().objects.filter(pk__in=allowed).order_by("username")
        self.fields["assignee"].initial = alert.assignee_id
