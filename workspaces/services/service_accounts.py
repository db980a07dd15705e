"""Every write to service accounts (machine identities): each one audited; creation synced to the platform.

- `keys.issue` creates and updates, `keys.revoke` disables (running every hook in SERVICE_ACCOUNT_DISABLE_HOOKS
  in the same transaction: the keys and broker apps register the revocation of their keys), enabling again
  needs both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from project.actors import Actor
from project.audit.services import diff, record
from project.sync.kinds import SyncKind
from project.sync.services import job_enqueue
from workspaces import access
from workspaces.models import ServiceAccount, Workspace
from workspaces.services.roles import _person

SERVICE_ACCOUNT_KIND = SyncKind.SERVICE_ACCOUNT
SERVICE_ACCOUNT_FIELDS = ("name", "description")

ServiceAccountHook = Callable[[Any, ServiceAccount], object]
#: Called as hook(actor, service_account) inside service_account_disable's transaction, after the account
#: is marked disabled; an exception rolls the whole disable back. The keys and broker apps register the hooks
#: that revoke the account's keys.
SERVICE_ACCOUNT_DISABLE_HOOKS: list[ServiceAccountHook] = []


# --- service accounts --------------------------------------------------------------------------------
def _sa_snapshot(sa: ServiceAccount) -> dict[str, Any]:
    return {f: getattr(sa, f) for f in SERVICE_ACCOUNT_FIELDS}


@transaction.atomic
def service_account_create(*, actor: Actor, workspace: Workspace, name: str, description: str = "") -> ServiceAccount:
    """Create a machine identity in a workspace (keys.issue). Audited; enqueues its creation on the platform
    (POST /v1/service-accounts; the handler stores the platform's id)."""
    access.require(actor, "keys.issue", workspace.pk)
    sa = ServiceAccount(workspace=workspace, name=name, description=description, created_by=_person(actor))
    sa.full_clean()
    sa.save()
    record(actor=actor, action="service_account.create", target=sa, workspace_id=workspace.pk,
           changes=diff({}, _sa_snapshot(sa)))
    job_enqueue(kind=SERVICE_ACCOUNT_KIND, object_id=sa.pk, workspace_id=workspace.pk, object_repr=sa.name)
    return sa


@transaction.atomic
def service_account_update(*, actor: Actor, service_account: ServiceAccount, **fields: Any) -> ServiceAccount:
    """Rename or describe a service account (keys.issue). Audited; nothing to sync (the platform has no rename
    endpoint for service accounts)."""
    access.require(actor, "keys.issue", service_account.workspace_id)
    sa = ServiceAccount.objects.select_for_update().get(pk=service_account.pk)
    before = _sa_snapshot(sa)
    for key, value in fields.items():
        if key not in SERVICE_ACCOUNT_FIELDS:
            raise TypeError(f"service_account_update() got an unexpected field {key!r}")
        setattr(sa, key, value)
    sa.full_clean()
    changes = diff(before, _sa_snapshot(sa))
    if changes:
        sa.save()
        record(actor=actor, action="service_account.update", target=sa, workspace_id=sa.workspace_id,
               changes=changes)
    return sa


@transaction.atomic
def service_account_disable(*, actor: Actor, service_account: ServiceAccount) -> ServiceAccount:
    """Disable a service account (keys.revoke): it stops holding any permission at once, and every hook in
    SERVICE_ACCOUNT_DISABLE_HOOKS (revoking its keys) runs in this transaction; a failing hook undoes it all.
    Its role assignments stay, dormant, for a later enable. Audited. Disabling a disabled account is a no-op.
    The returned row's `keys_revoked` is how many keys the hooks revoked."""
    access.require(actor, "keys.revoke", service_account.workspace_id)
    sa = ServiceAccount.objects.select_for_update().get(pk=service_account.pk)
    if not sa.is_active:
        sa.keys_revoked = 0
        return sa
    sa.is_active, sa.disabled_at, sa.disabled_by = False, timezone.now(), _person(actor)
    sa.save(update_fields=["is_active", "disabled_at", "disabled_by", "updated_at"])
    record(actor=actor, action="service_account.disable", target=sa, workspace_id=sa.workspace_id,
           changes={"is_active": [True, False]})
    # Each hook answers how many keys it revoked (anything else counts as none); the admin tells the person the total.
    answers = [hook(actor, sa) for hook in list(SERVICE_ACCOUNT_DISABLE_HOOKS)]
    sa.keys_revoked = sum(n for n in answers if isinstance(n, int) and not isinstance(n, bool))
    access.forget(service_account)
    return sa


@transaction.atomic
def service_account_enable(*, actor: Actor, service_account: ServiceAccount) -> ServiceAccount:
    """Enable a disabled service account again. Undoing a revocation needs keys.revoke as well as keys.issue.
    Its revoked keys stay revoked. Audited."""
    access.require(actor, "keys.issue", service_account.workspace_id)
    access.require(actor, "keys.revoke", service_account.workspace_id)
    sa = ServiceAccount.objects.select_for_update().get(pk=service_account.pk)
    if sa.is_active:
        return sa
    sa.is_active, sa.disabled_at, sa.disabled_by = True, None, None
    sa.save(update_fields=["is_active", "disabled_at", "disabled_by", "updated_at"])
    record(actor=actor, action="service_account.enable", target=sa, workspace_id=sa.workspace_id,
           changes={"is_active": [False, True]})
    access.forget(service_account)
    return sa


def service_account_remote_tag(account: ServiceAccount) -> str:
    return f"[keyward:sa-{account.pk}]"


def service_account_remote_name(account: ServiceAccount) -> str:
    return f"{account.name} {service_account_remote_tag(account)}"


def service_account_mark_synced(*, service_account_id: int, remote_id: str) -> None:
    """Store the platform's id of a service account (system bookkeeping after a create, not audited)."""
    ServiceAccount.objects.filter(pk=service_account_id, remote_id="").update(remote_id=remote_id,
                                                                              updated_at=timezone.now())


def service_account_ensure_remote(*, actor: Actor, service_account: ServiceAccount, client: Any = None) -> str:
    """Put a service account on the platform now if it is not there yet (the outbox would do it soon; issuing
    a key right away needs it now). Finds an account an earlier attempt made by its tag; needs keys.issue."""
    from project.platform.client import client_for_workspace

    access.require(actor, "keys.issue", service_account.workspace_id)
    account = ServiceAccount.objects.get(pk=service_account.pk)
    if account.remote_id:
        return account.remote_id
    client = client or client_for_workspace(account.workspace_id)
    tag = service_account_remote_tag(account)
    remote_id = next((a["service_account_user_id"] for a in client.list_service_accounts() if tag in a["name"]), "")
    if not remote_id:
        remote_id = client.create_service_account(name=service_account_remote_name(account),
                                                  idempotency_key=f"keyward-sa-{account.pk}")
    service_account_mark_synced(service_account_id=account.pk, remote_id=remote_id)
    return remote_id
