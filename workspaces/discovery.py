"""What discovery reads of an account's service accounts, and how one made on the platform is adopted: a local
service account linked to its remote id (its keys are the keys app's kind, adopted after it).

Facts: ``name``, ``created_at_unix``, ``key_count``. The platform's list returns every account's keys inline: only
the count is kept here, and the list is dropped account by account.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from project.actors import is_system
from project.sync.kinds import SyncKind
from project.sync.registry import Adopted, Discoverable, Observed, register_discoverable
from workspaces.models import ServiceAccount


def observe_service_accounts(client: Any) -> Iterator[Observed]:
    accounts = client.list_service_accounts()
    while accounts:
        account = accounts.pop(0)
        yield Observed(str(account["service_account_user_id"]), str(account.get("name") or ""),
                       {"name": str(account.get("name") or ""), "created_at_unix": account.get("created_at_unix"),
                        "key_count": len(account.get("api-keys") or [])})


def governed_service_accounts(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    return {remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
            ServiceAccount.objects.filter(remote_id__in=remote_ids).values_list("remote_id", "pk", "workspace_id")}


def unique_name(wanted: str, taken: set[str], limit: int) -> str:
    """``wanted`` (cut to ``limit``), or ``wanted (2)``, ``(3)``… when a local object has the name (casefolded
    names in ``taken``, which grows)."""
    base = (wanted.strip() or "unnamed")[:limit]
    name, n = base, 1
    while name.casefold() in taken:
        n += 1
        suffix = f" ({n})"
        name = base[:limit - len(suffix)] + suffix
    taken.add(name.casefold())
    return name


def adopt_service_accounts(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    taken = {n.casefold() for n in ServiceAccount.objects.filter(workspace_id=workspace_id)
             .values_list("name", flat=True)}
    created_by = None if is_system(actor) or not getattr(actor, "is_authenticated", False) else actor
    rows = [ServiceAccount(workspace_id=workspace_id, name=unique_name(o.label, taken, 120), remote_id=o.remote_id,
                           description="Adopted from the platform", created_by=created_by) for o in observations]
    ServiceAccount.objects.bulk_create(rows, batch_size=500)
    return Adopted(adopted={account.remote_id: str(account.pk) for account in rows})


def register() -> None:
    register_discoverable(Discoverable(
        kind=SyncKind.SERVICE_ACCOUNT, title="Service accounts", order=50, object_type="workspaces.serviceaccount",
        observe=observe_service_accounts, governed=governed_service_accounts, adopt=adopt_service_accounts))
