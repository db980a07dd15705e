"""Every permission-filtered read of the keys app: one restricted queryset per model.

`<model>s_for(actor, permission)` returns the rows the actor may see with that permission: those in the
workspaces where the actor holds it (every row for a superuser, none for a person without roles). Admin
querysets, form choices and list filters all come from here, so a row of another workspace cannot appear
in a list, a select, an autocomplete or a count.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from project import access
from project.actors import Actor
from workspaces import access as policy
from workspaces.models import Role, RoleAssignment, ServiceAccount


def roles_for(actor: Actor, permission: str) -> QuerySet:
    """Built-in roles (shared by every workspace, so visible to anyone holding the permission somewhere)
    and the custom roles of the workspaces where the actor holds `permission`."""
    return Role.objects.select_related("workspace").restrict(actor, permission)


def role_assignments_for(actor: Actor, permission: str) -> QuerySet:
    return (RoleAssignment.objects.select_related("workspace", "role", "user", "service_account", "granted_by")
            .restrict(actor, permission))


def service_accounts_for(actor: Actor, permission: str) -> QuerySet:
    return ServiceAccount.objects.select_related("workspace", "created_by", "disabled_by").restrict(actor, permission)


def users_for(actor: Actor, permission: str) -> QuerySet:
    """People holding an assignment (current or expired) in a workspace where the actor holds `permission`.

    A person with no assignment anywhere is visible to superusers only: the people directory of one
    workspace says nothing about the others.
    """
    users = get_user_model().objects.all()
    if access.workspaces_with(actor, permission) is None:
        return users  # every workspace: every login, those without a role included
    return users.filter(pk__in=RoleAssignment.objects.restrict(actor, permission).filter(user__isnull=False)
                        .values("user_id"))


def grantable_roles(actor: Actor, workspace_id: int) -> list[Role]:
    """Roles the actor may grant in one workspace: built-in or that workspace's custom roles, whose
    permissions are all among the actor's own there. Empty without `roles.assign` in that workspace."""
    if not access.has_perm(actor, "roles.assign", workspace_id):
        return []
    own = policy.permissions_in(actor, workspace_id)
    candidates = Role.objects.filter(Q(workspace__isnull=True) | Q(workspace_id=workspace_id))
    return [role for role in candidates if set(role.permissions) <= own]


def grantable_roles_anywhere(actor: Actor) -> QuerySet:
    """Roles the actor may grant in at least one workspace (the choices of the assignment form; the
    service re-checks the pair of role and workspace). Two queries, whatever the number of workspaces."""
    allowed = access.workspaces_with(actor, "roles.assign")
    qs = Role.objects.select_related("workspace")
    if allowed is None:
        return qs
    own = {ws: policy.permissions_in(actor, ws) for ws in allowed}
    ids = [role.pk for role in Role.objects.filter(Q(workspace__isnull=True) | Q(workspace_id__in=allowed))
           if any(set(role.permissions) <= perms for ws, perms in own.items()
                  if role.workspace_id in (None, ws))]
    return qs.filter(pk__in=ids)
