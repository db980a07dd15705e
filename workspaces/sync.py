"""Turns service accounts into platform calls for the outbox, and compares them with the platform.

A create carries the account's Keyward tag in its name, so a retry finds what a lost answer made; the platform
has no endpoint to rename, disable or delete a service account (its keys are revoked with it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from project.sync.models import SyncJob
from project.sync.registry import (
    MISSING_REMOTELY,
    UNKNOWN_LOCALLY,
    DriftItem,
    LocalObject,
    in_scope,
    register,
    register_objects,
    register_reconciler,
)
from project.sync.selectors import attempted_before
from workspaces.models import ServiceAccount
from workspaces.services import (
    SERVICE_ACCOUNT_KIND,
    service_account_mark_synced,
    service_account_remote_name,
    service_account_remote_tag,
)


@register(SERVICE_ACCOUNT_KIND)
def push_service_account(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        # The platform has no endpoint to delete (or disable) a service account; its keys were revoked with it.
        return job.payload.get("remote_id") or None
    account = ServiceAccount.objects.filter(pk=job.object_id).first()
    if account is None:
        return None
    if account.remote_id:
        return account.remote_id  # nothing else to send: the platform cannot rename an account either
    tag = service_account_remote_tag(account)
    remote_id = ""
    if attempted_before(job):
        remote_id = next((a["service_account_user_id"] for a in client.list_service_accounts() if tag in a["name"]),
                         "")
    if not remote_id:
        remote_id = client.create_service_account(name=service_account_remote_name(account),
                                                  idempotency_key=str(job.idempotency_key))
    service_account_mark_synced(service_account_id=account.pk, remote_id=remote_id)
    return remote_id


@register_reconciler(SERVICE_ACCOUNT_KIND)
def reconcile_service_accounts(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    remote = {a["service_account_user_id"]: a for a in client.list_service_accounts()}
    known = set()
    for account in in_scope(ServiceAccount.objects.exclude(remote_id="").order_by("pk"), workspace_ids):
        known.add(account.remote_id)
        if account.remote_id not in remote:
            yield DriftItem(SERVICE_ACCOUNT_KIND, account.pk, account.remote_id, MISSING_REMOTELY,
                            workspace_id=account.workspace_id, label=account.name)
    for remote_id, data in remote.items():
        if remote_id not in known:
            yield DriftItem(SERVICE_ACCOUNT_KIND, None, remote_id, UNKNOWN_LOCALLY, label=str(data.get("name", "")))


@register_objects(SERVICE_ACCOUNT_KIND)
def service_account_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in ServiceAccount.objects.filter(is_active=True).values_list("pk", "workspace_id",
                                                                                         "name"):
        yield LocalObject(pk, workspace_id, name)
