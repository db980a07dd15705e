from __future__ import annotations

from typing import Any

from django import forms

from agents.models import Agent
from workspaces.models import Environment


class AgentForm(forms.ModelForm):
    allowlist = forms.CharField(
        label="Allowed hostnames", required=False, widget=forms.Textarea(attrs={"rows": 5, "cols": 50}),
        help_text="Allowlist policy only: one hostname per line, exact match, optional :port "
                  "(example.com, app.example.com, localhost:3000). At most 10; no scheme, path or wildcard.")

    class Meta:
        model = Agent
        fields = ("workspace", "name", "first_message", "auth_mode", "allowlist", "require_origin_header",
                  "max_duration_seconds", "allow_shareable_link")
        widgets = {"auth_mode": forms.RadioSelect}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.allowlist and not self.is_bound:
            self.initial["allowlist"] = "\n".join(self.instance.allowlist)
        if self.instance and self.instance.pk and self.instance.origin == Agent.Origin.ADOPTED:
            # Built on the platform: its name and content are the team's; Keyward never sends them.
            if "name" in self.fields:
                self.fields["name"].help_text = ("Keyward's name for it. The agent was built on the platform: its "
                                                 "name there, prompt, voice and tools are never changed by Keyward.")
            self.fields.pop("first_message", None)

    def clean_allowlist(self) -> list[str]:
        text = self.cleaned_data.get("allowlist") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class MintForm(forms.Form):
    KIND_CHOICES = (("signed_url", "Signed URL (WebSocket, valid 15 minutes)"),
                    ("conversation_token", "Conversation token (WebRTC)"))
    environment = forms.ModelChoiceField(queryset=Environment.objects.none())
    kind = forms.ChoiceField(choices=KIND_CHOICES, widget=forms.RadioSelect, initial="signed_url")

    def __init__(self, *args: Any, agent: Agent, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["environment"].queryset = Environment.objects.filter(workspace_id=agent.workspace_id)
