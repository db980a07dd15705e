"""Agents with exactly one connection policy (their workspace and environments: workspaces.models)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from agents.validators import normalize_allowlist
from project.models import TimeStampedModel
from project.querysets import RestrictedManager
from workspaces.models import Workspace

MAX_DURATION_LIMIT = 24 * 3600


class Agent(TimeStampedModel):
    """A conversational agent on the platform, with exactly one connection policy.

    - signed: conversations need a signed URL or conversation token minted server-side (enable_auth);
    - allowlist: conversations may start from 1–10 exact hostnames;
    - public: anyone may start one, so a maximum conversation duration is required.
    """

    class AuthMode(models.TextChoices):
        SIGNED = "signed", "Signed URLs / conversation tokens"
        ALLOWLIST = "allowlist", "Hostname allowlist"
        PUBLIC = "public", "Public (with a maximum duration)"

    class Origin(models.TextChoices):
        KEYWARD = "keyward", "Created in Keyward"
        ADOPTED = "adopted", "Built on the platform, adopted"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=120)
    first_message = models.CharField(max_length=500, blank=True)
    auth_mode = models.CharField("connection policy", max_length=10, choices=AuthMode.choices,
                                 default=AuthMode.SIGNED)
    allowlist = models.JSONField("allowed hostnames", default=list, blank=True)
    require_origin_header = models.BooleanField(
        default=True, help_text="Refuse connections without an Origin header (allowlist agents only)")
    max_duration_seconds = models.PositiveIntegerField(
        "max conversation duration (seconds)", null=True, blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DURATION_LIMIT)])
    remote_id = models.CharField("platform agent id", max_length=128, blank=True, editable=False)
    # Keyward governs only an agent's security settings. An agent it created also gets its name and first message
    # from Keyward; an adopted one (built in the platform's dashboard) never: its content is the team's.
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.KEYWARD, editable=False)
    allow_shareable_link = models.BooleanField(
        "allow the shareable link", default=False,
        help_text="Keep the platform's shareable link (anyone holding it can talk to the agent) open. Off: "
                  "Keyward closes it on every push.")
    # Set when a push found the agent gone from the platform: Keyward does not recreate it on its own (the drift
    # page offers Recreate from Keyward, or Forget for an adopted agent).
    missing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    # The conversation-initiation webhook (broker app): at conversation start the platform asks Keyward for the
    # end user's fresh vault tokens, answered as secret__ dynamic variables. Changed only by
    # agents.services.agent_credential_webhook_set.
    credential_webhook = models.BooleanField(
        "credential webhook", default=False,
        help_text="Inject the end user's vault tokens at conversation start (conversation-initiation webhook)")
    credential_webhook_caller_id = models.BooleanField(
        "identify phone callers by caller id", default=False,
        help_text="Also take a phone call's caller id as the end user id (caller ids can be spoofed)")
    # Null while Keyward has never managed this agent's initiation webhook: sync then leaves the platform's
    # setting alone, so a webhook configured by hand on the platform survives.
    credential_webhook_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The platform workspace secret that holds this agent's webhook secret (the agent's webhook header references
    # it by id, so the value is in no agent config), and which BROKER_WEBHOOK_KEY signed the value last pushed
    # (a fingerprint, not the key). Set by the agent's sync job only.
    webhook_secret_remote_id = models.CharField(max_length=128, blank=True, editable=False)
    webhook_secret_key_id = models.CharField(max_length=16, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="agent_unique_name_per_workspace"),
            models.UniqueConstraint(fields=["remote_id"], condition=~Q(remote_id=""), name="agent_unique_remote_id"),
            models.CheckConstraint(condition=Q(auth_mode__in=["signed", "allowlist", "public"]),
                                   name="agent_auth_mode_valid"),
            models.CheckConstraint(condition=~Q(auth_mode="public") | Q(max_duration_seconds__isnull=False),
                                   name="agent_public_needs_max_duration"),
            models.CheckConstraint(
                condition=Q(max_duration_seconds__isnull=True)
                | Q(max_duration_seconds__gte=1, max_duration_seconds__lte=MAX_DURATION_LIMIT),
                name="agent_max_duration_range"),
        ]
        indexes = [
            # The agent changelist's search by name within a workspace.
            models.Index(fields=["workspace", "name"], name="agent_workspace_name_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        hosts = self.allowlist or []
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ValidationError({"allowlist": "The allowlist must be a list of hostnames."})
        if self.auth_mode == self.AuthMode.SIGNED and hosts:
            errors["allowlist"] = [
                "A signed-URL agent cannot also have a hostname allowlist: choose one method. Clear the "
                "allowlist, or switch the policy to “Hostname allowlist”."]
        elif self.auth_mode == self.AuthMode.ALLOWLIST:
            if not hosts:
                errors["allowlist"] = ["An allowlist agent needs at least one hostname."]
            else:
                try:
                    self.allowlist = normalize_allowlist(hosts)
                except ValidationError as exc:
                    errors["allowlist"] = exc.messages
        elif self.auth_mode == self.AuthMode.PUBLIC:
            if hosts:
                errors["allowlist"] = ["A public agent has no allowlist; switch the policy to “Hostname allowlist” "
                                       "to restrict hosts."]
            if self.max_duration_seconds is None:
                errors["max_duration_seconds"] = [
                    "A public agent needs a maximum conversation duration: anyone can start a conversation, "
                    "and the duration bounds what each one can cost."]
        if errors:
            raise ValidationError(errors)

    def platform_auth(self) -> dict:
        """`platform_settings.auth` for this policy."""
        return {
            "enable_auth": self.auth_mode == self.AuthMode.SIGNED,
            "allowlist": [{"hostname": h} for h in self.allowlist] if self.auth_mode == self.AuthMode.ALLOWLIST else [],
            "require_origin_header": self.auth_mode == self.AuthMode.ALLOWLIST and self.require_origin_header,
        }

    @property
    def sync_tag(self) -> str:
        """Tag sent with the agent so a retried create finds the agent an earlier attempt made."""
        return f"keyward-{self.uuid}"
