"""Every write to roles and role assignments; each one audited in its transaction (people: .people, service
accounts: .service_accounts).

The rules live here, not in forms (forms call the `*_check` functions below only to show the same errors
on the right field before saving):
- a granter needs `roles.assign` in the workspace and grants or revokes only roles whose permissions are
  all among their own there; nobody grants to, or revokes, their own assignments;
- the last active Admin of a workspace (an enabled person holding the built-in Admin role, without expiry)
  cannot be revoked or disabled;
- custom roles belong to one workspace; creating, editing or deleting one needs `roles.assign` there, and
  both the old and the new permission sets must be within the editor's own (so editing a role that is
  assigned never hands its holders more than the editor has); built-in roles never change;
`actor=SYSTEM` is Keyward itself (seed, migrations, tasks): it passes the permission checks, not the invariants.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from project import access as policy
from project.actors import Actor, is_system
from project.audit.services import diff, record
from workspaces import access
from workspaces.models import Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.permissions import ADMIN_ROLE

ROLE_FIELDS = ("name", "description", "permissions")


# --- helpers -----------------------------------------------------------------------------------------

def _person(actor: Actor) -> Any:
    """The actor as a user row (for granted_by / created_by), or None for the system or a service account."""
    return actor if isinstance(actor, AbstractBaseUser) and getattr(actor, "is_authenticated", False) else None


def _own(actor: Actor, workspace_id: int | None) -> frozenset[str]:
    return access.permissions_in(actor, workspace_id)


def _label(principal: Any) -> str:
    if getattr(principal, "is_service_account", False):
        return f"service account {principal.name}"
    return f"user {principal.get_username()}"


def _is_self(actor: Actor, principal: Any) -> bool:
    if is_system(actor) or principal is None:
        return False
    same_kind = bool(getattr(actor, "is_service_account", False)) == bool(getattr(principal, "is_service_account",
                                                                                False))
    return same_kind and actor.pk == principal.pk


def _lock_workspace(workspace_id: int) -> None:
    # Grants and revokes of one workspace take turns: two admins revoking each other at the same moment must
    # not both see "one other admin left" and leave the workspace with none.
    list(Workspace.objects.select_for_update().filter(pk=workspace_id).values_list("pk"))


def _within_own(actor: Actor, workspace_id: int | None, permissions: Iterable[str], field: str | None,
                message: str) -> None:
    lacking = sorted(set(permissions) - _own(actor, workspace_id))
    if lacking:
        text = f"{message} You do not hold: {', '.join(lacking)}."
        raise ValidationError({field: text} if field else text)


# --- custom roles ------------------------------------------------------------------------------------
def _role_snapshot(role: Role) -> dict[str, Any]:
    return {"name": role.name, "description": role.description, "permissions": sorted(role.permissions or [])}


def role_check(*, actor: Actor, workspace_id: int | None, permissions: Iterable[str], role: Role | None = None) -> None:
    """The cross-row rules of role_create/update/delete (the model checks the catalogue itself)."""
    if role is not None:
        if role.is_builtin:
            raise ValidationError("Built-in roles cannot be changed or deleted; define a custom role instead.")
        _within_own(actor, role.workspace_id, role.permissions, None,
                    "This role carries permissions beyond your own, so only someone who holds them may change it.")
    _within_own(actor, workspace_id, permissions, "permissions",
                "A role may carry only permissions you hold yourself in this workspace.")


@transaction.atomic
def role_create(*, actor: Actor, workspace: Workspace, name: str, permissions: Iterable[str],
                description: str = "") -> Role:
    """Define a custom role in one workspace. Audited; roles are Keyward's own, nothing is enqueued."""
    policy.require(actor, "roles.assign", workspace.pk)
    role = Role(workspace=workspace, name=name, description=description, permissions=list(permissions))
    role.full_clean()
    role_check(actor=actor, workspace_id=workspace.pk, permissions=role.permissions)
    role.save()
    record(actor=actor, action="role.create", target=role, workspace_id=workspace.pk,
           changes=diff({}, _role_snapshot(role)))
    return role


@transaction.atomic
def role_update(*, actor: Actor, role: Role, **fields: Any) -> Role:
    """Rename a custom role or change its permissions (which changes them for everyone holding it). Audits
    the field changes and how many assignments they reach."""
    role = Role.objects.select_for_update().get(pk=role.pk)
    if role.is_builtin:
        raise ValidationError("Built-in roles cannot be changed or deleted; define a custom role instead.")
    policy.require(actor, "roles.assign", role.workspace_id)
    before = _role_snapshot(role)
    role_check(actor=actor, workspace_id=role.workspace_id, permissions=(), role=role)
    for key, value in fields.items():
        if key not in ROLE_FIELDS:
            raise TypeError(f"role_update() got an unexpected field {key!r}")
        setattr(role, key, list(value) if key == "permissions" else value)
    role.full_clean()
    role_check(actor=actor, workspace_id=role.workspace_id, permissions=role.permissions)
    changes = diff(before, _role_snapshot(role))
    if not changes:
        return role
    role.save()
    changes["holders"] = role.assignments.count()
    record(actor=actor, action="role.update", target=role, workspace_id=role.workspace_id, changes=changes)
    access.forget(actor)
    return role


def role_delete_check(*, actor: Actor, role: Role) -> None:
    """Every rule of role_delete, without writing (PermissionDenied or ValidationError)."""
    if role.is_builtin:
        raise ValidationError("Built-in roles cannot be changed or deleted; define a custom role instead.")
    policy.require(actor, "roles.assign", role.workspace_id)
    role_check(actor=actor, workspace_id=role.workspace_id, permissions=(), role=role)
    held = role.assignments.count()
    if held:
        raise ValidationError(f"“{role.name}” is still assigned {held} time(s); revoke those assignments first.")


@transaction.atomic
def role_delete(*, actor: Actor, role: Role) -> None:
    """Delete a custom role that nobody holds any more (expired assignments included). Audited."""
    role = Role.objects.select_for_update().get(pk=role.pk)
    role_delete_check(actor=actor, role=role)
    record(actor=actor, action="role.delete", target=role, workspace_id=role.workspace_id,
           changes=diff(_role_snapshot(role), {}))
    role.delete()


# --- role assignments ----------------------------------------------------------------------------------
def role_grant_check(*, actor: Actor, workspace: Workspace, role: Role, expires_at: datetime | None = None) -> None:
    """The granter's side of a grant: roles.assign in the workspace, a role of that workspace (or built-in)
    within the granter's own permissions there, an expiry in the future."""
    policy.require(actor, "roles.assign", workspace.pk)
    if role.workspace_id not in (None, workspace.pk):
        raise ValidationError({"role": "This custom role belongs to another workspace."})
    _within_own(actor, workspace.pk, role.permissions, "role",
                f"You may grant only roles within your own permissions in {workspace}; “{role.name}” is not.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Choose a time in the future (or leave it blank for no expiry)."})


def role_assign_check(*, actor: Actor, workspace: Workspace, role: Role, user: Any = None,
                      service_account: ServiceAccount | None = None, expires_at: datetime | None = None) -> None:
    """Every rule of role_assign, without writing: PermissionDenied without roles.assign in the workspace,
    ValidationError (keyed by field: role, user, service_account, expires_at) for the rest."""
    role_grant_check(actor=actor, workspace=workspace, role=role, expires_at=expires_at)
    if (user is None) == (service_account is None):
        raise ValidationError("Choose either a person or a service account.")
    principal = user if user is not None else service_account
    field = "user" if user is not None else "service_account"
    if _is_self(actor, principal):
        raise ValidationError({field: "Nobody can grant a role to themselves; ask another person who may assign "
                                      "roles here."})
    if user is not None and not user.is_active:
        raise ValidationError({"user": "This person's login is disabled."})
    if service_account is not None:
        if service_account.workspace_id != workspace.pk:
            raise ValidationError({"service_account": "This service account belongs to another workspace."})
        if not service_account.is_active:
            raise ValidationError({"service_account": "This service account is disabled; enable it first."})
    existing = RoleAssignment.objects.filter(workspace=workspace, role=role, **{field: principal}).first()
    if existing is not None:
        until = ""
        if existing.expires_at is not None:
            verb = "expired" if existing.expires_at <= timezone.now() else "runs until"
            until = f" (it {verb} {existing.expires_at:%Y-%m-%d %H:%M} UTC)"
        raise ValidationError({"role": f"{principal} already holds “{role.name}” in {workspace}{until}; revoke "
                                       "that assignment first to change it."})


@transaction.atomic
def role_assign(*, actor: Actor, workspace: Workspace, role: Role, user: Any = None,
                service_account: ServiceAccount | None = None,
                expires_at: datetime | None = None) -> RoleAssignment:
    """Grant a role to a person or a service account in one workspace, optionally until a time. Audits who
    granted which role (and its permissions) to whom. Not synced: the platform has no API that maps a role to
    a principal (its groups cannot be created through the API)."""
    _lock_workspace(workspace.pk)
    # The rules judge the rows as they are now, not as the caller loaded them.
    role = Role.objects.get(pk=role.pk)
    if user is not None:
        user = get_user_model().objects.get(pk=user.pk)
    if service_account is not None:
        service_account = ServiceAccount.objects.get(pk=service_account.pk)
    role_assign_check(actor=actor, workspace=workspace, role=role, user=user, service_account=service_account,
                      expires_at=expires_at)
    assignment = RoleAssignment(workspace=workspace, role=role, user=user, service_account=service_account,
                                expires_at=expires_at, granted_by=_person(actor))
    assignment.full_clean()
    assignment.save()
    principal = assignment.principal
    record(actor=actor, action="role.assign", target=assignment, workspace_id=workspace.pk,
           changes={"granted_to": _label(principal), "role": role.name, "permissions": sorted(role.permissions),
                    "expires_at": expires_at.isoformat() if expires_at else None})
    access.forget(principal)
    return assignment


def _active_admin(assignment: RoleAssignment) -> bool:
    """A permanent Admin assignment of an enabled person: the kind the workspace must keep one of. An expiring
    one ends by itself, so it never counts, neither as the last Admin nor as "another Admin"."""
    return (assignment.role.is_builtin and assignment.role.name == ADMIN_ROLE and assignment.user_id is not None
            and assignment.user.is_active and assignment.expires_at is None)


def other_active_admins(workspace_id: int, *, exclude_user_id: int) -> int:
    """How many enabled people other than this one hold the built-in Admin role without expiry in the workspace
    (granting a colleague Admin for an hour must not let them remove the last permanent Admin)."""
    return (RoleAssignment.objects.filter(workspace_id=workspace_id, role__is_builtin=True, role__name=ADMIN_ROLE,
                                          user__is_active=True, expires_at__isnull=True)
            .exclude(user_id=exclude_user_id).values("user_id").distinct().count())


def role_revoke_check(*, actor: Actor, assignment: RoleAssignment) -> None:
    """Every rule of role_revoke, without writing (PermissionDenied or ValidationError)."""
    policy.require(actor, "roles.assign", assignment.workspace_id)
    principal = assignment.principal
    if _is_self(actor, principal):
        raise ValidationError("Nobody can revoke their own assignments; ask another person who may assign roles here.")
    _within_own(actor, assignment.workspace_id, assignment.role.permissions, None,
                f"You may revoke only roles within your own permissions; “{assignment.role.name}” is not.")
    if _active_admin(assignment) and not other_active_admins(assignment.workspace_id,
                                                                exclude_user_id=assignment.user_id):
        raise ValidationError(f"{principal} is the last active Admin of {assignment.workspace}; assign another "
                              "Admin first.")


@transaction.atomic
def role_revoke(*, actor: Actor, assignment: RoleAssignment) -> None:
    """Remove one assignment. Audits who revoked which role from whom (and who had granted it)."""
    _lock_workspace(assignment.workspace_id)
    try:
        assignment = (RoleAssignment.objects.select_for_update(of=("self",))
                      .select_related("role", "user", "service_account", "workspace", "granted_by")
                      .get(pk=assignment.pk))
    except RoleAssignment.DoesNotExist:
        raise ValidationError("This assignment has already been revoked.") from None
    role_revoke_check(actor=actor, assignment=assignment)
    principal = assignment.principal
    record(actor=actor, action="role.revoke", target=assignment, workspace_id=assignment.workspace_id,
           changes={"revoked_from": _label(principal), "role": assignment.role.name,
                    "permissions": sorted(assignment.role.permissions),
                    "granted_by": assignment.granted_by.get_username() if assignment.granted_by else None,
                    "expires_at": assignment.expires_at.isoformat() if assignment.expires_at else None})
    assignment.delete()
    access.forget(principal)
