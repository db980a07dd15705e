"""Each workspace's detection policy.

Alerts are raised and worked through project.alerts.services; usage ingest and the rules live in
detection.usage and detection.rules, the credit guard in detection.guard, concurrency in detection.concurrency,
incidents in detection.incidents.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from detection.models import DetectionPolicy
from project import access
from project.actors import SYSTEM, Actor
from project.audit.services import diff, record
from workspaces.models import Workspace

POLICY_FIELDS = ("time_zone", "spike_factor", "spike_min_credits", "baseline_days", "unusual_hours_enabled",
                 "unusual_start_hour", "unusual_end_hour", "unusual_min_credits", "idle_days", "concurrency_samples",
                 "guard_notice_percent", "guard_warning_percent", "suspend_prod_at_limit", "suspend_nonprod_at_limit",
                 "billing_period_day", "guardrail_enforce")


# --- detection policies ------------------------------------------------------------------------------------
def _policy_values(policy: DetectionPolicy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in POLICY_FIELDS}


def detection_policies_ensure(*, workspace_ids: Iterable[int]) -> dict[int, DetectionPolicy]:
    """Each workspace's detection policy, created with the defaults where a workspace has none yet (by the
    system, audited as ``detection_policy.create``). Two queries when every policy exists."""
    wanted = sorted(set(workspace_ids))
    found = {p.workspace_id: p for p in DetectionPolicy.objects.filter(workspace_id__in=wanted)}
    missing = [ws for ws in wanted if ws not in found]
    for workspace_id in missing:  # once per workspace, ever
        with transaction.atomic():
            policy, created = DetectionPolicy.objects.get_or_create(workspace_id=workspace_id)
            if created:
                record(actor=SYSTEM, action="detection_policy.create", target=policy, workspace_id=workspace_id,
                       changes={"defaults": True})
        found[workspace_id] = policy
    return found


def detection_policy_of(workspace_id: int) -> DetectionPolicy:
    """The workspace's detection policy, created with the defaults on first use."""
    return detection_policies_ensure(workspace_ids=[workspace_id])[workspace_id]


@transaction.atomic
def detection_policy_save(*, actor: Actor, workspace: Workspace, **fields: Any) -> DetectionPolicy:
    """Create or change a workspace's detection thresholds and credit-guard settings (incidents.manage).
    Audits the field changes; nothing reaches the platform."""
    access.require(actor, "incidents.manage", workspace.pk)
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise TypeError(f"detection_policy_save() got unexpected fields {sorted(unknown)}")
    policy = DetectionPolicy.objects.select_for_update().filter(workspace=workspace).first()
    before = _policy_values(policy) if policy else {}
    policy = policy or DetectionPolicy(workspace=workspace)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    changes = diff(before, _policy_values(policy))
    if changes or not before:
        record(actor=actor, action="detection_policy.update" if before else "detection_policy.create",
               target=policy, workspace_id=workspace.pk, changes=changes)
    return policy
