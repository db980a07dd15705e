"""Every write of sign-in through the identity provider: the group → role mappings, and what one sign-in changes.

A sign-in is judged here, after accounts/oidc.py has checked the provider's tokens (signature, issuer, audience,
nonce, PKCE). `identity_sign_in` finds or creates the login, then makes the person's provider-granted roles match
the groups of this sign-in: a role whose group is gone is revoked, a newly mapped one granted, each audited as
`role.assign` / `role.revoke` by the system "via the identity provider". Roles granted by hand are never touched.
Superusers never sign in this way: their password sign-in is the break-glass path that must not depend on the
provider (and a compromised provider must not become a superuser).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import ExternalIdentity, IdentityProviderGrant, IdentityProviderGroup
from project.actors import SYSTEM, Actor
from project.audit.services import diff, record
from workspaces import access
from workspaces.models import Role, RoleAssignment, Workspace
from workspaces.services.roles import _active_admin, other_active_admins, role_grant_check

logger = logging.getLogger(__name__)

VIA = "identity provider"


class SignInRefused(Exception):
    """The provider vouched for the person, but Keyward will not let them in; the message is for their eyes."""


# --- the mapping page ---------------------------------------------------------------------------------------
def _mapping_snapshot(mapping: IdentityProviderGroup) -> dict[str, Any]:
    return {"group": mapping.group, "workspace": str(mapping.workspace), "role": mapping.role.name}


@transaction.atomic
def idp_group_create(*, actor: Actor, group: str, workspace: Workspace, role: Role) -> IdentityProviderGroup:
    """Map a provider group to a role in a workspace. The same rule as granting the role by hand: `roles.assign`
    there and a role within the actor's own permissions. Takes effect at each member's next sign-in. Audited."""
    group = (group or "").strip()
    if not group:
        raise ValidationError({"group": "Type the group's name as the provider sends it."})
    role_grant_check(actor=actor, workspace=workspace, role=role)
    if IdentityProviderGroup.objects.filter(group=group, workspace=workspace, role=role).exists():
        raise ValidationError({"group": f"“{group}” already maps to {role.name} in {workspace}."})
    mapping = IdentityProviderGroup(group=group, workspace=workspace, role=role)
    mapping.full_clean()
    mapping.save()
    record(actor=actor, action="idp_group.create", target=mapping, workspace_id=workspace.pk,
           changes=diff({}, _mapping_snapshot(mapping)))
    return mapping


@transaction.atomic
def idp_group_delete(*, actor: Actor, mapping: IdentityProviderGroup) -> None:
    """Remove a mapping. Roles it granted are taken back at each member's next sign-in. Audited."""
    role_grant_check(actor=actor, workspace=mapping.workspace, role=mapping.role)
    record(actor=actor, action="idp_group.delete", target=mapping, workspace_id=mapping.workspace_id,
           changes=diff(_mapping_snapshot(mapping), {}))
    mapping.delete()


# --- one sign-in ---------------------------------------------------------------------------------------------
def email_allowed(email: str) -> bool:
    domains = settings.OIDC_ALLOWED_EMAIL_DOMAINS
    if not domains:
        return True
    return email.rpartition("@")[2].lower() in domains


def groups_of(claims: Mapping[str, Any]) -> list[str]:
    raw = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(raw, str):
        raw = [raw]
    return sorted({str(g) for g in raw if str(g).strip()}) if isinstance(raw, list | tuple) else []


def _find_or_link_user(issuer: str, subject: str, email: str) -> tuple[Any, ExternalIdentity | None]:
    identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is not None:
        return identity.user, identity
    # First sign-in: a person an admin already added ("Add a person") is found by their email.
    users = list(get_user_model().objects.filter(email__iexact=email)[:2]) if email else []
    if len(users) > 1:
        raise SignInRefused("Two Keyward logins share this email address; ask an administrator to fix them.")
    return (users[0] if users else None), None


def _unique_username(email: str) -> str:
    base = (email.split("@")[0] or "user")[:140]
    model = get_user_model()
    name, n = base, 1
    while model.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _apply_groups(user: Any, groups: Iterable[str]) -> dict[str, list[str]]:
    """Make the provider-granted assignments match `groups`; returns what was granted, revoked or kept."""
    wanted: dict[tuple[int, int], str] = {}
    for mapping in IdentityProviderGroup.objects.filter(group__in=list(groups)).order_by("group"):
        wanted.setdefault((mapping.workspace_id, mapping.role_id), mapping.group)
    held = {(a.workspace_id, a.role_id): a for a in
            RoleAssignment.objects.select_related("role", "user", "workspace").filter(user=user)}
    from_idp = set(IdentityProviderGrant.objects.filter(assignment__user=user)
                   .values_list("assignment_id", flat=True))
    outcome: dict[str, list[str]] = {"granted": [], "revoked": [], "kept": []}
    for key, assignment in held.items():
        if assignment.pk not in from_idp or key in wanted:
            continue
        label = f"{assignment.role.name} in {assignment.workspace}"
        if _active_admin(assignment) and not other_active_admins(assignment.workspace_id, exclude_user_id=user.pk):
            # The workspace's last Admin stays (the same rule as a revoke by hand); audited so someone acts.
            record(actor=SYSTEM, action="role.revoke_refused", target=assignment,
                   workspace_id=assignment.workspace_id,
                   changes={"via": VIA, "user": user.get_username(), "role": assignment.role.name,
                            "reason": "last active Admin of the workspace"})
            outcome["kept"].append(label)
            continue
        record(actor=SYSTEM, action="role.revoke", target=assignment, workspace_id=assignment.workspace_id,
               changes={"revoked_from": f"user {user.get_username()}", "role": assignment.role.name,
                        "permissions": sorted(assignment.role.permissions), "via": VIA,
                        "reason": "no longer in a group mapped to this role"})
        assignment.delete()
        outcome["revoked"].append(label)
    for (workspace_id, role_id), group in wanted.items():
        if (workspace_id, role_id) in held:
            continue  # already held (by hand or by the provider): nothing to do
        assignment = RoleAssignment(workspace_id=workspace_id, role_id=role_id, user=user)
        assignment.full_clean()
        assignment.save()
        IdentityProviderGrant.objects.create(assignment=assignment, group=group)
        role = assignment.role
        record(actor=SYSTEM, action="role.assign", target=assignment, workspace_id=workspace_id,
               changes={"granted_to": f"user {user.get_username()}", "role": role.name,
                        "permissions": sorted(role.permissions), "expires_at": None, "via": VIA, "group": group})
        outcome["granted"].append(f"{role.name} in {assignment.workspace}")
    access.forget(user)
    return outcome


def identity_sign_in(*, issuer: str, claims: Mapping[str, Any]) -> Any:
    """The login for a person the provider vouched for (claims already verified), with their provider-granted roles
    brought in line with this sign-in's groups. Creates the login on a first sign-in only when a group maps to a
    role. Raises SignInRefused (nothing changed) for a disallowed email domain, a superuser, a disabled login or a
    person left with no role. Audits `identity.sign_in` with the groups and what changed."""
    user = _sign_in(issuer, claims)
    if not RoleAssignment.objects.filter(access.unexpired(), user=user).exists():
        # The revocations are committed all the same: only the sign-in is refused.
        raise SignInRefused("You hold no role in Keyward any more: your groups at the identity provider map to "
                            "none.")
    return user


@transaction.atomic
def _sign_in(issuer: str, claims: Mapping[str, Any]) -> Any:
    subject = str(claims.get("sub") or "")
    email = str(claims.get("email") or "").strip()
    if not subject:
        raise SignInRefused("The identity provider sent no subject.")
    if not email or claims.get("email_verified") is False:
        raise SignInRefused("The identity provider sent no verified email address.")
    if not email_allowed(email):
        raise SignInRefused(f"Sign-in is open to addresses at {', '.join(settings.OIDC_ALLOWED_EMAIL_DOMAINS)} "
                            "only.")
    groups = groups_of(claims)
    user, identity = _find_or_link_user(issuer, subject, email)
    if user is not None and user.is_superuser:
        raise SignInRefused("Superusers sign in with their password (and authenticator), not through the identity "
                            "provider.")
    if user is not None and not user.is_active:
        raise SignInRefused("This login is disabled.")
    if user is None:
        if not IdentityProviderGroup.objects.filter(group__in=groups).exists():
            raise SignInRefused("None of your groups at the identity provider gives a role in Keyward; ask an "
                                "administrator to map one.")
        user = get_user_model().objects.create_user(username=_unique_username(email), email=email,
                                                    first_name=str(claims.get("given_name") or "")[:150],
                                                    last_name=str(claims.get("family_name") or "")[:150],
                                                    is_staff=True)  # no password: unusable
        record(actor=SYSTEM, action="user.create", target=user,
               changes={"username": user.get_username(), "email": email, "via": VIA})
    elif not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if identity is None:
        identity = ExternalIdentity(user=user, issuer=issuer, subject=subject)
    identity.email, identity.groups, identity.last_sign_in_at = email, groups, timezone.now()
    identity.save()
    outcome = _apply_groups(user, groups)
    record(actor=user, action="identity.sign_in", target=user,
           changes={"issuer": issuer, "groups": groups, **{k: v for k, v in outcome.items() if v}})
    return user
