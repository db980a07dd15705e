"""Machine identities, roles and role assignments (the API keys themselves come with the keys issue)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from agents.models import Workspace
from keys.permissions import CATALOGUE
from project.models import TimeStampedModel


class ServiceAccount(TimeStampedModel):
    """A machine identity owned by a workspace (an app backend, a CI job), never a person."""

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

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="service_account_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Role(TimeStampedModel):
    """A named set of permissions from the fixed catalogue. Built-in roles have no workspace."""

    workspace = models.ForeignKey(Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="roles",
                                  help_text="Blank for built-in roles, which every workspace shares")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    permissions = models.JSONField(default=list)
    is_builtin = models.BooleanField(default=False, editable=False)

    class Meta:
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

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="role_assignments")
    service_account = models.ForeignKey(ServiceAccount, null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="role_assignments")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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


from keys.models_apikeys import *  # noqa: E402,F401,F403
