"""Broker keys (an app backend's credential for the session API), their usage counters, and the sessions
Keyward brokered (which bind a platform conversation to an end user for the credential webhook)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from project.models import TimeStampedModel
from project.networks import normalise_networks
from project.querysets import RestrictedManager
from workspaces.models import Environment, ServiceAccount, Workspace

MAX_RATE_PER_MINUTE = 1_000_000
MAX_SESSION_QUOTA = 100_000_000


class TokenType(models.TextChoices):
    """The platform's single-use token types (``POST /v1/single-use-token/{token_type}``): speech clients only."""

    TTS_WEBSOCKET = "tts_websocket", "text-to-speech websocket (tts_websocket)"
    REALTIME_SCRIBE = "realtime_scribe", "real-time transcription (realtime_scribe)"
    BATCH_SCRIBE = "batch_scribe", "batch transcription (batch_scribe)"


class BrokerKey(TimeStampedModel):
    """A Keyward broker key: lets one app backend (a service account) open conversation sessions for the
    agents listed here, in one environment, from the listed networks, within a rate limit and a session
    quota per period. Only the key's SHA-256 digest and a hint are stored; the key is shown once.

    A key is never deleted (the audit trail and the sessions refer to it): it is revoked, which is final.
    """

    class QuotaPeriod(models.TextChoices):
        HOUR = "hour", "per hour"
        DAY = "day", "per day (UTC)"
        MONTH = "month", "per month (UTC)"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="broker_keys")
    service_account = models.ForeignKey(ServiceAccount, on_delete=models.PROTECT, related_name="broker_keys",
                                        help_text="The app backend that holds this key; sessions are audited as it")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="broker_keys",
                                    help_text="Sessions are minted for this environment only")
    name = models.CharField(max_length=120, help_text="What the key is for, e.g. “web app backend (prod)”")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=40, editable=False)
    agents = models.ManyToManyField(Agent, related_name="broker_keys", help_text="Agents this key may open "
                                    "sessions for (signed-URL agents of the same workspace)")
    allowed_networks = models.JSONField(
        "allowed addresses", default=list, blank=True,
        help_text="IPv4/IPv6 addresses or CIDR ranges the key may be used from; empty = anywhere")
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(MAX_RATE_PER_MINUTE)],
        help_text="Session requests per minute (fixed one-minute windows, UTC)")
    session_quota = models.PositiveIntegerField(
        default=1000, validators=[MinValueValidator(1), MaxValueValidator(MAX_SESSION_QUOTA)],
        help_text="Sessions granted per quota period")
    quota_period = models.CharField(max_length=5, choices=QuotaPeriod.choices, default=QuotaPeriod.DAY)
    # Which single-use tokens for speech clients (POST /api/v1/tokens/<token_type>) the key may mint; none by
    # default. Mints count against the same rate limit and quota as sessions.
    token_types = models.JSONField(
        "single-use token types", default=list, blank=True,
        help_text="Single-use tokens for speech clients this key may mint; none = no token endpoint")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank = until revoked")
    # Whether sessions opened with this key may receive their end user's vault tokens through the credential
    # webhook. Only someone holding secrets.manage can set it: keys.issue alone must not reach the vault.
    carries_vault_tokens = models.BooleanField(
        "carries vault tokens", default=False,
        help_text="Sessions opened with this key get their end user's vault tokens through the credential webhook. "
                  "Only someone holding secrets.manage in the workspace can turn this on.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    revoke_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    # A random value from the issue form: a reloaded (re-posted) form finds the key it already issued instead of
    # issuing a second one, and the key is not shown again.
    issue_nonce = models.CharField(max_length=64, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "name", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["issue_nonce"], condition=~Q(issue_nonce=""),
                                    name="broker_key_unique_issue_nonce"),
            models.CheckConstraint(condition=Q(rate_limit_per_minute__gte=1) & Q(session_quota__gte=1),
                                   name="broker_key_limits_positive"),
            models.CheckConstraint(condition=Q(quota_period__in=["hour", "day", "month"]),
                                   name="broker_key_quota_period_valid"),
        ]
        indexes = [
            # The admin list of one workspace's keys, and "keys of this service account" on its page.
            models.Index(fields=["workspace", "service_account"], name="broker_key_workspace_sa_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.service_account_id and self.workspace_id and self.service_account.workspace_id != self.workspace_id:
            errors["service_account"] = ["This service account belongs to another workspace."]
        if self.environment_id and self.workspace_id and self.environment.workspace_id != self.workspace_id:
            errors["environment"] = ["This environment belongs to another workspace."]
        types = self.token_types or []
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            errors["token_types"] = ["The token types must be a list of token type names."]
        else:
            unknown = sorted(set(types) - set(TokenType.values))
            if unknown:
                errors["token_types"] = [f"Unknown token type(s): {', '.join(unknown)}; choose from "
                                         f"{', '.join(TokenType.values)}."]
            else:
                self.token_types = [t for t in TokenType.values if t in types]  # one order, no duplicates
        networks = self.allowed_networks or []
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            errors["allowed_networks"] = ["The allowed addresses must be a list of addresses or ranges."]
        else:
            try:
                self.allowed_networks = normalise_networks(networks)
            except ValidationError as exc:
                errors["allowed_networks"] = exc.messages
        if errors:
            raise ValidationError(errors)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class BrokerKeyUsage(models.Model):
    """The hot counters of one broker key, kept apart from the key's configuration (which is audited).

    Each counter is a fixed window: ``*_window`` numbers the minute (rate) or the quota period, ``*_used``
    counts inside it. Both only ever change through one conditional UPDATE each (broker/limits.py), which is
    what keeps them exact under concurrency.
    """

    workspace_path = "key__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    key = models.OneToOneField(BrokerKey, on_delete=models.CASCADE, primary_key=True, related_name="usage")
    rate_window = models.BigIntegerField(default=0)
    rate_used = models.PositiveIntegerField(default=0)
    quota_window = models.BigIntegerField(default=0)
    quota_used = models.PositiveIntegerField(default=0)
    sessions_total = models.PositiveBigIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    # Whether the last request that passed the rate limit got a session: how limits.admit() tells a full quota
    # from a granted session in the same statement (RETURNING gives the row after the update).
    last_granted = models.BooleanField(default=False)

    objects = RestrictedManager()

    def __str__(self) -> str:
        return f"usage of key {self.key_id}: {self.quota_used} this period, {self.sessions_total} in all"


class BrokerSession(models.Model):
    """A conversation Keyward brokered for an end user: binds the platform's conversation id to the end user
    the app vouched for, so the conversation-initiation webhook knows whose vault tokens to send without
    trusting anything the browser says. Written only when both are known."""

    workspace_path = "agent__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    created_at = models.DateTimeField(default=timezone.now)
    key = models.ForeignKey(BrokerKey, on_delete=models.PROTECT, related_name="sessions")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="broker_sessions")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="+")
    end_user_id = models.CharField(max_length=200)
    conversation_id = models.CharField(max_length=128)
    mode = models.CharField(max_length=20)
    expires_at = models.DateTimeField()
    # When the credential webhook first answered for this conversation: it answers once (or within
    # BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS of the session's opening), so a replayed call gets nothing.
    answered_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The webhook's lookup: one agent's conversation by the platform's id.
            models.UniqueConstraint(fields=["agent", "conversation_id"], name="broker_session_unique_conversation"),
        ]

    def __str__(self) -> str:
        return f"session {self.conversation_id} of {self.end_user_id}"


class WebhookAgent(Agent):
    """The agents seen from the broker's admin page, where the credential webhook is turned on and off."""

    class Meta:
        proxy = True
        verbose_name = "credential webhook"
        verbose_name_plural = "credential webhooks"


class RefreshTool(TimeStampedModel):
    """The token-refresh webhook tool of one agent for one vault provider: a tool on the platform that the agent
    calls during a long conversation; Keyward answers the end user's fresh access token, which the tool assigns to
    ``secret__user_<provider>_token`` for the tool calls after it. Created and attached through the outbox; the
    call bookkeeping (last call, last failure) is written by the endpoint."""

    workspace_path = "agent__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    class State(models.TextChoices):
        ATTACHING = "attaching", "being created and attached"
        ATTACHED = "attached", "attached"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="refresh_tools")
    provider = models.ForeignKey("secrets_app.OAuthProvider", on_delete=models.PROTECT, related_name="refresh_tools")
    state = models.CharField(max_length=10, choices=State.choices, default=State.ATTACHING, editable=False)
    remote_id = models.CharField("platform tool id", max_length=128, blank=True, editable=False)
    last_call_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure = models.CharField(max_length=200, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["agent__name", "provider__slug"]
        constraints = [
            # One tool per agent and provider; the endpoint's bookkeeping finds it by this pair.
            models.UniqueConstraint(fields=["agent", "provider"], name="refresh_tool_unique_agent_provider"),
        ]

    def __str__(self) -> str:
        return f"token refresh tool of {self.agent} for provider {self.provider_id}"

    @property
    def tool_name(self) -> str:
        """The tool's name on the platform (``^[a-zA-Z0-9_-]{1,64}$``): found again by it after a lost answer."""
        return f"kw_refresh_{self.agent.uuid.hex[:12]}_{self.provider.slug}"[:64]  # refresh.TOOL_NAME_PREFIX
