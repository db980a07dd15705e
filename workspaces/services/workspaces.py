"""Every write to workspaces and their environments; each one audited. Nothing here reaches the platform."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from project import access
from project.actors import Actor, checked, is_system
from project.audit.services import diff, record
from workspaces.models import Environment, PlatformAccount, Workspace

DEFAULT_ENVIRONMENTS = (("dev", "development", False), ("staging", "staging", False), ("prod", "production", True))


def _snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


def _require_superuser(actor: Actor) -> None:
    if not is_system(actor) and not getattr(checked(actor), "is_superuser", False):
        raise PermissionDenied("Only a superuser can create workspaces.")




# --- workspaces --------------------------------------------------------------------------------------
@transaction.atomic
def workspace_create(*, actor: Actor, name: str, slug: str, description: str = "",
                     environments: tuple[tuple[str, str, bool], ...] = DEFAULT_ENVIRONMENTS,
                     platform_account: PlatformAccount | None = None) -> Workspace:
    """Create a workspace with its default environments (dev, staging, prod), bound to a platform account (the
    default account unless one is given). Its objects get plain names on the account when it is alone there,
    ``<slug>__`` names when it shares the account. Audited; nothing to sync."""
    from workspaces.services.platform_accounts import default_account, remote_prefix_for

    _require_superuser(actor)
    account = platform_account or default_account()
    workspace = Workspace(name=name, slug=slug, description=description, platform_account=account)
    workspace.remote_prefix = remote_prefix_for(workspace, account)
    workspace.full_clean()
    workspace.save()
    for env_name, platform_env, is_prod in environments:
        env = Environment(workspace=workspace, name=env_name, platform_environment=platform_env,
                          is_production=is_prod)
        env.full_clean()
        env.save()
    record(actor=actor, action="workspace.create", target=workspace, workspace_id=workspace.pk,
           changes={"name": [None, name], "environments": [None, [e[0] for e in environments]],
                    "platform_account": [None, str(account)]})
    return workspace


@transaction.atomic
def workspace_update(*, actor: Actor, workspace: Workspace, **fields: Any) -> Workspace:
    """Change a workspace's name, slug or description. Audited."""
    access.require(actor, "workspace.manage", workspace.pk)
    workspace = Workspace.objects.select_for_update().get(pk=workspace.pk)
    before = _snapshot(workspace, ("name", "slug", "description"))
    for key, value in fields.items():
        if key not in before:
            raise TypeError(f"workspace_update() got an unexpected field {key!r}")
        setattr(workspace, key, value)
    workspace.full_clean()
    workspace.save()
    record(actor=actor, action="workspace.update", target=workspace, workspace_id=workspace.pk,
           changes=diff(before, _snapshot(workspace, ("name", "slug", "description"))))
    return workspace


ENV_FIELDS = ("name", "platform_environment", "credit_budget", "is_production")


@transaction.atomic
def environment_save(*, actor: Actor, workspace: Workspace, environment: Environment | None = None,
                     **fields: Any) -> Environment:
    """Create or change an environment of a workspace. Audited."""
    access.require(actor, "workspace.manage", workspace.pk)
    if environment is None:
        environment, before, action = Environment(workspace=workspace), {}, "environment.create"
    else:
        environment = Environment.objects.select_for_update().get(pk=environment.pk, workspace=workspace)
        before, action = _snapshot(environment, ENV_FIELDS), "environment.update"
    for key, value in fields.items():
        if key not in ENV_FIELDS:
            raise TypeError(f"environment_save() got an unexpected field {key!r}")
        setattr(environment, key, value)
    environment.full_clean()
    environment.save()
    record(actor=actor, action=action, target=environment, workspace_id=workspace.pk,
           changes=diff(before, _snapshot(environment, ENV_FIELDS)))
    return environment
