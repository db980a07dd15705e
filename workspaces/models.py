"""Tenancy and access: workspaces and their environments, machine identities, roles and role assignments.

Every other app hangs from `Workspace`. The tables were created by the agents and keys apps and keep their
names (`Meta.db_table`): the models moved here without copying a row (workspaces/migrations/0001).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from project import access
from project.actors import Actor
from project.fields import EncryptedTextField
from project.models import TimeStampedModel
from project.querysets import RestrictedManager, RestrictedQuerySet
from workspaces.permissions import CATALOGUE


class PlatformAccountQuerySet(RestrictedQuerySet):
    def restrict(self, actor: Actor, permission: str = "workspace.view") -> PlatformAccountQuerySet:
        """Accounts bound to a workspace where the actor holds `permission` (once each, however many of their
        workspaces are bound to it). An account no workspace uses is seen by superusers only."""
        allowed = access.workspaces_with(actor, permission)
        if allowed is None:
            return self
        if not allowed:
            return self.none()
        return self.filter(pk__in=self.model._default_manager.filter(workspaces__id__in=allowed).values("pk"))


class PlatformAccount(TimeStampedModel):
    """One account (workspace) on the voice-agent platform and the admin key Keyward reaches it with.

    The key is encrypted at rest (fail-closed, covered by ``reencrypt_fields``), write-only on every page and
    never in a log, audit row, payload or task argument; only its hint stays readable. ``key_version`` grows
    with every key change so each process rebuilds its pooled client (project.platform.client). During a
    rotation's overlap the previous key is kept, encrypted, until it is revoked.
    """

    class State(models.TextChoices):
        UNVERIFIED = "unverified", "Not verified yet"
        VERIFIED = "verified", "Verified"
        FAILING = "failing", "Failing"

    audit_former_labels = ()
    workspace_path = "workspaces__id"  # RestrictedQuerySet.restrict(): an account is seen through its workspaces

    name = models.CharField(max_length=120, unique=True)
    base_url = models.URLField("API base URL", max_length=300,
                               help_text="e.g. https://api.elevenlabs.io (or a data-residency URL)")
    api_key = EncryptedTextField("admin key", help_text="Write-only: never shown again after saving.")
    key_hint = models.CharField(max_length=12, blank=True, editable=False)
    key_version = models.PositiveIntegerField(default=1, editable=False)
    key_set_at = models.DateTimeField(null=True, blank=True, editable=False,
                                      help_text="When Keyward started using this key (its age for rotation)")
    # Where the platform lists Keyward's own key (found by its hint among the service accounts' keys): what lets
    # Keyward issue its successor itself. Empty when the key is a personal key or not visible.
    key_service_account_id = models.CharField(max_length=128, blank=True, editable=False)
    key_remote_id = models.CharField("platform key id", max_length=128, blank=True, editable=False)
    key_permissions = models.JSONField(null=True, blank=True, editable=False,
                                       help_text="The key's permissions as the platform lists them (null: not listed)")
    # The rotation overlap: the key in use before the current one, until it is revoked.
    previous_api_key = EncryptedTextField(null=True, blank=True, default=None, editable=False)
    previous_key_hint = models.CharField(max_length=12, blank=True, editable=False)
    previous_key_remote_id = models.CharField(max_length=128, blank=True, editable=False)
    previous_key_service_account_id = models.CharField(max_length=128, blank=True, editable=False)
    overlap_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The previous key's credits as the platform's key list last showed them, and when: unchanged for
    # PLATFORM_KEY_QUIET_HOURS after the overlap, the key has gone quiet and is revoked.
    previous_key_usage = models.JSONField(default=dict, blank=True, editable=False)
    # A rotation in flight: the successor is named with this uuid, so a lost answer is found, never doubled.
    rotation_uuid = models.UUIDField(null=True, blank=True, editable=False)
    state = models.CharField(max_length=12, choices=State.choices, default=State.UNVERIFIED, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure = models.CharField(max_length=300, blank=True, editable=False,
                                    help_text="The platform's reason, redacted")
    platform_info = models.JSONField(default=dict, blank=True, editable=False,
                                     help_text="What the platform says of the account (plan), where it says it")
    is_default = models.BooleanField(default=False, editable=False,
                                     help_text="Made from PLATFORM_API_URL / PLATFORM_API_KEY")

    objects = PlatformAccountQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True),
                                    name="platform_account_one_default"),
        ]

    def __str__(self) -> str:
        return self.name


class Workspace(TimeStampedModel):
    """A team's boundary: its agents, secrets, keys and people's roles live inside one workspace."""

    audit_former_labels = ("agents.workspace",)  # the audit trail's label for it before it moved here
    workspace_path = "id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    # PROTECT: an account with workspaces cannot be deleted. Moving a workspace with synced objects is refused
    # (workspaces.services.workspace_bind_account): its objects live on the old account.
    platform_account = models.ForeignKey(PlatformAccount, on_delete=models.PROTECT, related_name="workspaces")
    # How this workspace's objects are named on the account: "" (plain names) when it was alone on its account
    # when bound, "<slug>__" when it shares the account with other workspaces.
    remote_prefix = models.CharField(max_length=70, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        db_table = "agents_workspace"  # created by the agents app; moved here with its rows
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Environment(TimeStampedModel):
    """A deployment stage of a workspace (dev, staging, prod by default), with its credit budget.

    `platform_environment` is the value passed as `environment` to the platform's signed-URL and token
    endpoints, which select per-environment variables there.
    """

    audit_former_labels = ("agents.environment",)  # the audit trail's label for it before it moved here

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=30, validators=[RegexValidator(r"^[a-z][a-z0-9-]{0,29}$",
                            "Use lowercase letters, digits and hyphens, starting with a letter.")])
    platform_environment = models.CharField(max_length=60, default="production")
    credit_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Credits the keys of this environment may spend per period; blank = no budget")
    is_production = models.BooleanField(default=False)

    objects = RestrictedManager()

    class Meta:
        db_table = "agents_environment"  # created by the agents app; moved here with its rows
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="environment_unique_name_per_workspace"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} / {self.name}"


class ServiceAccount(TimeStampedModel):
    """A machine identity owned by a workspace (an app backend, a CI job), never a person."""

    audit_former_labels = ("keys.serviceaccount",)  # the audit trail's label for it before it moved here

    is_service_account = True

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="service_accounts")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+", editable=False)
    remote_id = models.CharField("platform service account id", max_length=128, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)

    objects = RestrictedManager()

    class Meta:
        db_table = "keys_serviceaccount"  # created by the keys app; moved here with its rows
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="service_account_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class RoleQuerySet(RestrictedQuerySet):
    def restrict(self, actor: Actor, permission: str = "workspace.view") -> RoleQuerySet:
        """Built-in roles (shared by every workspace, so visible to anyone holding the permission somewhere)
        and the custom roles of the workspaces where the actor holds `permission`."""
        allowed = access.workspaces_with(actor, permission)
        if allowed is None:
            return self
        if not allowed:
            return self.none()
        return self.filter(Q(workspace__isnull=True) | Q(workspace_id__in=allowed))


class Role(TimeStampedModel):
    """A named set of permissions from the fixed catalogue. Built-in roles have no workspace."""

    audit_former_labels = ("keys.role",)  # the audit trail's label for it before it moved here
    objects = RoleQuerySet.as_manager()

    workspace = models.ForeignKey(Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="roles",
                                  help_text="Blank for built-in roles, which every workspace shares")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    permissions = models.JSONField(default=list)
    is_builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        db_table = "keys_role"  # created by the keys app; moved here with its rows
        ordering = ["-is_builtin", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="role_unique_name_per_workspace"),
            models.UniqueConstraint(fields=["name"], condition=Q(workspace__isnull=True),
                                    name="role_unique_builtin_name"),
            models.CheckConstraint(condition=Q(is_builtin=False) | Q(workspace__isnull=True),
                                   name="role_builtin_has_no_workspace"),
        ]

    def __str__(self) -> str:
        return self.name if self.workspace_id is None else f"{self.name} ({self.workspace})"

    def clean(self) -> None:
        perms = self.permissions
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise ValidationError({"permissions": "Permissions must be a list of names from the catalogue."})
        unknown = sorted(set(perms) - set(CATALOGUE))
        if unknown:
            raise ValidationError({"permissions": f"Not in the permission catalogue: {', '.join(unknown)}."})
        if not perms:
            raise ValidationError({"permissions": "A role needs at least one permission."})
        self.permissions = sorted(set(perms))
        if not self.is_builtin and self.workspace_id is None:
            raise ValidationError({"workspace": "A custom role belongs to one workspace."})


class RoleAssignment(TimeStampedModel):
    """Grants a role to a user or a service account in one workspace, optionally until a date."""

    audit_former_labels = ("keys.roleassignment",)  # the audit trail's label for it before it moved here

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="role_assignments")
    service_account = models.ForeignKey(ServiceAccount, null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="role_assignments")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedManager()

    class Meta:
        db_table = "keys_roleassignment"  # created by the keys app; moved here with its rows
        ordering = ["workspace__name", "role__name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, service_account__isnull=True)
                           | Q(user__isnull=True, service_account__isnull=False)),
                name="role_assignment_one_principal"),
            models.UniqueConstraint(fields=["workspace", "role", "user"], condition=Q(user__isnull=False),
                                    name="role_assignment_unique_user"),
            models.UniqueConstraint(fields=["workspace", "role", "service_account"],
                                    condition=Q(service_account__isnull=False),
                                    name="role_assignment_unique_service_account"),
        ]
        indexes = [
            # access.permissions_for(): every assignment of one user, in one query.
            models.Index(fields=["user", "workspace"], name="role_assignment_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.principal} is {self.role.name} in {self.workspace}"

    @property
    def principal(self) -> object:
        return self.user if self.user_id else self.service_account

    def clean(self) -> None:
        if bool(self.user_id) == bool(self.service_account_id):
            raise ValidationError("Choose either a user or a service account.")
        if self.service_account_id and self.service_account.workspace_id != self.workspace_id:
            raise ValidationError({"service_account": "This service account belongs to another workspace."})
        if self.role_id and self.role.workspace_id not in (None, self.workspace_id):
            raise ValidationError({"role": "This custom role belongs to another workspace."})
