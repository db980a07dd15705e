"""Platform accounts: adding one (its key verified first), changing it, binding workspaces to it, and rotating the
key Keyward itself holds, the most valuable credential in the system.

A key is checked against the platform before anything is saved: a wrong key, an unreachable URL or a key
without the permissions Keyward needs is a ValidationError on the right field and nothing changes. Every change
is audited (never with a key value). Calls to the platform happen outside database transactions.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from project import access
from project.actors import SYSTEM, Actor, checked, is_system
from project.alerts.models import Alert
from project.audit.services import diff, record
from project.logging import redact
from project.platform import client as platform_client
from project.platform.client import PlatformClient
from project.platform.errors import AuthenticationFailed, NotFound, PlatformError, Unavailable
from workspaces.models import PlatformAccount, Workspace

logger = logging.getLogger(__name__)

#: What Keyward does on an account, each a set of alternatives the platform accepts (platform-api.md §5.1).
NEEDED_PERMISSIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read agents, secrets and tools", ("convai_read",)),
    ("change agents, secrets and tools", ("convai_write",)),
    ("manage service accounts and their keys", ("service_account_write", "workspace_write")),
    ("read usage", ("workspace_read", "workspace_analytics_full_read")),
)
ACCOUNT_FIELDS = ("name", "base_url")
SUCCESSOR_PREFIX = "keyward-admin"


# --- checking a key --------------------------------------------------------------------------------------------
@dataclass
class Verification:
    """What the platform said of a key: its account's plan and, where it lists the key, where the key lives."""

    platform_info: dict[str, Any] = field(default_factory=dict)
    service_account_id: str = ""
    key_id: str = ""
    permissions: Any = None  # a list, "all", or None when the platform does not list this key
    allowed_ips: list[str] = field(default_factory=list)


def validate_base_url(value: str) -> str:
    """https, or plain http to a loopback address in debug (the emulator). Returns it without a trailing slash."""
    parts = urlsplit(value or "")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError({"base_url": "Enter the API's base URL, e.g. https://api.elevenlabs.io."})
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError({"base_url": "Give only the scheme, host and port: no path, query or credentials."})
    if parts.scheme == "http":
        if not _is_loopback(parts.hostname):
            raise ValidationError({"base_url": "The API must be reached over https (plain http only to a "
                                               "loopback address, for the emulator)."})
        if getattr(settings, "PRODUCTION", False):
            raise ValidationError({"base_url": "Plain http is allowed only in debug mode; production needs https."})
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hint_of(key: str) -> str:
    """The last four characters, as the platform lists a key's hint; nothing for a key too short to spare them."""
    return key[-4:] if len(key) >= 12 else ""


def _probe_client(base_url: str, api_key: str) -> PlatformClient:
    return PlatformClient(base_url, api_key, timeout=float(getattr(settings, "PLATFORM_TIMEOUT", 10.0)),
                          transport=platform_client._transport)


def _missing(granted: Any) -> list[str]:
    if granted == "all" or granted is None:
        return []
    have = set(granted)
    return [what for what, options in NEEDED_PERMISSIONS if not have.intersection(options)]


def platform_key_verify(*, base_url: str, api_key: str) -> Verification:
    """Ask the platform about a key with read calls only. ValidationError (on base_url or api_key) when the
    platform cannot be reached, refuses the key, or lists it without a permission Keyward needs."""
    if not api_key or not api_key.strip():
        raise ValidationError({"api_key": "Paste the account's admin key."})
    found = Verification()
    client = _probe_client(base_url, api_key.strip())
    try:
        try:
            plan = client.get_subscription()
            found.platform_info = {k: plan.get(k) for k in ("tier", "status", "character_count", "character_limit")}
        except AuthenticationFailed as exc:
            if not exc.has_code("missing_permissions"):
                raise ValidationError({"api_key": f"The platform refused this key ({exc.code})."}) from None
        try:
            accounts = client.list_service_accounts()
        except AuthenticationFailed as exc:
            if not exc.has_code("missing_permissions"):
                raise ValidationError({"api_key": f"The platform refused this key ({exc.code})."}) from None
            raise ValidationError({"api_key": "This key may not manage service accounts and their keys "
                                              "(service_account_write), which Keyward needs."}) from None
        hint = hint_of(api_key.strip())
        mine = [(a, k) for a in accounts for k in a.get("api-keys") or [] if hint and k.get("hint") == hint]
        if len(mine) == 1:
            account, key = mine[0]
            found.service_account_id = account["service_account_user_id"]
            found.key_id = key["key_id"]
            found.permissions = key.get("permissions")
            found.allowed_ips = list(key.get("allowed_ips") or [])
            if key.get("is_disabled"):
                raise ValidationError({"api_key": "The platform lists this key as disabled."})
        lacking = _missing(found.permissions)
        if lacking:
            raise ValidationError({"api_key": "This key lacks permissions Keyward needs: " + "; ".join(lacking)
                                              + ". Issue one with them (or with every permission)."})
        try:
            client.list_agents(page_size=1)
        except AuthenticationFailed as exc:
            raise ValidationError({"api_key": f"This key may not read agents (convai_read): {exc.code}."}) from None
    except Unavailable as exc:
        raise ValidationError({"base_url": f"Could not reach the platform at {base_url} ({exc.code})."}) from None
    except PlatformError as exc:
        raise ValidationError({"api_key": f"The platform answered with an error: {redact(str(exc))[:200]}"}) \
            from None
    finally:
        client.close()
    return found


# --- reading -------------------------------------------------------------------------------------------------
def default_account() -> PlatformAccount:
    """The account made from PLATFORM_API_URL / PLATFORM_API_KEY, made now if there is none (first start)."""
    account = PlatformAccount.objects.filter(is_default=True).first()
    if account is not None:
        return account
    with transaction.atomic():
        key = settings.PLATFORM_API_KEY
        account, created = PlatformAccount.objects.get_or_create(is_default=True, defaults={
            "name": _free_name("Default platform account"), "base_url": settings.PLATFORM_API_URL,
            "api_key": key, "key_hint": hint_of(key), "key_set_at": timezone.now()})
        if created:
            record(actor=SYSTEM, action="platform_account.create", target=account,
                   changes={"name": account.name, "base_url": account.base_url, "from": "PLATFORM_API_URL"})
    return account


def _free_name(name: str) -> str:
    candidate, n = name, 2
    while PlatformAccount.objects.filter(name=candidate).exists():
        candidate, n = f"{name} {n}", n + 1
    return candidate


def _require_account_admin(actor: Actor, account: PlatformAccount | None = None) -> None:
    """Superusers, and people holding workspace.manage in every workspace bound to the account (in at least one
    workspace for a new account): an account's key reaches everything its workspaces hold."""
    if is_system(checked(actor)) or getattr(actor, "is_superuser", False):
        return
    allowed = access.workspaces_with(actor, "workspace.manage")
    if allowed is None:
        return
    if account is None:
        if allowed:
            return
    else:
        bound = set(account.workspaces.values_list("pk", flat=True))
        if bound and bound <= allowed:
            return
    raise PermissionDenied("Platform accounts are managed by superusers and by Admins of every workspace bound "
                           "to the account (workspace.manage).")


def _snapshot(account: PlatformAccount) -> dict[str, Any]:
    return {"name": account.name, "base_url": account.base_url, "key_hint": account.key_hint}


def _apply(account: PlatformAccount, found: Verification) -> None:
    now = timezone.now()
    account.state, account.verified_at, account.last_success_at = PlatformAccount.State.VERIFIED, now, now
    account.last_failure = ""
    account.platform_info = found.platform_info
    account.key_service_account_id, account.key_remote_id = found.service_account_id, found.key_id
    account.key_permissions = found.permissions


# --- writing --------------------------------------------------------------------------------------------------
def platform_account_create(*, actor: Actor, name: str, base_url: str, api_key: str,
                            verified: Verification | None = None, bind: Workspace | None = None) -> PlatformAccount:
    """Add a platform account: its key is verified with read calls first (nothing is saved if it fails), then
    stored encrypted with its hint, and bound to `bind` if given (in the same transaction, with that binding's
    rules). Anyone but a superuser must bind it to a workspace they manage: an account no workspace uses is seen
    by superusers only. `verified` is the answer of a platform_key_verify() the caller made for this very URL and
    key in the same request (the admin form, to show a refusal on its field). Audited as platform_account.create
    (never the key)."""
    _require_account_admin(actor)
    if bind is None and not (is_system(actor) or getattr(actor, "is_superuser", False)):
        raise ValidationError({"workspace": "Choose the workspace this account serves (one you manage)."})
    base_url = validate_base_url(base_url)
    if PlatformAccount.objects.filter(name=name).exists():
        raise ValidationError({"name": "A platform account with this name exists already."})
    found = verified or platform_key_verify(base_url=base_url, api_key=api_key)
    with transaction.atomic():
        account = PlatformAccount(name=name, base_url=base_url, api_key=api_key.strip(),
                                  key_hint=hint_of(api_key.strip()), key_set_at=timezone.now())
        _apply(account, found)
        account.full_clean()
        account.save()
        record(actor=actor, action="platform_account.create", target=account,
               changes={**diff({}, _snapshot(account)), "plan": found.platform_info.get("tier"),
                        "key_listed": bool(found.key_id)})
        if bind is not None:
            workspace_bind_account(actor=actor, workspace=bind, account=account)
    return account


def platform_account_update(*, actor: Actor, account: PlatformAccount, name: str, base_url: str,
                            api_key: str = "", verified: Verification | None = None) -> PlatformAccount:
    """Rename an account, move it to another base URL, or replace its key by hand (blank keeps the key). A new
    URL or key is verified first; a new key bumps the key version so every worker picks it up. Audited."""
    _require_account_admin(actor, account)
    base_url = validate_base_url(base_url)
    new_key = (api_key or "").strip()
    if PlatformAccount.objects.filter(name=name).exclude(pk=account.pk).exists():
        raise ValidationError({"name": "A platform account with this name exists already."})
    found = None
    if new_key or base_url != account.base_url:
        found = verified or platform_key_verify(base_url=base_url, api_key=new_key or account.api_key)
    with transaction.atomic():
        locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
        before = _snapshot(locked)
        locked.name, locked.base_url = name, base_url
        if new_key:
            locked.api_key, locked.key_hint, locked.key_set_at = new_key, hint_of(new_key), timezone.now()
            locked.key_version += 1
        if found is not None:
            _apply(locked, found)
        locked.full_clean()
        locked.save()
        changes = diff(before, _snapshot(locked))
        if new_key:
            changes["api_key"] = "[replaced]"
        if changes:
            record(actor=actor, action="platform_account.update", target=locked, changes=changes)
    platform_client.forget_account(locked.pk)
    return locked


def platform_account_check(*, actor: Actor, account: PlatformAccount) -> PlatformAccount:
    """Verify the account's key again now (the "Verify" button); its state and last failure change with the
    answer. Audited as platform_account.verify."""
    _require_account_admin(actor, account)
    try:
        found = platform_key_verify(base_url=account.base_url, api_key=account.api_key)
    except ValidationError as exc:
        reason = " ".join(exc.messages)[:300]
        PlatformAccount.objects.filter(pk=account.pk).update(state=PlatformAccount.State.FAILING,
                                                             last_failure_at=timezone.now(), last_failure=reason)
        record(actor=actor, action="platform_account.verify", target=account, changes={"ok": False,
                                                                                        "reason": reason})
        raise
    with transaction.atomic():
        locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
        _apply(locked, found)
        locked.save()
        record(actor=actor, action="platform_account.verify", target=locked,
               changes={"ok": True, "plan": found.platform_info.get("tier")})
    return locked


@transaction.atomic
def platform_account_delete(*, actor: Actor, account: PlatformAccount) -> None:
    """Forget an account no workspace is bound to (its key with it; the key itself stays valid on the platform
    until someone revokes it there). Audited."""
    _require_account_admin(actor)
    locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
    if locked.workspaces.exists():
        raise ValidationError(f"“{locked}” still has workspaces bound to it; move or remove them first.")
    if locked.is_default:
        raise ValidationError("The default account (made from PLATFORM_API_URL / PLATFORM_API_KEY) stays.")
    record(actor=actor, action="platform_account.delete", target=locked, changes=diff(_snapshot(locked), {}))
    locked.delete()
    platform_client.forget_account(account.pk)


_last_noted: dict[tuple[int, bool], float] = {}
NOTE_SUCCESS_EVERY = 60.0
NOTE_FAILURE_EVERY = 10.0


def platform_account_record_outcome(*, account_id: int, error: PlatformError | None) -> None:
    """Bookkeeping from the client layer: the last successful call and the last failure with the platform's
    reason (redacted). Written at most once a minute per process for successes, every few seconds for failures,
    so it costs nothing on the hot path. Not audited (it changes no setting)."""
    ok = error is None
    now = time.monotonic()
    if now - _last_noted.get((account_id, ok), 0.0) < (NOTE_SUCCESS_EVERY if ok else NOTE_FAILURE_EVERY):
        return
    _last_noted[(account_id, ok)] = now
    if ok:
        PlatformAccount.objects.filter(pk=account_id).update(last_success_at=timezone.now())
        PlatformAccount.objects.filter(pk=account_id, state=PlatformAccount.State.FAILING).update(
            state=PlatformAccount.State.VERIFIED)
    else:
        PlatformAccount.objects.filter(pk=account_id).update(
            state=PlatformAccount.State.FAILING, last_failure_at=timezone.now(),
            last_failure=redact(str(error))[:300])


# --- binding workspaces ----------------------------------------------------------------------------------------
#: Apps register a counter of a workspace's objects that exist on its platform account (agents, secrets,
#: tools, auth connections, service accounts, keys): a workspace with any cannot move to another account.
SYNCED_OBJECT_COUNTERS: list[Any] = []


def synced_objects(workspace_id: int) -> dict[str, int]:
    from workspaces.models import ServiceAccount

    counts: dict[str, int] = {}
    accounts = ServiceAccount.objects.filter(workspace_id=workspace_id).exclude(remote_id="").count()
    if accounts:
        counts["service accounts"] = accounts
    for counter in SYNCED_OBJECT_COUNTERS:
        counts.update({k: v for k, v in counter(workspace_id).items() if v})
    return counts


def remote_prefix_for(workspace: Workspace, account: PlatformAccount) -> str:
    """Plain names for a workspace alone on its account; ``<slug>__`` when it shares the account."""
    others = Workspace.objects.filter(platform_account=account).exclude(pk=workspace.pk).exists()
    return f"{workspace.slug}__" if others else ""


@transaction.atomic
def workspace_bind_account(*, actor: Actor, workspace: Workspace, account: PlatformAccount) -> Workspace:
    """Bind a workspace to another platform account (workspace.manage there, and the right to manage the account).
    Refused while the workspace has objects on its current account: they would be orphaned there. Audited."""
    access.require(actor, "workspace.manage", workspace.pk)
    workspace = Workspace.objects.select_for_update().get(pk=workspace.pk)
    if workspace.platform_account_id == account.pk:
        return workspace
    _require_account_admin(actor, account) if account.workspaces.exists() else _require_account_admin(actor)
    held = synced_objects(workspace.pk)
    if held:
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(held.items()))
        raise ValidationError({"platform_account": (
            f"{workspace} already has objects on its platform account ({listed}); moving it would leave them "
            "there unmanaged. Create a new workspace on the other account instead.")})
    old = workspace.platform_account
    workspace.platform_account = account
    workspace.remote_prefix = remote_prefix_for(workspace, account)
    workspace.save(update_fields=["platform_account", "remote_prefix", "updated_at"])
    record(actor=actor, action="workspace.bind_platform_account", target=workspace, workspace_id=workspace.pk,
           changes={"platform_account": [str(old) if old else None, str(account)]})
    return workspace


# --- rotating Keyward's own key ----------------------------------------------------------------------------------
def platform_key_can_self_rotate(account: PlatformAccount) -> bool:
    """Whether Keyward can issue its own successor: the platform lists the current key in a service account."""
    return bool(account.key_service_account_id and account.key_remote_id)


def _successor_name(rotation: uuid.UUID) -> str:
    return f"{SUCCESSOR_PREFIX} {rotation}"


def platform_account_rotate_key(*, actor: Actor, account: PlatformAccount, pasted_key: str = "",
                                overlap: timedelta | None = None) -> PlatformAccount:
    """Replace Keyward's key for an account. Where the platform lists the current key in a service account,
    Keyward issues the successor there itself (same permissions and allowed IPs); otherwise `pasted_key` (a key
    issued by hand) is the successor. The successor is verified, then used at once (the key version grows, so
    every process rebuilds its client); the old key stays valid through the overlap and is revoked by the sweep
    once the platform shows no use of it. Retry-safe: the successor is named with a rotation uuid committed
    before the platform is asked, so a lost answer is found and never leaves two successors. Audited."""
    _require_account_admin(actor, account)
    if account.previous_api_key or account.overlap_until:
        raise ValidationError("The previous key is still in its overlap: revoke it first (or wait for the sweep).")
    pasted = (pasted_key or "").strip()
    overlap = overlap if overlap is not None else timedelta(hours=settings.PLATFORM_KEY_OVERLAP_HOURS)
    if pasted:
        if pasted == account.api_key:
            raise ValidationError({"api_key": "This is the key Keyward uses already; paste its successor."})
        found = platform_key_verify(base_url=account.base_url, api_key=pasted)
        return _switch(actor, account, pasted, found, overlap, how="pasted")
    if not platform_key_can_self_rotate(account):
        raise ValidationError({"api_key": "The platform does not list this account's key in a service account "
                                          "Keyward can see, so Keyward cannot issue its successor: paste one."})
    with transaction.atomic():
        locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
        if locked.rotation_uuid is None:
            locked.rotation_uuid = uuid.uuid4()
            locked.save(update_fields=["rotation_uuid", "updated_at"])
            record(actor=actor, action="platform_account.rotation_start", target=locked,
                   changes={"how": "issued by Keyward"})
        rotation = locked.rotation_uuid
    client = platform_client.client_for_account(account.pk)
    sa_id = account.key_service_account_id
    # A lost answer of an earlier attempt left a successor whose secret nobody has: remove it, so exactly one
    # successor exists once this attempt has made its own.
    for key in client.list_api_keys(sa_id):
        if key.get("name") == _successor_name(rotation):
            try:
                client.delete_api_key(sa_id, key["key_id"])
            except NotFound:
                pass
    made = client.create_api_key(sa_id, name=_successor_name(rotation),
                                 permissions=account.key_permissions or "all",
                                 allowed_ips=_current_allowed_ips(client, account) or None)
    secret = made["xi-api-key"]
    try:
        found = platform_key_verify(base_url=account.base_url, api_key=secret)
    except ValidationError:
        client.delete_api_key(sa_id, made["key_id"])  # a successor that does not work is no successor
        raise
    return _switch(actor, account, secret, found, overlap, how="issued by Keyward")


def _current_allowed_ips(client: PlatformClient, account: PlatformAccount) -> list[str]:
    for key in client.list_api_keys(account.key_service_account_id):
        if key.get("key_id") == account.key_remote_id:
            return list(key.get("allowed_ips") or [])
    return []


def _listed_count(client: PlatformClient, sa_id: str, key_id: str) -> int | None:
    """A key's credits this billing period as the key list shows them (None: not listed)."""
    if not (sa_id and key_id):
        return None
    for key in client.list_api_keys(sa_id):
        if key.get("key_id") == key_id:
            return int(key.get("character_count") or 0)
    return None


def _switch(actor: Actor, account: PlatformAccount, secret: str, found: Verification, overlap: timedelta,
            *, how: str) -> PlatformAccount:
    try:
        count = _listed_count(platform_client.client_for_account(account.pk), account.key_service_account_id,
                              account.key_remote_id)
    except PlatformError:
        count = None
    with transaction.atomic():
        locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
        old_hint = locked.key_hint
        locked.previous_api_key, locked.previous_key_hint = locked.api_key, locked.key_hint
        locked.previous_key_remote_id = locked.key_remote_id
        locked.previous_key_service_account_id = locked.key_service_account_id
        locked.overlap_until = timezone.now() + overlap
        locked.previous_key_usage = {"count": count, "at": timezone.now().isoformat()} if count is not None else {}
        locked.api_key, locked.key_hint, locked.key_set_at = secret, hint_of(secret), timezone.now()
        locked.key_version += 1
        locked.rotation_uuid = None
        _apply(locked, found)
        locked.save()
        record(actor=actor, action="platform_account.key_rotate", target=locked,
               changes={"how": how, "key_hint": [old_hint, locked.key_hint],
                        "overlap_until": locked.overlap_until.isoformat()})
    platform_client.forget_account(locked.pk)
    return locked


def platform_account_revoke_previous(*, actor: Actor, account: PlatformAccount) -> PlatformAccount:
    """End the overlap: delete the previous key on the platform (where Keyward can see it) and forget it here.
    Audited as platform_account.key_revoke."""
    _require_account_admin(actor, account)
    if not account.previous_api_key:
        raise ValidationError("There is no previous key to revoke.")
    if account.previous_key_remote_id and account.previous_key_service_account_id:
        try:
            platform_client.client_for_account(account.pk).delete_api_key(
                account.previous_key_service_account_id, account.previous_key_remote_id)
        except NotFound:
            pass  # already gone
    with transaction.atomic():
        locked = PlatformAccount.objects.select_for_update().get(pk=account.pk)
        hint = locked.previous_key_hint
        remote = bool(locked.previous_key_remote_id)
        locked.previous_api_key, locked.previous_key_hint, locked.overlap_until = None, "", None
        locked.previous_key_remote_id = locked.previous_key_service_account_id = ""
        locked.previous_key_usage = {}
        locked.save()
        record(actor=actor, action="platform_account.key_revoke", target=locked,
               changes={"key_hint": hint, "deleted_on_platform": remote})
    return locked


def platform_accounts_sweep(*, now: Any = None) -> dict[str, int]:
    """Periodic (system): revoke previous keys whose overlap has ended, and raise a rotation-due alert, in every
    bound workspace, for an account key older than PLATFORM_KEY_ROTATION_DAYS."""
    now = now or timezone.now()
    result = {"revoked": 0, "alerts": 0, "in_use": 0}
    # An encrypted column cannot be compared with a value (each encryption differs): ask for "set" by NULL.
    for account in PlatformAccount.objects.filter(overlap_until__lte=now, previous_api_key__isnull=False):
        try:
            if _previous_key_quiet(account, now):
                platform_account_revoke_previous(actor=SYSTEM, account=account)
                result["revoked"] += 1
            else:
                result["in_use"] += 1
                result["alerts"] += _raise_for_workspaces(
                    account, kind="platform_key_previous_in_use", severity=Alert.Severity.MEDIUM,
                    dedup=f"platform_key.previous_in_use:{account.pk}:{account.key_version}",
                    title=f"The previous key of platform account “{account}” is still in use after its overlap",
                    details={"key_hint": account.previous_key_hint, "usage": account.previous_key_usage})
        except PlatformError as exc:
            logger.warning("revoking the previous key of platform account %s failed: %s", account.pk, exc)
    due = now - timedelta(days=settings.PLATFORM_KEY_ROTATION_DAYS)
    for account in PlatformAccount.objects.filter(key_set_at__lt=due).prefetch_related("workspaces"):
        age = (now - account.key_set_at).days
        result["alerts"] += _raise_for_workspaces(
            account, kind="platform_key_rotation_due", severity=Alert.Severity.HIGH,
            dedup=f"platform_key.rotation_due:{account.pk}:{account.key_version}",
            title=f"Keyward's key for platform account “{account}” is {age} days old: rotate it",
            details={"age_days": age, "rotation_days": settings.PLATFORM_KEY_ROTATION_DAYS,
                     "key_hint": account.key_hint})
    return result


def _previous_key_quiet(account: PlatformAccount, now: Any) -> bool:
    """Whether the previous key has gone quiet: its credits on the key list have not moved for
    PLATFORM_KEY_QUIET_HOURS. A key the platform does not list (a pasted or personal key) cannot be watched:
    it is forgotten at the end of the overlap, and its revocation on the platform is left to the person (the
    audit row and the alert say so)."""
    if not account.previous_key_remote_id:
        _raise_for_workspaces(
            account, kind="platform_key_delete_by_hand", severity=Alert.Severity.MEDIUM,
            dedup=f"platform_key.delete_by_hand:{account.pk}:{account.key_version}",
            title=f"Delete the previous key (…{account.previous_key_hint}) of platform account “{account}” "
                  "on the platform: Keyward cannot see it there",
            details={"key_hint": account.previous_key_hint})
        return True
    count = _listed_count(platform_client.client_for_account(account.pk),
                          account.previous_key_service_account_id, account.previous_key_remote_id)
    if count is None:
        return True  # gone from the list already
    noted = account.previous_key_usage or {}
    if noted.get("count") != count:
        PlatformAccount.objects.filter(pk=account.pk).update(
            previous_key_usage={"count": count, "at": now.isoformat()})
        return False
    since = timezone.datetime.fromisoformat(noted["at"])
    return now - since >= timedelta(hours=settings.PLATFORM_KEY_QUIET_HOURS)


def _raise_for_workspaces(account: PlatformAccount, *, kind: str, severity: str, dedup: str, title: str,
                          details: dict[str, Any]) -> int:
    """An alert about an account, in every workspace bound to it (an alert belongs to one workspace)."""
    from project.alerts.services import alert_raise

    raised = 0
    for workspace in account.workspaces.all():
        _, created = alert_raise(actor=SYSTEM, workspace=workspace, kind=kind, severity=severity, target=account,
                                 dedup_key=dedup, title=title, details=details)
        raised += int(created)
    return raised
