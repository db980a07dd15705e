"""API keys of service accounts: one environment each, scoped, with a credit quota, a network allowlist, an
expiry, a rotation chain, and their usage per hour and per day. Also the workspace's key policy.

Only a key's hint (last 4 characters) and SHA-256 digest are kept: the secret exists in memory between the
platform's create response and the one page that shows it (see services_apikeys.api_key_issue).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from project.models import TimeStampedModel
from project.networks import normalise_networks
from project.platform.scopes import PERMISSION_TYPES
from project.querysets import RestrictedManager

__all__ = [
    "ALL_SCOPES", "BURN_WINDOW_DAYS", "PLATFORM_SCOPES", "ApiKey", "EnvironmentUsageDaily", "KeyPolicy",
    "KeyUsageDaily", "KeyUsageHourly", "KeyUsageWindow",
    "key_digest", "platform_expiry",
    "normalise_scopes",
]

# The platform's PermissionType enum (the official SDK's 52 values), pinned to the SDK by
# tests/platform/test_permissions.py.
PLATFORM_SCOPES: tuple[str, ...] = PERMISSION_TYPES
ALL_SCOPES = "all"  # the platform's own sentinel for "every permission"


def key_digest(secret: str) -> str:
    """SHA-256 hex of a key: what Keyward keeps for the leak check (usage is joined on ApiKey.platform_hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def platform_expiry(expires_at: Any, now: Any = None) -> int | None:
    """A key's expiry as the platform takes it (``expires_at_unix``, seconds), when within the platform's bounds
    (15 minutes to 90 days ahead): the platform then ends the key itself, even while Keyward is down."""
    if expires_at is None:
        return None
    ahead = (expires_at - (now or timezone.now())).total_seconds()
    return int(expires_at.timestamp()) if PLATFORM_MIN_EXPIRY <= ahead <= PLATFORM_MAX_EXPIRY else None


PLATFORM_MIN_EXPIRY, PLATFORM_MAX_EXPIRY = 15 * 60 + 60, 90 * 86400 - 60  # a minute's margin for clock skew



def normalise_scopes(value: Any) -> str | list[str]:
    """"all", or the chosen scopes in catalogue order without duplicates. Raises ValidationError."""
    if value == ALL_SCOPES:
        return ALL_SCOPES
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValidationError("Scopes must be “all” or a list of the platform's permission names.")
    if not value:
        raise ValidationError("Choose at least one scope (or “all”, which is rarely what a key needs).")
    unknown = sorted({str(v) for v in value} - set(PLATFORM_SCOPES))
    if unknown:
        raise ValidationError(f"Not in the platform's permission catalogue: {', '.join(unknown)}.")
    chosen = set(value)
    return [scope for scope in PLATFORM_SCOPES if scope in chosen]


class KeyPolicy(TimeStampedModel):
    """How a workspace wants its keys kept: rotation period, live keys per account and environment, idle
    threshold, default rotation overlap and what "gone quiet" means. A workspace without a row uses the
    defaults."""

    workspace = models.OneToOneField("workspaces.Workspace", on_delete=models.CASCADE, related_name="key_policy")
    rotation_period_days = models.PositiveIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Keys older than this are flagged and raise an alert until rotated.")
    max_live_keys_per_account_per_env = models.PositiveSmallIntegerField(
        "max live keys per service account and environment", default=2,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Live = issuing, active or in a rotation overlap. 2 = one in use, one in rotation.")
    idle_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Keys without any use for this many days are flagged and raise an alert.")
    default_overlap_days = models.PositiveSmallIntegerField(
        default=7, validators=[MaxValueValidator(90)],
        help_text="How long a rotated key stays valid next to its successor, unless the rotation says otherwise.")
    quiet_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MinValueValidator(1), MaxValueValidator(720)],
        help_text="After its overlap, a rotated key is revoked once the platform reports no use of it for this "
                  "many hours; until then an alert says who still uses it.")

    objects = RestrictedManager()

    class Meta:
        verbose_name = "key policy"
        verbose_name_plural = "key policies"
        constraints = [
            models.CheckConstraint(condition=Q(rotation_period_days__gte=1, rotation_period_days__lte=3650),
                                   name="keypolicy_rotation_period_range"),
            models.CheckConstraint(condition=Q(max_live_keys_per_account_per_env__gte=1,
                                               max_live_keys_per_account_per_env__lte=20),
                                   name="keypolicy_max_live_keys_range"),
            models.CheckConstraint(condition=Q(idle_days__gte=1), name="keypolicy_idle_days_min"),
            models.CheckConstraint(condition=Q(default_overlap_days__lte=90), name="keypolicy_overlap_max"),
            models.CheckConstraint(condition=Q(quiet_hours__gte=1, quiet_hours__lte=720),
                                   name="keypolicy_quiet_hours_range"),
        ]

    def __str__(self) -> str:
        return f"Key policy of {self.workspace}"


class ApiKey(TimeStampedModel):
    """A platform API key of one service account, for one environment.

    States: pending (being issued: Keyward has asked the platform, no answer yet) → active → superseded (a
    successor exists; both are valid until `overlap_until` and the old key has gone quiet) → revoked.
    Active or superseded keys past `expires_at` become expired. A pending key whose answer was lost becomes
    failed (whatever the platform made of it is deleted). Revoked, expired and failed are final: a database
    trigger refuses any way back.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Issuing"
        ACTIVE = "active", "Active"
        SUPERSEDED = "superseded", "Rotated (overlap)"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Failed to issue"

    class Origin(models.TextChoices):
        KEYWARD = "keyward", "Issued by Keyward"
        ADOPTED = "adopted", "Made on the platform, adopted"

    LIVE_STATES = (State.PENDING, State.ACTIVE, State.SUPERSEDED)
    USABLE_STATES = (State.ACTIVE, State.SUPERSEDED)
    FINAL_STATES = (State.REVOKED, State.EXPIRED, State.FAILED)

    # Keyward's id for the key: names the platform's key (so a retry finds what a lost response created)
    # and doubles as the issue form's one-time token (so a resubmitted form cannot issue twice).
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.PROTECT, related_name="api_keys")
    service_account = models.ForeignKey("workspaces.ServiceAccount", on_delete=models.PROTECT, related_name="api_keys")
    environment = models.ForeignKey("workspaces.Environment", on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=120)
    scopes = models.JSONField(default=list, help_text="“all”, or a list of the platform's permission names")
    credit_quota = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Credits this key may spend per billing period; blank = no quota")
    allowed_ips = models.JSONField("allowed IPs", default=list, blank=True,
                                   help_text="Normalised CIDR ranges; empty = no network limit")
    expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING, editable=False)
    hint = models.CharField(max_length=8, blank=True, editable=False)
    digest = models.CharField("SHA-256 digest", max_length=64, blank=True, editable=False)
    remote_key_id = models.CharField("platform key id", max_length=128, blank=True, editable=False)
    # The platform's own name for the key in its usage answers (``hashed_xi_api_key`` in the key list). Nothing
    # promises it is sha256(secret): usage is joined on this, the local digest serves the leak check.
    platform_hash = models.CharField("platform key hash", max_length=128, blank=True, editable=False)
    # A key made on the platform (dashboard, CLI) and adopted: its secret was never seen, so it has no digest.
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.KEYWARD, editable=False)
    predecessor = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="successors", editable=False)
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    overlap_until = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    revoke_reason = models.CharField(max_length=300, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    # Suspension (detection's credit guard, or a person): the key stays valid in Keyward but is disabled on the
    # platform until resumed; unlike revocation it can be undone. Changed only by api_key_suspend/api_key_resume.
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)
    suspend_reason = models.CharField(max_length=300, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=["pending", "active", "superseded", "revoked", "expired",
                                                          "failed"]), name="apikey_state_valid"),
            # Final states carry when they ended; live ones carry no end.
            models.CheckConstraint(
                condition=(Q(state__in=["revoked", "expired", "failed"], revoked_at__isnull=False)
                           | (~Q(state__in=["revoked", "expired", "failed"]) & Q(revoked_at__isnull=True))),
                name="apikey_final_state_has_end"),
            # A usable key is known to the platform and, when Keyward issued it, has a digest for leak checks
            # (an adopted key's secret was never seen).
            models.CheckConstraint(
                condition=~Q(state__in=["active", "superseded"])
                | ((~Q(digest="") | Q(origin="adopted")) & ~Q(remote_key_id="")),
                name="apikey_usable_has_digest_and_remote_id"),
            models.CheckConstraint(condition=~Q(state="superseded") | Q(overlap_until__isnull=False),
                                   name="apikey_superseded_has_overlap_end"),
            # The leak check's and the usage ingest's lookup by digest.
            models.UniqueConstraint(fields=["digest"], condition=~Q(digest=""), name="apikey_unique_digest"),
            models.UniqueConstraint(fields=["remote_key_id"], condition=~Q(remote_key_id=""),
                                    name="apikey_unique_remote_key_id"),
            models.CheckConstraint(condition=Q(origin__in=["keyward", "adopted"]), name="apikey_origin_valid"),
            # Rotation is retry-safe: a key never has two live successors.
            models.UniqueConstraint(fields=["predecessor"],
                                    condition=Q(state__in=["pending", "active", "superseded"]),
                                    name="apikey_one_live_successor"),
        ]
        indexes = [
            # The key list for one person: their workspaces' keys, newest first.
            models.Index(fields=["workspace", "-created_at"], name="apikey_workspace_created_idx"),
            # The key list for a superuser: every key, newest first (the admin adds -id).
            models.Index(fields=["-created_at", "-id"], name="apikey_created_idx"),
            # The live-keys cap per service account and environment.
            models.Index(fields=["service_account", "environment", "state"], name="apikey_account_env_idx"),
            # The budget sum per environment.
            models.Index(fields=["environment", "state"], name="apikey_env_state_idx"),
            # The sweeps: superseded keys past their overlap, live keys past their expiry.
            models.Index(fields=["state", "overlap_until"], name="apikey_state_overlap_idx"),
            models.Index(fields=["state", "expires_at"], name="apikey_state_expiry_idx"),
            # The "suspended" filter of the key list: few rows, so a partial index costs nothing on other keys.
            models.Index(fields=["-created_at", "-id"], condition=models.Q(suspended_at__isnull=False),
                         name="apikey_suspended_idx"),
            # The usage ingest's join on the platform's key hash.
            models.Index(fields=["platform_hash"], condition=~models.Q(platform_hash=""),
                         name="apikey_platform_hash_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})" if self.hint else self.name

    # --- single-row rules --------------------------------------------------------------------------
    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        try:
            self.scopes = normalise_scopes(self.scopes)
        except ValidationError as exc:
            errors["scopes"] = exc.messages
        try:
            self.allowed_ips = normalise_networks(self.allowed_ips)
        except ValidationError as exc:
            errors["allowed_ips"] = exc.messages
        if self._state.adding and self.expires_at is not None and self.expires_at <= timezone.now():
            errors["expires_at"] = ["The expiry is in the past: a key must be valid for some time."]
        if self.service_account_id and self.workspace_id and self.service_account.workspace_id != self.workspace_id:
            errors["service_account"] = ["This service account belongs to another workspace."]
        if self.environment_id and self.workspace_id and self.environment.workspace_id != self.workspace_id:
            errors["environment"] = ["This environment belongs to another workspace."]
        if errors:
            raise ValidationError(errors)

    # --- derived facts ------------------------------------------------------------------------------
    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def remote_tag(self) -> str:
        """Part of the platform key's name: how a retry recognises a key an earlier attempt created."""
        return f"[keyward:{self.uuid}]"

    @property
    def remote_name(self) -> str:
        """The key's name on the platform: with Keyward's tag for a key it issued; an adopted key keeps its name
        (the tag serves only to find what a lost create made)."""
        return self.name if self.origin == self.Origin.ADOPTED else f"{self.name} {self.remote_tag}"

    @property
    def has_all_scopes(self) -> bool:
        return self.scopes == ALL_SCOPES

    def platform_permissions(self) -> str | list[str]:
        return ALL_SCOPES if self.has_all_scopes else list(self.scopes)

    def flags(self, policy: KeyPolicy, now: Any) -> list[str]:
        """Hygiene flags for the key list (no query: the policy comes with the row)."""
        if self.state not in self.USABLE_STATES:
            return []
        flags = []
        born = self.activated_at or self.created_at
        if self.state == self.State.ACTIVE and born < now - timedelta(days=policy.rotation_period_days):
            flags.append("overdue for rotation")
        # A rotated key going quiet is the point of its overlap, not a finding: only active keys count as idle.
        if self.state == self.State.ACTIVE and (self.last_used_at or born) < now - timedelta(days=policy.idle_days):
            flags.append(f"idle {policy.idle_days}+ days")
        if not self.allowed_ips:
            flags.append("no network limit")
        if self.has_all_scopes and self.environment.is_production:
            flags.append("all scopes in prod")
        return flags


class KeyUsageDaily(TimeStampedModel):
    """What one key spent on one UTC day, as the platform reports it (re-read and replaced by the usage ingest,
    keys.services.api_key_usage_ingest, from the same answer as the hours)."""

    workspace_path = "key__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    credits = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    requests = models.PositiveBigIntegerField(default=0)

    objects = RestrictedManager()

    class Meta:
        verbose_name = "key usage (day)"
        verbose_name_plural = "key usage (days)"
        ordering = ["-day"]
        constraints = [
            # One row per key and day; also serves "a key's usage, newest days first" on the key page.
            models.UniqueConstraint(fields=["key", "day"], name="keyusage_unique_key_day"),
        ]

    def __str__(self) -> str:
        return f"{self.key} on {self.day}: {self.credits} credits, {self.requests} requests"


class KeyUsageHourly(models.Model):
    """What one key spent in one UTC hour, as the platform reported it (re-read and replaced by the usage ingest).

    Only hours the platform reports have a row. Kept DETECTION_HOURLY_RETENTION_DAYS days (detection's prune);
    day totals live on in KeyUsageDaily. The table kept its name when the model moved here from detection.
    """

    audit_former_labels = ("detection.keyusagehourly",)  # the audit trail's label for it before it moved here
    workspace_path = "key__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_hours")
    hour = models.DateTimeField(help_text="Start of the UTC hour")
    credits = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    requests = models.PositiveBigIntegerField(default=0)
    # Set whenever an ingest stores new or revised figures, whichever task ran it (the periodic watch or the
    # keys sweep); detection's rules take the flagged rows and clear it, so no revision goes unevaluated.
    awaiting_rules = models.BooleanField(default=True, db_default=True,
                                         help_text="New or revised figures the detection rules have not seen yet")

    objects = RestrictedManager()

    class Meta:
        db_table = "detection_keyusagehourly"
        verbose_name = "key usage (hour)"
        verbose_name_plural = "key usage (hours)"
        ordering = ["-hour"]
        constraints = [
            # One row per key and hour; also serves "this key's hours before H" (idle waking, blast radius).
            models.UniqueConstraint(fields=["key", "hour"], name="keyusagehourly_unique_key_hour"),
        ]
        indexes = [
            # The rules' "every key's hours since T" and the retention prune.
            models.Index(fields=["hour"], name="keyusagehourly_hour_idx"),
            # The rules taking the rows awaiting them: a few per run, found without reading the whole table.
            models.Index(fields=["id"], condition=Q(awaiting_rules=True), name="keyusagehourly_awaiting_idx"),
        ]

    def __str__(self) -> str:
        return f"key {self.key_id} at {self.hour:%Y-%m-%d %H:00}: {self.credits} credits, {self.requests} requests"


# --- pre-aggregated burn (kept current by the usage ingest, keys.services.burn) -----------------------------------
BURN_WINDOW_DAYS = 30  # the posture dashboard's window: the key totals below are over this many days


class EnvironmentUsageDaily(models.Model):
    """What every key of one environment spent on one UTC day: the sum of their KeyUsageDaily rows, kept equal to
    it by the usage ingest in the transaction that writes them (keys.services.burn). Serves the dashboard's burn
    per environment without reading the key rows."""

    workspace_path = "workspace_id"

    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("workspaces.Environment", on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    credits = models.DecimalField(max_digits=18, decimal_places=3, default=0)

    objects = RestrictedManager()

    class Meta:
        verbose_name = "environment usage (day)"
        verbose_name_plural = "environment usage (days)"
        constraints = [models.UniqueConstraint(fields=["environment", "day"], name="envusage_unique_env_day")]
        indexes = [models.Index(fields=["day"], name="envusage_day_idx")]

    def __str__(self) -> str:
        return f"environment {self.environment_id} on {self.day}: {self.credits} credits"


class KeyUsageWindow(models.Model):
    """What one key spent over the BURN_WINDOW_DAYS UTC days ending on `day` (the sum of its KeyUsageDaily rows
    for day - BURN_WINDOW_DAYS + 1 … day), kept current by the usage ingest in the transaction that writes the day
    rows (keys.services.burn): a change on day D moves the windows ending D … D + BURN_WINDOW_DAYS - 1, so
    tomorrow's window is ready before any ingest runs tomorrow. Serves "the keys that spent most" as one index
    read. The workspace is copied from the key (a key never changes workspace) for the scoping filter."""

    workspace_path = "workspace_id"

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_windows")
    workspace = models.ForeignKey("workspaces.Workspace", on_delete=models.CASCADE, related_name="+")
    day = models.DateField(help_text="Last day of the window")
    credits = models.DecimalField(max_digits=18, decimal_places=3, default=0)

    objects = RestrictedManager()

    class Meta:
        verbose_name = "key usage (window)"
        verbose_name_plural = "key usage (windows)"
        constraints = [models.UniqueConstraint(fields=["key", "day"], name="keyusagewindow_unique_key_day")]
        indexes = [
            # The top spenders on one day, read in order (LIMIT n stops after n index entries).
            models.Index(F("day"), F("credits").desc(), F("key"), name="keyusagewindow_top_idx"),
        ]

    def __str__(self) -> str:
        return f"key {self.key_id}, {BURN_WINDOW_DAYS} days to {self.day}: {self.credits} credits"
