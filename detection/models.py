"""Detection and response: each workspace's detection thresholds, concurrency samples, and incidents walked step
by step (alerts themselves: project.alerts; usage per key and hour or day: keys.models)."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from project.alerts.models import Alert
from project.models import TimeStampedModel
from project.querysets import RestrictedManager
from workspaces.models import Workspace


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"“{value}” is not a time zone name (e.g. Europe/Berlin, America/New_York, UTC).") \
            from exc


class Guardrail(models.TextChoices):
    """The guardrail rules over the live state of a platform account (detection.guardrails judges them). The code is
    what Observation.findings holds; the alert kind is ``guardrail_<code>``."""

    PUBLIC_NO_DURATION = "public_no_duration", "Public agent without a duration limit"
    SIGNED_AND_ALLOWLIST = "signed_and_allowlist", "Signed URLs and an allowlist together"
    SHAREABLE_OPEN = "shareable_open", "Shareable link open on a signed or allowlist agent"
    ALLOWLIST_ENTRY = "allowlist_entry", "Allowlist entry with a wildcard, scheme or path"
    NO_ACCEPTABLE_POLICY = "no_acceptable_policy", "Agent with no connection policy Keyward would accept"
    KEY_ALL_PERMISSIONS = "key_all_permissions", "Production key with every permission"
    KEY_UNBOUNDED = "key_unbounded", "Production key without IP limits or without expiry"
    KEY_IDLE = "key_idle", "Key not used for the idle period"
    FOREIGN_WEBHOOK = "foreign_webhook", "Workspace-wide initiation webhook to a host other than Keyward's"


#: The rules whose *enforce* mode can push Keyward's policy back (for objects Keyward governs). The others have
#: nothing of Keyward's to restore: an idle key, or the workspace-wide webhook Keyward does not manage.
ENFORCEABLE_GUARDRAILS = (Guardrail.PUBLIC_NO_DURATION, Guardrail.SIGNED_AND_ALLOWLIST, Guardrail.SHAREABLE_OPEN,
                          Guardrail.ALLOWLIST_ENTRY, Guardrail.NO_ACCEPTABLE_POLICY, Guardrail.KEY_ALL_PERMISSIONS,
                          Guardrail.KEY_UNBOUNDED)


class DetectionPolicy(TimeStampedModel):
    """One workspace's detection thresholds and credit-guard settings. Created with the defaults the first time
    a rule needs it (detection.services.detection_policy_of), changed by people with incidents.manage."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="detection_policy")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone],
                                 help_text="The workspace's time zone: unusual hours are read in it.")
    # --- spike against the key's trailing baseline ---
    spike_factor = models.DecimalField(
        max_digits=6, decimal_places=2, default=5, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="An hour spending at least this many times the key's average hour over the baseline days "
                  "is a spike.")
    spike_min_credits = models.PositiveIntegerField(
        default=1000, help_text="…and at least this many credits in that hour (small keys stay quiet).")
    baseline_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text="Whole days before the hour's day that make the baseline.")
    # --- unusual hours ---
    unusual_hours_enabled = models.BooleanField(default=True)
    unusual_start_hour = models.PositiveSmallIntegerField(
        default=22, validators=[MaxValueValidator(23)], help_text="Unusual hours start at this local hour…")
    unusual_end_hour = models.PositiveSmallIntegerField(
        default=6, validators=[MaxValueValidator(23)], help_text="…and end at this local hour (exclusive).")
    unusual_min_credits = models.PositiveIntegerField(
        default=100, help_text="Credits one key must spend in one unusual hour to raise an alert.")
    # --- idle key waking up ---
    idle_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="A key used again after at least this many days without use is “waking up”.")
    # --- concurrency pinned at the maximum ---
    concurrency_samples = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(2), MaxValueValidator(1000)],
        help_text="Consecutive samples at the platform's maximum concurrency that raise an alert.")
    # --- credit guard ---
    guard_notice_percent = models.PositiveSmallIntegerField(
        default=75, validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="First credit-guard alert, in percent of a key's quota or an environment's budget.")
    guard_warning_percent = models.PositiveSmallIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="Second credit-guard alert; the third comes at 100%.")
    suspend_prod_at_limit = models.BooleanField(
        "disable production keys at 100%", default=True,
        help_text="At 100% of its quota (or its environment's budget) a production key is disabled on the "
                  "platform until someone resumes it.")
    suspend_nonprod_at_limit = models.BooleanField("disable other keys at 100%", default=False)
    billing_period_day = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Day of the month (UTC) a credit period starts.")
    # --- guardrails on the live state ---
    guardrail_enforce = models.JSONField(
        "guardrails to enforce", default=list, blank=True,
        help_text="Rules in enforce mode (the others only raise an alert): when the platform's copy of an object "
                  "Keyward governs breaks one, Keyward pushes its own policy back.")

    objects = RestrictedManager()

    class Meta:
        verbose_name = "detection policy"
        verbose_name_plural = "detection policies"
        constraints = [
            models.CheckConstraint(condition=Q(unusual_start_hour__lte=23, unusual_end_hour__lte=23),
                                   name="detection_policy_hours_range"),
            models.CheckConstraint(condition=Q(guard_notice_percent__lt=models.F("guard_warning_percent"),
                                               guard_warning_percent__lt=100, guard_notice_percent__gte=1),
                                   name="detection_policy_guard_order"),
            models.CheckConstraint(condition=Q(billing_period_day__gte=1, billing_period_day__lte=28),
                                   name="detection_policy_period_day_range"),
            models.CheckConstraint(condition=Q(spike_factor__gte=1), name="detection_policy_spike_factor_min"),
            models.CheckConstraint(condition=Q(concurrency_samples__gte=2), name="detection_policy_samples_min"),
        ]

    def __str__(self) -> str:
        return f"Detection policy of {self.workspace}"

    def clean(self) -> None:
        if self.guard_notice_percent is not None and self.guard_warning_percent is not None \
                and self.guard_notice_percent >= self.guard_warning_percent:
            raise ValidationError({"guard_warning_percent": "The second threshold must be above the first."})
        enforce = self.guardrail_enforce
        if not isinstance(enforce, list) or not set(enforce) <= set(ENFORCEABLE_GUARDRAILS):
            raise ValidationError({"guardrail_enforce": "Only these rules can be enforced: "
                                                        f"{', '.join(ENFORCEABLE_GUARDRAILS)}."})
        if self.unusual_hours_enabled and self.unusual_start_hour == self.unusual_end_hour:
            raise ValidationError({"unusual_end_hour": "Unusual hours need a start and an end that differ "
                                                       "(or switch them off)."})

    @property
    def guard_percents(self) -> tuple[int, int, int]:
        return self.guard_notice_percent, self.guard_warning_percent, 100

    def enforces(self, rule: str) -> bool:
        return rule in (self.guardrail_enforce or [])

    def suspends(self, *, is_production: bool) -> bool:
        return self.suspend_prod_at_limit if is_production else self.suspend_nonprod_at_limit


class ConcurrencySample(models.Model):
    """A platform account's concurrency headers (current and maximum concurrent requests) at one moment.

    An account serves every workspace bound to it, so samples belong to the account (``account_id``, a
    workspaces.PlatformAccount id; null when one client answers for every account, as in tests), not to a
    workspace. Kept for a day.
    """

    account_id = models.BigIntegerField(null=True, blank=True)
    taken_at = models.DateTimeField()
    current = models.PositiveIntegerField()
    maximum = models.PositiveIntegerField()

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [
            # The pinned rule reads the newest samples; the prune deletes the oldest.
            models.Index(fields=["-taken_at"], name="concurrency_taken_idx"),
            # The pinned rule per account: that account's newest samples.
            models.Index(fields=["account_id", "-taken_at"], name="concurrency_account_taken_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.current}/{self.maximum} at {self.taken_at:%Y-%m-%d %H:%M:%S}"

    @property
    def pinned(self) -> bool:
        return self.maximum > 0 and self.current >= self.maximum


class Incident(TimeStampedModel):
    """A suspected or confirmed exposure of one API key or workspace secret (or of nothing in particular,
    e.g. concurrency pinned at the maximum), walked through revoke → replace → blast radius → related
    secrets → post-mortem. Every step is an IncidentStep row; the incident row holds the current summary.
    """

    class Source(models.TextChoices):
        ALERT = "alert", "Alert"
        LEAK_CHECK = "leak_check", "Leak check match"
        MANUAL = "manual", "Opened by hand"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        CONTAINED = "contained", "Contained (revoked)"
        CLOSED = "closed", "Closed"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="incidents")
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True, help_text="What happened, as far as known.")
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.MANUAL)
    severity = models.CharField(max_length=10, choices=Alert.Severity.choices, default=Alert.Severity.HIGH)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    # The subject: keys are never deleted (PROTECT keeps the pointer); a deleted secret leaves subject_repr.
    api_key = models.ForeignKey("keys.ApiKey", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="incidents", verbose_name="API key")
    secret = models.ForeignKey("secrets_app.Secret", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="incidents")
    # Keyward's own key for a platform account ("Keyward's platform key exposed"): the walk rotates it with no
    # overlap and deletes the exposed one; the blast radius is everything on that account.
    platform_account = models.ForeignKey("workspaces.PlatformAccount", null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="incidents")
    subject_repr = models.CharField("subject", max_length=200, blank=True)
    replacement_key = models.ForeignKey("keys.ApiKey", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+", editable=False)
    exposure_start = models.DateTimeField(null=True, blank=True,
                                          help_text="Since when the subject may have been exposed.")
    exposure_end = models.DateTimeField(null=True, blank=True,
                                        help_text="When it stopped working (set by the revoke step).")
    root_cause = models.TextField(blank=True)
    controls_added = models.JSONField(default=list, blank=True, help_text="Controls added after the incident")
    controls_notes = models.TextField(blank=True)
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", editable=False)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(api_key__isnull=True) & Q(secret__isnull=True))
                | (Q(api_key__isnull=True) & Q(platform_account__isnull=True))
                | (Q(secret__isnull=True) & Q(platform_account__isnull=True)),
                name="incident_one_subject"),
            models.CheckConstraint(condition=Q(state__in=["open", "contained", "closed"]),
                                   name="incident_state_valid"),
            models.CheckConstraint(condition=~Q(state="closed") | Q(closed_at__isnull=False),
                                   name="incident_closed_has_time"),
            models.CheckConstraint(
                condition=Q(exposure_start__isnull=True) | Q(exposure_end__isnull=True)
                | Q(exposure_start__lte=models.F("exposure_end")), name="incident_window_ordered"),
        ]
        indexes = [
            # The incident list and dashboard: a workspace's incidents by state, newest first.
            models.Index(fields=["workspace", "state", "-created_at"], name="incident_workspace_state_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}" if self.pk else self.title

    def clean(self) -> None:
        if sum(bool(x) for x in (self.api_key_id, self.secret_id, self.platform_account_id)) > 1:
            raise ValidationError("An incident is about one API key, one secret or one platform account's key.")
        if self.platform_account_id and self.workspace_id and self.workspace.platform_account_id != \
                self.platform_account_id:
            raise ValidationError({"workspace": "This workspace is not bound to that platform account."})
        for field in ("api_key", "secret"):
            subject = getattr(self, field) if getattr(self, f"{field}_id") else None
            if subject is not None and self.workspace_id and subject.workspace_id != self.workspace_id:
                raise ValidationError({field: "This belongs to another workspace."})
        if self.exposure_start and self.exposure_end and self.exposure_start > self.exposure_end:
            raise ValidationError({"exposure_end": "The exposure window ends before it starts."})

    @property
    def subject_kind(self) -> str:
        if self.api_key_id:
            return "api_key"
        if self.platform_account_id:
            return "platform_account"
        if self.secret_id or (self.subject_repr and not self.api_key_id):
            return "secret"
        return "none"

    @property
    def is_closed(self) -> bool:
        return self.state == self.State.CLOSED


class IncidentStep(models.Model):
    """One recorded step of an incident: who did what, when, with the figures of that moment (never a secret
    value). Steps are append-only; the incident page reads them as its timeline."""

    workspace_path = "incident__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    class Kind(models.TextChoices):
        OPENED = "opened", "Incident opened"
        REVOKE = "revoke", "Revoked"
        REPLACE = "replace", "Replacement issued"
        BLAST_RADIUS = "blast_radius", "Blast radius assessed"
        RELATED_SECRETS = "related_secrets", "Related secrets listed"
        POSTMORTEM = "postmortem", "Post-mortem written"
        NOTE = "note", "Note"
        CLOSED = "closed", "Incident closed"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="steps")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_label = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True)

    objects = RestrictedManager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # The timeline of one incident, oldest first.
            models.Index(fields=["incident", "created_at"], name="incident_step_timeline_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by {self.actor_label} at {self.created_at:%Y-%m-%d %H:%M}"
