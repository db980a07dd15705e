"""Every write to people (Django users): adding a person with their first role, changing a login, setting a
password. A login is shared by every workspace, so only superusers change one; anyone holding roles.assign
adds people to their workspaces (through workspaces.services.role_assign and all its rules).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from project.actors import Actor, checked, is_system
from project.audit.services import SECRET_CHANGED, diff, record
from workspaces import access
from workspaces.models import Role, RoleAssignment, Workspace
from workspaces.permissions import ADMIN_ROLE
from workspaces.services.roles import other_active_admins, role_assign, role_grant_check

USER_FIELDS = ("first_name", "last_name", "email", "is_active")


def _require_superuser(actor: Actor, what: str) -> None:
    if not is_system(actor) and not access.is_superuser(checked(actor)):
        raise PermissionDenied(f"Only a superuser can {what}: a login is shared by every workspace.")


def person_create_check(*, actor: Actor, workspace: Workspace, role: Role, email: str,
                        expires_at: datetime | None = None) -> None:
    """The rules of person_create, without writing (the username's own rules are the model's)."""
    role_grant_check(actor=actor, workspace=workspace, role=role, expires_at=expires_at)
    if not email:
        raise ValidationError({"email": "An email address is required (it is how the platform knows people)."})
    if get_user_model().objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "Someone already signs in with this email: assign a role to them instead."})


@transaction.atomic
def person_create(*, actor: Actor, workspace: Workspace, role: Role, username: str, email: str,
                  first_name: str = "", last_name: str = "", expires_at: datetime | None = None) -> Any:
    """Add a person: a staff login with no usable password yet, holding `role` in `workspace` (granted
    through role_assign, with all its rules). Audits the new login and the grant."""
    user_model = get_user_model()
    email = user_model.objects.normalize_email(email)
    person_create_check(actor=actor, workspace=workspace, role=role, email=email, expires_at=expires_at)
    user = user_model(username=username, email=email, first_name=first_name, last_name=last_name, is_staff=True)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    record(actor=actor, action="person.create", target=user, workspace_id=workspace.pk,
           changes={"username": [None, user.get_username()], "email": [None, email]})
    role_assign(actor=actor, workspace=workspace, role=role, user=user, expires_at=expires_at)
    return user


def _workspaces_left_without_admin(user: Any) -> list[str]:
    held = (RoleAssignment.objects.filter(user=user, role__is_builtin=True, role__name=ADMIN_ROLE,
                                          expires_at__isnull=True).select_related("workspace"))
    return [str(a.workspace) for a in held if not other_active_admins(a.workspace_id, exclude_user_id=user.pk)]


@transaction.atomic
def user_update(*, actor: Actor, user: Any, **fields: Any) -> Any:
    """Change a person's name, email or whether their login works (superusers only). Refuses to disable
    the last active Admin of a workspace. Audited."""
    _require_superuser(actor, "change a person's login")
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    before = {f: getattr(user, f) for f in USER_FIELDS}
    for key, value in fields.items():
        if key not in USER_FIELDS:
            raise TypeError(f"user_update() got an unexpected field {key!r}")
        setattr(user, key, value)
    if before["is_active"] and not user.is_active:
        if not is_system(actor) and user.pk == actor.pk:
            raise ValidationError({"is_active": "You cannot disable your own login."})
        orphaned = _workspaces_left_without_admin(user)
        if orphaned:
            raise ValidationError({"is_active": f"{user} is the last active Admin of {', '.join(orphaned)}; "
                                                "assign another Admin first."})
    user.full_clean()
    changes = diff(before, {f: getattr(user, f) for f in USER_FIELDS})
    if not changes:
        return user
    user.save()
    record(actor=actor, action="user.update", target=user, changes=changes)
    return user


@transaction.atomic
def user_set_password(*, actor: Actor, user: Any, password: str | None) -> Any:
    """Set a person's password (None: password sign-in off). Superusers only; validated against the
    password policy; audited as "[changed]", never the value."""
    _require_superuser(actor, "set a person's password")
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    if password is None:
        user.set_unusable_password()
    else:
        password_validation.validate_password(password, user)
        user.set_password(password)
    user.save(update_fields=["password"])
    record(actor=actor, action="user.set_password", target=user, changes={"password": SECRET_CHANGED})
    return user
