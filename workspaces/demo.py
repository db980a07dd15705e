"""Demo people (one per built-in role) and service accounts in the first two demo workspaces, through the
services, idempotently: a second run changes nothing and prints the same logins."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from project.actors import SYSTEM
from workspaces import services
from workspaces.models import Role, ServiceAccount
from workspaces.services import people as services_people

#: built-in role -> username suffix ("acme-lead" is the Team lead of the workspace whose slug is "acme")
DEMO_PEOPLE = {"Admin": "admin", "Security admin": "security", "Team lead": "lead", "Developer": "dev",
               "Viewer": "viewer"}
#: (name, description, role): "Session broker" is a custom role, defined per workspace below
DEMO_SERVICE_ACCOUNTS = (("ci-deployer", "Deploys agents from CI", "Developer"),
                         ("support-backend", "Mints sessions for the support web app", "Session broker"))
SESSION_BROKER = ("Session broker", ["workspace.view", "sessions.mint"], "Sees the workspace and mints sessions")


def seed_people_and_service_accounts(*, workspaces: list, logins: list, password: str,
                                     fresh: set[int] | None = None, **context: Any) -> None:
    """Seeds only workspaces created in this run (`fresh`; all when not given): a restart never re-grants a role
    or re-creates an account someone revoked or disabled. Lists the demo logins that exist either way."""
    users = get_user_model().objects
    for workspace in workspaces[:2]:
        seeding = fresh is None or workspace.pk in fresh
        for role_name, suffix in DEMO_PEOPLE.items():
            username = f"{workspace.slug}-{suffix}"
            role = Role.objects.get(workspace=None, name=role_name)
            user = users.filter(username=username).first()
            if user is None and seeding:
                user = services_people.person_create(actor=SYSTEM, workspace=workspace, role=role, username=username,
                                                     email=f"{username}@example.com", first_name=role_name,
                                                     last_name=workspace.name)
                services_people.user_set_password(actor=SYSTEM, user=user, password=password)
            if user is not None and user.is_active:
                logins.append((username, password, f"{role_name} in {workspace.name}"))
        if not seeding:
            continue
        name, permissions, description = SESSION_BROKER
        if not Role.objects.filter(workspace=workspace, name=name).exists():
            services.role_create(actor=SYSTEM, workspace=workspace, name=name, permissions=permissions,
                                 description=description)
        for name, description, role_name in DEMO_SERVICE_ACCOUNTS:
            if ServiceAccount.objects.filter(workspace=workspace, name=name).exists():
                continue
            sa = services.service_account_create(actor=SYSTEM, workspace=workspace, name=name,
                                                 description=description)
            role = Role.objects.filter(Q(workspace=None) | Q(workspace=workspace), name=role_name).get()
            services.role_assign(actor=SYSTEM, workspace=workspace, service_account=sa, role=role)


demo_seeders = [seed_people_and_service_accounts]
