"""The credential vault: OAuth providers, end users' tokens, refresh before expiry, revoke.

A refresh calls the provider outside any transaction, under a per-row lease so that two workers never
spend the same refresh token. A failure marks the row ``refresh_failed``, raises one alert per credential
per day and leaves both tokens exactly as they were; only a successful answer replaces them (and the old
refresh token is kept when the provider does not send a new one).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from project import access
from project.actors import SYSTEM, Actor
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit.services import SECRET_CHANGED, SECRET_SET, diff, record
from project.fields import CANNOT_DECRYPT, DecryptionError, field_state
from secrets_app import oauth
from secrets_app.models import OAuthProvider, UserCredential
from secrets_app.services._common import (
    keep_or_replace,
    remember,
    require_secret_again,
    snapshot,
    url_host,
    url_origin,
)
from secrets_app.validators import vault_variable
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

PERMISSION = "secrets.manage"
PROVIDER_FIELDS = ("slug", "name", "token_url", "client_id", "send_client_secret_in_header")
LEASE_SECONDS = 60
TOKEN_FIELDS = ("access_token", "refresh_token")


def refresh_window() -> timedelta:
    return timedelta(seconds=settings.VAULT_REFRESH_WINDOW_SECONDS)


# --- providers -----------------------------------------------------------------------------------------
@transaction.atomic
def provider_save(*, actor: Actor, workspace: Workspace, provider: OAuthProvider | None = None,
                  client_secret: str | None = None, **fields: Any) -> OAuthProvider:
    """Create or change an OAuth provider (client secret: None keeps it). Audited, the secret only as
    "[changed]"; local only (the platform never sees end users' tokens)."""
    access.require(actor, PERMISSION, workspace.pk)
    if provider is None:
        obj, before, action = OAuthProvider(workspace=workspace), {}, "oauth_provider.create"
    else:
        obj = OAuthProvider.objects.select_for_update().get(pk=provider.pk, workspace=workspace)
        before, action = snapshot(obj, PROVIDER_FIELDS), "oauth_provider.update"
    for key, value in fields.items():
        if key not in PROVIDER_FIELDS:
            raise TypeError(f"provider_save() got an unexpected field {key!r}")
        setattr(obj, key, value)
    if provider is not None and obj.slug != before["slug"] and obj.credentials.exists():
        raise ValidationError({"slug": "End users' tokens are injected under this slug; it cannot change while "
                                       "credentials exist."})
    moved = provider is not None and url_origin(before["token_url"]) != url_origin(obj.token_url)
    if moved:
        _check_move(obj, client_secret or None)
    secret_changed = keep_or_replace(obj, "client_secret", client_secret or None)
    obj.full_clean()
    changes = diff(before, snapshot(obj, PROVIDER_FIELDS))
    if secret_changed:
        changes["client_secret"] = SECRET_CHANGED
    if provider is not None and not changes:
        return obj
    if moved:
        changes["token_url_host"] = [url_host(before["token_url"]), url_host(obj.token_url)]
    obj.save()
    record(actor=actor, action=action, target=obj, workspace_id=workspace.pk, changes=changes)
    if moved:
        old_host, new_host = changes["token_url_host"]
        alert_raise(actor=actor, workspace=workspace, kind="oauth_provider_token_url_moved", target=obj,
                    title=f"OAuth provider “{obj}”: its token URL moved from {old_host} to {new_host}; end users' "
                          "refresh tokens and the client secret now go there",
                    dedup_key=f"oauth_provider_token_url_moved:{obj.pk}:{timezone.now().isoformat()}",
                    severity=Alert.Severity.HIGH,
                    details={"old_host": old_host, "new_host": new_host, "changed_by": str(actor),
                             "credentials": obj.credentials.count()})
    return obj


def _check_move(obj: OAuthProvider, client_secret: str | None) -> None:
    """The token URL's scheme, host or port changed: every refresh will post the end users' refresh tokens
    (and the client secret) there. With a client secret, it must be typed again; without one, a provider
    holding end users' tokens cannot move at all (nothing proves the mover controls the OAuth client)."""
    if field_state(obj, "client_secret") == "empty":
        if obj.credentials.exists():
            raise ValidationError({"token_url": "This provider holds end users' tokens and no client secret: its "
                                                "token URL cannot move to another address. Create a new provider "
                                                "for the new address."}, code="provider_move_refused")
        return
    require_secret_again(obj, "client_secret", client_secret, label="client secret")


@transaction.atomic
def provider_delete(*, actor: Actor, provider: OAuthProvider) -> None:
    """Delete a provider that holds no end-user credentials (refused otherwise). Audited."""
    access.require(actor, PERMISSION, provider.workspace_id)
    obj = OAuthProvider.objects.select_for_update().defer("client_secret").get(pk=provider.pk)
    count = obj.credentials.count()
    if count:
        raise ValidationError(f"“{obj}” still holds {count} end-user credential{'s' if count > 1 else ''}; revoke "
                              "and delete them first.", code="provider_in_use")
    record(actor=actor, action="oauth_provider.delete", target=obj, workspace_id=obj.workspace_id,
           changes=diff(snapshot(obj, PROVIDER_FIELDS), {}))
    try:
        with transaction.atomic():
            obj.delete()
    except ProtectedError as exc:
        # Another app's rows point at it (the broker's token-refresh tools): name them, change nothing.
        users = sorted({str(o) for o in exc.protected_objects})
        raise ValidationError(f"“{obj}” is still used by: {', '.join(users)}; remove those first.",
                              code="provider_in_use") from None


# --- credentials -------------------------------------------------------------------------------------------
@transaction.atomic
def credential_store(*, actor: Actor, workspace: Workspace, provider: OAuthProvider, end_user_id: str,
                     access_token: str, refresh_token: str = "", expires_at: datetime | None = None,
                     scopes: list[str] | None = None) -> UserCredential:
    """Store (or replace) an end user's tokens at a provider, e.g. from an OAuth callback. Audits the user,
    provider, scopes and expiry, and that tokens were set (never the tokens). Local only."""
    access.require(actor, PERMISSION, workspace.pk)
    if not access_token:
        raise ValidationError({"access_token": "An access token is required."})
    remember(access_token, refresh_token)
    credential = (UserCredential.objects.select_for_update()
                  .filter(provider=provider, end_user_id=end_user_id).first())
    action = "credential.store" if credential is None else "credential.replace"
    if credential is None:
        credential = UserCredential(workspace=workspace, provider=provider, end_user_id=end_user_id)
    elif credential.workspace_id != workspace.pk:
        raise ValidationError({"provider": "This provider belongs to another workspace."})
    before = snapshot(credential, ("scopes", "expires_at", "state")) if credential.pk else {}
    credential.access_token, credential.refresh_token = access_token, refresh_token
    credential.scopes, credential.expires_at = list(scopes or []), expires_at
    credential.state, credential.last_error, credential.refresh_lease_until = UserCredential.State.ACTIVE, "", None
    credential.full_clean()
    credential.save()
    changes = diff(before, snapshot(credential, ("scopes", "expires_at", "state")))
    changes.update({"end_user_id": end_user_id, "provider": provider.slug, "access_token": SECRET_SET})
    if refresh_token:
        changes["refresh_token"] = SECRET_SET
    record(actor=actor, action=action, target=credential, workspace_id=workspace.pk, changes=changes)
    return credential


@transaction.atomic
def credential_revoke(*, actor: Actor, credential: UserCredential) -> UserCredential:
    """Revoke an end user's credential: state "revoked" and both tokens wiped, so nothing can use them
    again. Audited. Revoking twice changes nothing."""
    access.require(actor, PERMISSION, credential.workspace_id)
    obj = UserCredential.objects.select_for_update().select_related("provider").get(pk=credential.pk)
    if obj.state == UserCredential.State.REVOKED:
        return obj
    old = obj.state
    # New (empty) values replace the tokens, readable or not: nothing is written back.
    obj.access_token = obj.refresh_token = ""
    obj.state, obj.last_error, obj.refresh_lease_until = UserCredential.State.REVOKED, "", None
    obj.full_clean()
    obj.save()
    record(actor=actor, action="credential.revoke", target=obj, workspace_id=obj.workspace_id,
           changes={"state": [old, obj.state], "access_token": SECRET_CHANGED, "refresh_token": SECRET_CHANGED})
    return obj


def _claim(credential_id: int, now: datetime) -> bool:
    """Take the refresh lease (a conditional UPDATE): False if another refresh holds it or it is revoked."""
    return bool(UserCredential.objects.filter(pk=credential_id)
                .exclude(state=UserCredential.State.REVOKED)
                .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
                .update(refresh_lease_until=now + timedelta(seconds=LEASE_SECONDS)))


def _fail(credential_id: int, error: str, *, code: str, status: int | None) -> UserCredential:
    """Mark the refresh failed; tokens untouched (only state fields are written); alert once a day."""
    with transaction.atomic():
        obj = UserCredential.objects.select_for_update().select_related("provider", "workspace").get(pk=credential_id)
        old = obj.state
        if obj.state != UserCredential.State.REVOKED:
            obj.state = UserCredential.State.REFRESH_FAILED
        obj.last_error, obj.refresh_lease_until = error[:300], None
        obj.full_clean(exclude=list(TOKEN_FIELDS))
        obj.save(update_fields=["state", "last_error", "refresh_lease_until", "updated_at"])
        record(actor=SYSTEM, action="credential.refresh_failed", target=obj, workspace_id=obj.workspace_id,
               changes={"state": [old, obj.state], "reason": code, "status": status})
        today = timezone.now().date().isoformat()
        alert_raise(actor=SYSTEM, workspace=obj.workspace, kind="credential_refresh_failed", target=obj,
                    title=f"Token refresh failed: {obj.provider.name} for end user {obj.end_user_id}",
                    dedup_key=f"credential_refresh_failed:{obj.pk}:{today}", severity=Alert.Severity.HIGH,
                    details={"provider": obj.provider.slug, "end_user_id": obj.end_user_id, "reason": code,
                             "status": status, "error": error[:300]})
    return obj


def _succeed(credential_id: int, grant: oauth.TokenGrant, now: datetime) -> UserCredential:
    with transaction.atomic():
        obj = UserCredential.objects.select_for_update().select_related("provider").get(pk=credential_id)
        if obj.state == UserCredential.State.REVOKED:
            # Revoked while the call was in flight: the new tokens are dropped, not stored.
            UserCredential.objects.filter(pk=obj.pk).update(refresh_lease_until=None)
            return obj
        before = snapshot(obj, ("expires_at", "state", "scopes"))
        remember(grant.access_token, grant.refresh_token)
        obj.access_token = grant.access_token
        if grant.refresh_token:
            obj.refresh_token = grant.refresh_token
        if grant.scopes is not None:
            obj.scopes = grant.scopes
        obj.expires_at = now + timedelta(seconds=grant.expires_in) if grant.expires_in is not None else None
        obj.last_refreshed_at, obj.state, obj.last_error = now, UserCredential.State.ACTIVE, ""
        obj.refresh_lease_until = None
        obj.full_clean()
        obj.save()
        changes = diff(before, snapshot(obj, ("expires_at", "state", "scopes")))
        changes["access_token"] = SECRET_CHANGED
        if grant.refresh_token:
            changes["refresh_token"] = SECRET_CHANGED
        record(actor=SYSTEM, action="credential.refresh", target=obj, workspace_id=obj.workspace_id, changes=changes)
    return obj


def credential_refresh(*, actor: Actor, credential: UserCredential, client: Any = None) -> UserCredential:
    """Refresh one credential at its provider now (the sweep, a session start or the admin's "force").

    Not atomic on purpose: the HTTP call happens between two short transactions, under a lease. Returns
    the row afterwards (state "active" on success, "refresh_failed" with last_error otherwise). Raises
    ValidationError when the credential is revoked or another refresh is in flight.
    """
    access.require(actor, PERMISSION, credential.workspace_id)
    now = timezone.now()
    if not _claim(credential.pk, now):
        raise ValidationError("This credential is revoked, or a refresh of it is already in progress.",
                              code="not_refreshable")
    try:
        obj = UserCredential.objects.select_related("provider").get(pk=credential.pk)
        try:
            refresh_token = obj.refresh_token
            client_secret = obj.provider.client_secret
        except DecryptionError:
            return _fail(obj.pk, f"{CANNOT_DECRYPT}: the stored tokens or the provider's client secret cannot be "
                                 "read; nothing was sent", code="cannot_decrypt", status=None)
        if not refresh_token:
            return _fail(obj.pk, "no refresh token is stored; the end user must sign in again",
                         code="no_refresh_token", status=None)
        remember(refresh_token, client_secret)
        try:
            grant = oauth.refresh_access_token(
                token_url=obj.provider.token_url, client_id=obj.provider.client_id, client_secret=client_secret,
                refresh_token=refresh_token, basic_auth=obj.provider.send_client_secret_in_header, client=client)
        except oauth.RefreshFailed as exc:
            # What a person sees (the credential, the alert, the audit trail) is only "refused" or "unreachable":
            # the status, the provider's error code and the transport error would map whatever the token URL
            # points at. The detail goes to the log.
            logger.warning("vault refresh of credential %s at %s failed: %s", obj.pk, url_host(obj.provider.token_url),
                           exc)
            return _fail(obj.pk, exc.public_reason, code=exc.category, status=None)
        return _succeed(obj.pk, grant, timezone.now())
    finally:
        # Whatever happened, the lease goes (the success and failure paths clear it already).
        UserCredential.objects.filter(pk=credential.pk, refresh_lease_until__gt=now).update(refresh_lease_until=None)


def credentials_due(now: datetime | None = None) -> list[int]:
    """Ids of credentials to refresh: not revoked, expiring within the window; failed ones retried after
    VAULT_RETRY_FAILED_SECONDS so a dead refresh token does not hammer the provider."""
    now = now or timezone.now()
    retry_before = now - timedelta(seconds=settings.VAULT_RETRY_FAILED_SECONDS)
    return list(UserCredential.objects
                .filter(expires_at__lte=now + refresh_window())
                .filter(Q(state=UserCredential.State.ACTIVE)
                        | Q(state=UserCredential.State.REFRESH_FAILED, updated_at__lte=retry_before))
                .order_by("expires_at").values_list("pk", flat=True))


def credentials_refresh_due(*, actor: Actor, client: Any = None) -> dict[str, int]:
    """The periodic sweep (system actor): refresh every due credential. Returns counts per outcome."""
    counts = {"refreshed": 0, "failed": 0, "skipped": 0}
    for pk in credentials_due():
        credential = UserCredential.objects.filter(pk=pk).only("pk", "workspace_id").first()
        if credential is None:
            continue
        try:
            result = credential_refresh(actor=actor, credential=credential, client=client)
        except ValidationError:
            counts["skipped"] += 1
            continue
        counts["refreshed" if result.state == UserCredential.State.ACTIVE else "failed"] += 1
    return counts


def credential_fresh_tokens(*, actor: Actor, workspace: Workspace, end_user_id: str,
                            client: Any = None) -> dict[str, str]:
    """An end user's usable access tokens as ``{"secret__user_<provider>_token": token}``, refreshing those
    that expire within the window first. For the conversation-initiation webhook (system actor); a person
    needs sessions.mint. Revoked, expired and unreadable credentials are left out, never sent."""
    access.require(actor, "sessions.mint", workspace.pk)
    now = timezone.now()
    soon = now + refresh_window()
    tokens: dict[str, str] = {}
    credentials = (UserCredential.objects.filter(workspace=workspace, end_user_id=end_user_id)
                   .exclude(state=UserCredential.State.REVOKED).select_related("provider"))
    for credential in credentials:
        if credential.expires_at is not None and credential.expires_at <= soon:
            try:
                credential_refresh(actor=SYSTEM, credential=credential, client=client)
            except ValidationError:
                pass  # another refresh is in flight: use what is stored if it is still valid
            credential = UserCredential.objects.select_related("provider").get(pk=credential.pk)
        if credential.state == UserCredential.State.REVOKED:
            continue
        if credential.expires_at is not None and credential.expires_at <= timezone.now():
            continue
        try:
            token = credential.access_token
        except DecryptionError:
            logger.warning("vault credential %s cannot be decrypted; left out of the session", credential.pk)
            continue
        if token:
            remember(token)
            tokens[vault_variable(credential.provider.slug)] = token
    return tokens


def credential_fresh_token(*, actor: Actor, workspace: Workspace, end_user_id: str, provider_slug: str,
                           client: Any = None) -> tuple[str, datetime | None]:
    """One end user's usable access token at one provider, refreshed first when it expires within the window:
    (token, expires_at). For the token-refresh tool (system actor; a person needs sessions.mint). Raises
    ValidationError with code ``not_connected`` (no such provider, or the end user holds no unrevoked credential
    there) or ``not_fresh`` (the refresh failed and the stored token has expired or cannot be read): a stale token
    is never answered."""
    access.require(actor, "sessions.mint", workspace.pk)
    credential = (UserCredential.objects.filter(workspace=workspace, end_user_id=end_user_id,
                                                provider__slug=provider_slug)
                  .exclude(state=UserCredential.State.REVOKED).first())
    if credential is None:
        raise ValidationError("The end user has not connected this provider.", code="not_connected")
    if credential.expires_at is not None and credential.expires_at <= timezone.now() + refresh_window():
        try:
            credential_refresh(actor=SYSTEM, credential=credential, client=client)
        except ValidationError:
            pass  # another refresh is in flight: use what is stored if it is still valid
        credential = UserCredential.objects.get(pk=credential.pk)
    if credential.state == UserCredential.State.REVOKED:
        raise ValidationError("The end user has not connected this provider.", code="not_connected")
    if credential.expires_at is not None and credential.expires_at <= timezone.now():
        raise ValidationError("The token could not be refreshed.", code="not_fresh")
    try:
        token = credential.access_token
    except DecryptionError:
        logger.warning("vault credential %s cannot be decrypted; not answered", credential.pk)
        raise ValidationError("The token could not be read.", code="not_fresh") from None
    if not token:
        raise ValidationError("The token could not be refreshed.", code="not_fresh")
    remember(token)
    return token, credential.expires_at
