"""What discovery reads of an account's API keys, and how a key made on the platform (dashboard, CLI) is adopted.

The platform returns each service account's keys inline in its service-account list: they are read account by
account and the list is dropped as it goes. A key's secret is never returned, so an adopted key has no digest
(the leak check cannot match it); it keeps the platform's ``hashed_xi_api_key`` as ``platform_hash``, which the
usage ingest joins on, so its usage reaches detection. It can be revoked, suspended and rotated (the successor is
a Keyward key) and counts against its environment's budget like any key. Keyward's own platform-account key (and
its predecessor during a rotation) is recognised as governed and never offered for adoption.

Facts of a key observation (the guardrails read them): ``name``, ``hint``, ``service_account_id``,
``permissions`` ("all" or a list), ``allowed_ips`` (a list, empty: any address), ``expires_at_unix`` (None: no
expiry), ``is_disabled``, ``disable_reason``, ``platform_hash``, ``created_at_unix``, ``character_limit``,
``character_count``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from keys.models import ALL_SCOPES, ApiKey
from project.actors import is_system
from project.networks import normalise_networks
from project.sync.kinds import SyncKind
from project.sync.registry import Adopted, Discoverable, Observed, register_discoverable
from workspaces.models import Environment, PlatformAccount, ServiceAccount

OWN_KEY = "platform_account:"  # the object id of Keyward's own key's observation: "platform_account:<pk>"


def key_facts(key: Mapping[str, Any], service_account_id: str) -> dict[str, Any]:
    permissions = key.get("permissions")
    return {
        "name": str(key.get("name") or ""),
        "hint": str(key.get("hint") or ""),
        "service_account_id": str(key.get("service_account_user_id") or service_account_id),
        "permissions": ALL_SCOPES if permissions in (None, ALL_SCOPES) else [str(p) for p in permissions],
        "allowed_ips": [str(ip) for ip in key.get("allowed_ips") or []],
        "expires_at_unix": key.get("expires_at_unix"),
        "is_disabled": bool(key.get("is_disabled")),
        "disable_reason": key.get("disable_reason"),
        "platform_hash": str(key.get("hashed_xi_api_key") or ""),
        "created_at_unix": key.get("created_at_unix"),
        "character_limit": key.get("character_limit"),
        "character_count": key.get("character_count"),
    }


def observe_api_keys(client: Any) -> Iterator[Observed]:
    accounts = client.list_service_accounts()
    accounts.reverse()
    while accounts:
        account = accounts.pop()  # dropped once read: memory holds the rest of the list, not a copy of it
        sa_id = str(account["service_account_user_id"])
        for key in account.get("api-keys") or []:
            yield Observed(str(key["key_id"]), str(key.get("name") or ""), key_facts(key, sa_id))


def governed_api_keys(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    found: dict[str, tuple[str, int | None]] = {
        remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
        ApiKey.objects.filter(remote_key_id__in=remote_ids).values_list("remote_key_id", "pk", "workspace_id")}
    # Keyward's own key on the account (and its predecessor while a rotation overlaps): governed, not adoptable.
    for pk, current, previous in (PlatformAccount.objects.filter(Q(key_remote_id__in=remote_ids)
                                                                 | Q(previous_key_remote_id__in=remote_ids))
                                  .values_list("pk", "key_remote_id", "previous_key_remote_id")):
        for remote_id in (current, previous):
            if remote_id in remote_ids:
                found.setdefault(remote_id, (f"{OWN_KEY}{pk}", None))
    return found


def key_needs(observation: Any) -> list[tuple[str, str]]:
    sa_id = observation.facts.get("service_account_id")
    return [(SyncKind.SERVICE_ACCOUNT, sa_id)] if sa_id else []


def _when(unix: Any) -> datetime | None:
    return datetime.fromtimestamp(unix, tz=UTC) if isinstance(unix, int | float) and not isinstance(unix, bool) \
        else None


def guess_environment(name: str, environments: list[Environment]) -> Environment | None:
    """The environment a key's name names as a word ("staging reports" → staging), else the production one, else
    the first."""
    words = set(re.findall(r"[a-z0-9]+", name.lower()))
    named = [env for env in environments if env.name in words]
    if len(named) == 1:
        return named[0]
    production = [env for env in environments if env.is_production]
    return production[0] if production else (environments[0] if environments else None)


def _scopes(permissions: Any) -> Any:
    if permissions == ALL_SCOPES or permissions is None:
        return ALL_SCOPES
    return list(dict.fromkeys(str(p) for p in permissions))  # as the platform holds them: a push sends them back


def _networks(values: list[str]) -> list[str]:
    try:
        return normalise_networks(values)
    except ValidationError:
        return list(values)


def adopt_api_keys(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    sa_ids = {o.facts.get("service_account_id") for o in observations}
    accounts = {a.remote_id: a for a in ServiceAccount.objects.filter(remote_id__in=sa_ids)}
    environments = list(Environment.objects.filter(workspace_id=workspace_id).order_by("pk"))
    now = timezone.now()
    created_by = None if is_system(actor) or not getattr(actor, "is_authenticated", False) else actor
    rows, refused = [], {}
    for observation in observations:
        facts = observation.facts
        account = accounts.get(facts.get("service_account_id"))
        if account is None:
            refused[observation.remote_id] = ("its service account is not in Keyward: adopt the service account "
                                              "first")
            continue
        if account.workspace_id != workspace_id:
            refused[observation.remote_id] = (f"its service account “{account.name}” belongs to another workspace: "
                                              "adopt the key there")
            continue
        environment = guess_environment(observation.label, environments)
        if environment is None:
            refused[observation.remote_id] = "the workspace has no environment to put the key in"
            continue
        created = _when(facts.get("created_at_unix")) or now
        expires = _when(facts.get("expires_at_unix"))
        expired = expires is not None and expires <= now
        key = ApiKey(
            workspace_id=workspace_id, service_account=account, environment=environment,
            name=(observation.label or "unnamed key")[:120], scopes=_scopes(facts.get("permissions")),
            credit_quota=facts.get("character_limit") if isinstance(facts.get("character_limit"), int) else None,
            allowed_ips=_networks(facts.get("allowed_ips") or []), expires_at=expires,
            state=ApiKey.State.EXPIRED if expired else ApiKey.State.ACTIVE, revoked_at=expires if expired else None,
            hint=str(facts.get("hint") or "")[-8:], platform_hash=str(facts.get("platform_hash") or ""),
            remote_key_id=observation.remote_id, origin=ApiKey.Origin.ADOPTED, activated_at=created,
            created_by=created_by)
        if facts.get("is_disabled") and not expired:
            # Off on the platform: suspended here, so Keyward's next push keeps it off until someone resumes it.
            reason = facts.get("disable_reason")
            key.suspended_at = now
            key.suspend_reason = f"disabled on the platform{f' ({reason})' if reason else ''} when adopted"
        rows.append(key)
    ApiKey.objects.bulk_create(rows, batch_size=500)
    return Adopted(adopted={key.remote_key_id: str(key.pk) for key in rows}, refused=refused)


def register() -> None:
    register_discoverable(Discoverable(
        kind=SyncKind.API_KEY, title="API keys", order=60, object_type="keys.apikey", observe=observe_api_keys,
        governed=governed_api_keys, adopt=adopt_api_keys, needs=key_needs))
