"""Key policies and environment budgets."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from keys.models import KeyPolicy
from keys.selectors import allocated_quota, unlimited_live_keys
from keys.services.common import (
    POLICY_FIELDS,
)
from project import access
from project.actors import Actor
from project.audit.services import diff, record
from workspaces.models import Environment, Workspace
from workspaces.services import environment_save


# --- policy and budgets -------------------------------------------------------------------------------------------
@transaction.atomic
def key_policy_save(*, actor: Actor, workspace: Workspace, **fields: Any) -> KeyPolicy:
    """Create or change a workspace's key policy (workspace.manage). Audited; nothing to sync."""
    access.require(actor, "workspace.manage", workspace.pk)
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise TypeError(f"key_policy_save() got unexpected fields {sorted(unknown)}")
    policy = KeyPolicy.objects.select_for_update().filter(workspace=workspace).first()
    before = {f: getattr(policy, f) for f in POLICY_FIELDS} if policy else {}
    policy = policy or KeyPolicy(workspace=workspace)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    record(actor=actor, action="key_policy.update" if before else "key_policy.create", target=policy,
           workspace_id=workspace.pk, changes=diff(before, {f: getattr(policy, f) for f in POLICY_FIELDS}))
    return policy


@transaction.atomic
def environment_budgets_set(*, actor: Actor, budgets: dict[int, int | None]) -> list[Environment]:
    """Set the credit budgets of environments, all or none (workspace.manage on each). A budget may not be
    below what the live keys' quotas already hold (the error says by how much), nor set while a live key there
    has no quota. Audited per environment by agents' environment_save."""
    problems: dict[str, str] = {}
    changed = []
    for env_id, budget in sorted(budgets.items()):
        env = Environment.objects.select_for_update().select_related("workspace").get(pk=env_id)
        access.require(actor, "workspace.manage", env.workspace_id)
        if env.credit_budget == budget:
            continue
        if budget is not None:
            unlimited, allocated = unlimited_live_keys(env.pk), allocated_quota(env.pk)
            if unlimited:
                problems[f"budget_{env.pk}"] = (f"{unlimited} live key(s) in {env} have no quota: give them one or "
                                                "revoke them before setting a budget.")
                continue
            if allocated > budget:
                problems[f"budget_{env.pk}"] = (
                    f"The live keys in {env} already hold {allocated:,} credits of quota, {allocated - budget:,} "
                    f"more than {budget:,}. Choose at least {allocated:,}, or lower or revoke keys first.")
                continue
        changed.append(environment_save(actor=actor, workspace=env.workspace, environment=env, credit_budget=budget))
    if problems:
        raise ValidationError(problems)
    return changed
