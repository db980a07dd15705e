"""Issuing, changing and revoking broker keys. Local only: the platform never learns about broker keys,
so nothing is enqueued."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from broker import keyformat
from broker.models import BrokerKey, BrokerKeyUsage
from broker.services._common import user_or_none
from project import access
from project.actors import Actor
from project.audit.services import diff, record
from workspaces.models import Environment, ServiceAccount, Workspace

KEY_FIELDS = ("name", "allowed_networks", "rate_limit_per_minute", "session_quota", "quota_period", "expires_at",
              "token_types", "carries_vault_tokens")
VAULT_PERMISSION = "secrets.manage"


@dataclass(frozen=True)
class IssuedKey:
    """The issued key row and, this one time, the key itself ("" when a re-posted form found it issued)."""

    key: BrokerKey
    secret: str = field(repr=False)


def _snapshot(key: BrokerKey, agents: Iterable[Agent]) -> dict[str, Any]:
    values = {f: getattr(key, f) for f in KEY_FIELDS}
    values["agents"] = sorted(a.name for a in agents)
    return values


def _check_vault_right(actor: Actor, workspace_id: int, wanted: bool) -> None:
    """Giving a key the vault right hands its holder every end user's vault tokens (it names the end user):
    only someone who may manage the vault can."""
    if wanted and not access.has_perm(actor, VAULT_PERMISSION, workspace_id):
        raise ValidationError({"carries_vault_tokens": "Only someone holding secrets.manage in this workspace can "
                                                       "issue a key whose sessions carry end users' vault tokens."},
                              code="vault_right_refused")


def _check_agents(agents: list[Agent], workspace: Workspace, token_types: list[str] | None = None) -> None:
    if not agents and not token_types:
        raise ValidationError({"agents": "Choose at least one agent the key may open sessions for (or a "
                                         "single-use token type it may mint)."})
    foreign = [a.name for a in agents if a.workspace_id != workspace.pk]
    if foreign:
        raise ValidationError({"agents": f"Not agents of this workspace: {', '.join(sorted(foreign))}."})
    unsigned = [a.name for a in agents if a.auth_mode != Agent.AuthMode.SIGNED]
    if unsigned:
        raise ValidationError({"agents": "Sessions are brokered for signed-URL agents only; "
                                         f"not: {', '.join(sorted(unsigned))}."})


@transaction.atomic
def broker_key_issue(*, actor: Actor, workspace: Workspace, service_account: ServiceAccount, environment: Environment,
                     name: str, agents: Iterable[Agent], allowed_networks: Iterable[str] = (),
                     rate_limit_per_minute: int = 60, session_quota: int = 1000,
                     quota_period: str = BrokerKey.QuotaPeriod.DAY, expires_at: datetime | None = None,
                     token_types: Iterable[str] = (), issue_nonce: str = "",
                     carries_vault_tokens: bool = False) -> IssuedKey:
    """Issue a broker key to a service account (needs keys.issue). Stores only its digest and hint, creates
    its usage counters, audits the issue with the key's limits and token types (never the key). Returns the key
    once. A key needs at least one agent or one single-use token type (`token_types`, none by default).

    `issue_nonce` makes a re-posted issue form idempotent: the key it already issued comes back without
    its secret, which is never shown twice. `carries_vault_tokens` (the sessions it opens get their end user's
    vault tokens through the credential webhook) needs secrets.manage as well.
    """
    access.require(actor, "keys.issue", workspace.pk)
    _check_vault_right(actor, workspace.pk, carries_vault_tokens)
    if issue_nonce:
        existing = BrokerKey.objects.filter(issue_nonce=issue_nonce, workspace=workspace).first()
        if existing is not None:
            return IssuedKey(existing, "")
    # Locked so that a concurrent disable (which revokes the account's keys) cannot miss this one.
    service_account = ServiceAccount.objects.select_for_update().get(pk=service_account.pk)
    if service_account.workspace_id != workspace.pk:
        raise ValidationError({"service_account": "This service account belongs to another workspace."})
    if not service_account.is_active:
        raise ValidationError({"service_account": f"“{service_account}” is disabled."})
    if not access.has_perm(service_account, "sessions.mint", workspace.pk):
        raise ValidationError({"service_account": f"“{service_account}” holds no role with sessions.mint in this "
                                                  "workspace, so the key could open no session: assign one first."})
    agents = list(agents)
    token_types = list(token_types)
    _check_agents(agents, workspace, token_types)
    secret = keyformat.generate(environment.name)
    key = BrokerKey(workspace=workspace, service_account=service_account, environment=environment, name=name,
                    digest=keyformat.digest(secret), hint=keyformat.hint(secret),
                    allowed_networks=list(allowed_networks), rate_limit_per_minute=rate_limit_per_minute,
                    session_quota=session_quota, quota_period=quota_period, expires_at=expires_at,
                    token_types=token_types, created_by=user_or_none(actor), issue_nonce=issue_nonce,
                    carries_vault_tokens=carries_vault_tokens)
    key.full_clean()
    key.save()
    key.agents.set(agents)
    BrokerKeyUsage.objects.create(key=key)
    changes = diff({}, _snapshot(key, agents))
    changes.update({"service_account": service_account.name, "environment": environment.name, "hint": key.hint})
    record(actor=actor, action="broker_key.issue", target=key, workspace_id=workspace.pk, changes=changes)
    return IssuedKey(key, secret)


@transaction.atomic
def broker_key_update(*, actor: Actor, key: BrokerKey, agents: Iterable[Agent] | None = None,
                      **fields: Any) -> BrokerKey:
    """Change a key's name, agents, allowed addresses, limits or expiry (needs keys.issue); audited as a diff.
    A revoked key cannot change. The new limits apply from the next request."""
    access.require(actor, "keys.issue", key.workspace_id)
    key = BrokerKey.objects.select_for_update().select_related("workspace").get(pk=key.pk)
    if key.is_revoked:
        raise ValidationError("A revoked key cannot change; issue a new one.")
    current_agents = list(key.agents.all())
    before = _snapshot(key, current_agents)
    for name, value in fields.items():
        if name not in KEY_FIELDS:
            raise TypeError(f"broker_key_update() got an unexpected field {name!r}")
        if name == "carries_vault_tokens" and value and not key.carries_vault_tokens:
            _check_vault_right(actor, key.workspace_id, True)
        setattr(key, name, list(value) if name in ("allowed_networks", "token_types") else value)
    new_agents = current_agents if agents is None else list(agents)
    _check_agents(new_agents, key.workspace, key.token_types)
    key.full_clean()
    changes = diff(before, _snapshot(key, new_agents))
    if not changes:
        return key
    key.save()
    if agents is not None:
        key.agents.set(new_agents)
    record(actor=actor, action="broker_key.update", target=key, workspace_id=key.workspace_id, changes=changes)
    return key


@transaction.atomic
def broker_key_revoke(*, actor: Actor, key: BrokerKey, reason: str = "") -> BrokerKey:
    """Revoke a key for good (needs keys.revoke). The next request with it gets the 401 (no cache). Audited;
    revoking a revoked key changes nothing."""
    access.require(actor, "keys.revoke", key.workspace_id)
    key = BrokerKey.objects.select_for_update().get(pk=key.pk)
    if key.is_revoked:
        return key
    key.revoked_at = timezone.now()
    key.revoked_by = user_or_none(actor)
    key.revoke_reason = reason[:200]
    key.full_clean()
    key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "updated_at"])
    record(actor=actor, action="broker_key.revoke", target=key, workspace_id=key.workspace_id,
           changes={"revoked_at": [None, key.revoked_at.isoformat()], "reason": key.revoke_reason})
    return key


def broker_keys_revoke_for_service_account(actor: Actor, service_account: ServiceAccount) -> int:
    """workspaces.services.SERVICE_ACCOUNT_DISABLE_HOOKS entry: revoke every live broker key of a service account
    being disabled, in the disable's transaction (each revoke audited). Returns how many were revoked.

    Requests with those keys are refused already (authentication checks that the account is active); this
    makes the revocation final, so enabling the account again does not bring its old keys back."""
    keys = BrokerKey.objects.filter(service_account_id=service_account.pk, revoked_at__isnull=True)
    count = 0
    for key in keys:
        broker_key_revoke(actor=actor, key=key, reason="service account disabled")
        count += 1
    return count
