"""Fixtures for the keys tests, and the permission matrix's registry of builders and designed outcomes.

Another app's admin joins the matrix automatically; to let the matrix build its objects, add an entry to
MATRIX_FACTORIES (label -> callable(workspace, tag) returning one object of that workspace whose text shows
`tag`, made by a builder of tests/factories.py), and, if its permissions are not simply the admin's declared
view/manage permissions, its row to DESIGNED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, Q

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from tests.factories import (
    DriftFactory,
    SyncJobFactory,
    UserFactory,
    environment,
    grant,
    make_agent,
    make_alert,
    make_api_key_row,
    make_audit_event,
    make_auth_connection,
    make_broker_key,
    make_detection_policy,
    make_incident,
    make_key_policy,
    make_oauth_provider,
    make_person,
    make_role,
    make_secret,
    make_service_account,
    make_tool,
    make_vault_credential,
)
from workspaces import services
from workspaces.models import Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.permissions import BUILTIN_ROLES


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Passwords are not under test here, and the matrix creates hundreds of people: PBKDF2 would dominate.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- people in each built-in role (owner, member, viewer, security_admin: tests/conftest.py) ----------------
@pytest.fixture
def team_lead(workspace: Workspace) -> Any:
    return make_person("lead", "Team lead", workspace)


@pytest.fixture
def second_admin(workspace: Workspace) -> Any:
    return make_person("owner2", "Admin", workspace)


@pytest.fixture
def globex_sa(other_workspace: Workspace) -> ServiceAccount:
    return make_service_account(other_workspace, "globex-robot")


@pytest.fixture
def acme_sa(workspace: Workspace) -> ServiceAccount:
    return make_service_account(workspace, "acme-robot")


def state() -> dict[str, Any]:
    """Everything an access change could touch, to prove a refusal changed nothing."""
    return {
        "assignments": sorted(RoleAssignment.objects.values_list("workspace_id", "role_id", "user_id",
                                                                 "service_account_id", "expires_at"), key=repr),
        "roles": sorted(Role.objects.values_list("pk", "workspace_id", "name", "permissions"), key=repr),
        "service_accounts": sorted(ServiceAccount.objects.values_list("pk", "name", "is_active", "description"),
                                   key=repr),
        "users": sorted(get_user_model().objects.values_list("pk", "username", "is_active", "password"), key=repr),
        "audit": AuditEvent.objects.count(),
    }


# --- hooks ------------------------------------------------------------------------------------------------
@pytest.fixture
def disable_hook() -> Iterator[Callable[[Callable[[Any, ServiceAccount], None]], None]]:
    """Register test hooks after whatever hooks the app registered (the API-key revocation among them)."""
    added: list = []

    def add(hook: Callable[[Any, ServiceAccount], None]) -> None:
        services.SERVICE_ACCOUNT_DISABLE_HOOKS.append(hook)
        added.append(hook)

    yield add
    for hook in added:
        services.SERVICE_ACCOUNT_DISABLE_HOOKS.remove(hook)


# --- the permission matrix ------------------------------------------------------------------------------
OWN, OTHER = "acme", "globex"  # tags: the other workspace's tag must never show on an own-workspace page
PRINCIPALS = [*BUILTIN_ROLES, "nobody", "superuser"]
NEVER, SUPERUSER = "<never>", "<superuser only>"


def allowed(principal: str, permission: str | None) -> bool:
    if permission in (None, NEVER):
        return False
    if principal == "superuser":
        return True
    if principal == "nobody" or permission == SUPERUSER:
        return False
    return permission in BUILTIN_ROLES[principal]


@dataclass(frozen=True)
class Design:
    view: str
    add: str
    change: str
    delete: str


#: The designed permissions of the known admins (written from DESIGN.md and the issue, not read from the
#: admin classes). Admins without a row fall back to their declared view/manage/add permissions.
DESIGNED: dict[str, Design] = {
    "workspaces.workspace": Design("workspace.view", SUPERUSER, "workspace.manage", NEVER),
    "workspaces.environment": Design("workspace.view", "workspace.manage", "workspace.manage", NEVER),
    "agents.agent": Design("workspace.view", "agents.manage", "agents.manage", "agents.manage"),
    "audit.auditevent": Design("audit.view", NEVER, NEVER, NEVER),
    "sync.syncjob": Design("workspace.view", NEVER, NEVER, NEVER),
    "workspaces.role": Design("workspace.view", "roles.assign", "roles.assign", "roles.assign"),
    "workspaces.roleassignment": Design("workspace.view", "roles.assign", NEVER, "roles.assign"),
    "workspaces.serviceaccount": Design("workspace.view", "keys.issue", "keys.issue", NEVER),
    "auth.user": Design("roles.assign", "roles.assign", SUPERUSER, NEVER),
    "keys.keypolicy": Design("workspace.view", "workspace.manage", "workspace.manage", NEVER),
    "broker.brokerkey": Design("workspace.view", "keys.issue", "keys.issue", NEVER),
    "keys.apikey": Design("workspace.view", "keys.issue", "keys.issue", NEVER),
    "broker.webhookagent": Design("workspace.view", NEVER, "agents.manage", NEVER),
    # Listed read-only; added and removed on the agent's page (agents.manage), never through this admin's forms.
    "broker.refreshtool": Design("workspace.view", NEVER, NEVER, NEVER),
    "secrets_app.usercredential": Design("workspace.view", NEVER, NEVER, NEVER),
    "detection.incident": Design("workspace.view", "incidents.manage", "incidents.manage", NEVER),
    "detection.detectionpolicy": Design("workspace.view", "incidents.manage", "incidents.manage", NEVER),
    # Seen through its bound workspaces; managed by Admins of every bound workspace; never deleted while bound.
    "workspaces.platformaccount": Design("workspace.view", "workspace.manage", "workspace.manage", NEVER),
}


def design_for(model_admin: Any) -> tuple[Design, bool]:
    """(design, declared): declared is True when the row is derived from the admin's own attributes."""
    label = model_admin.model._meta.label_lower
    if label in DESIGNED:
        return DESIGNED[label], False
    from project.admin_base import ReadOnlyScopedAdmin

    manage = model_admin.manage_permission
    if isinstance(model_admin, ReadOnlyScopedAdmin):
        return Design(model_admin.view_permission, NEVER, NEVER, NEVER), True
    return Design(model_admin.view_permission, model_admin.add_permission or manage, manage, manage), True


# The registry's entries weave the tag into what the builders of tests/factories.py are given.
def _webhook_agent(ws: Workspace, tag: str) -> Model:
    from broker.models import WebhookAgent

    return WebhookAgent.objects.get(pk=make_agent(ws, f"{tag} hook").pk)


def _refresh_tool(ws: Workspace, tag: str) -> Model:
    """A token-refresh tool row (its platform side is the outbox's business, not the matrix's)."""
    from broker.models import RefreshTool

    return RefreshTool.objects.create(agent=make_agent(ws, f"{tag} refreshing agent"),
                                      provider=_oauth_provider(ws, f"{tag}r"))


def _oauth_provider(ws: Workspace, tag: str) -> Model:
    return make_oauth_provider(ws, slug=f"{tag}crm", name=f"{tag} CRM", token_url=f"https://{tag}.example.com/token",
                               client_id=f"{tag}-client", client_secret=f"{tag}-client-secret-9f8e")


def _user_credential(ws: Workspace, tag: str) -> Model:
    return make_vault_credential(ws, _oauth_provider(ws, f"{tag}v"), f"{tag}-user-1", f"{tag}-access-8e7d6c",
                                 refresh_token=f"{tag}-refresh-8e7d6c", expires_in=None, scopes=None)


def _platform_account(ws: Workspace, tag: str) -> Model:
    """An account of the workspace's own (bound to it alone), made without asking the platform."""
    from workspaces.models import PlatformAccount

    account = PlatformAccount.objects.create(name=f"{tag} platform account", base_url="https://api.example.com",
                                             api_key=f"sk_{tag}_matrix_key_0000000000000000", key_hint="0000")
    Workspace.objects.filter(pk=ws.pk).update(platform_account=account)
    return account


MATRIX_FACTORIES: dict[str, Callable[[Workspace, str], Model]] = {
    "workspaces.workspace": lambda ws, tag: ws,
    "workspaces.platformaccount": _platform_account,
    "workspaces.environment": lambda ws, tag: environment(ws, "dev"),  # "Acme / dev" or "Globex / dev"
    "agents.agent": lambda ws, tag: make_agent(ws, f"{tag} agent"),
    "audit.auditevent": lambda ws, tag: make_audit_event(ws, action="matrix.test", object_type="matrix.thing",
                                                         object_id=tag, object_repr=f"{tag} event"),
    "sync.syncjob": lambda ws, tag: SyncJobFactory(workspace=ws, kind="matrix", object_id=tag,
                                                   object_repr=f"{tag} job"),
    "workspaces.role": lambda ws, tag: make_role(ws, f"{tag} role"),
    "workspaces.roleassignment": lambda ws, tag: grant(UserFactory(username=f"{tag}-person"), "Viewer", ws),
    "workspaces.serviceaccount": lambda ws, tag: make_service_account(ws, f"{tag}-robot"),
    "auth.user": lambda ws, tag: make_person(f"{tag}-login-person", "Viewer", ws),
    "alerts.alert": lambda ws, tag: make_alert(ws, "matrix", title=f"{tag} alert", dedup_key=f"matrix-{tag}",
                                               severity="medium"),
    "secrets_app.secret": lambda ws, tag: make_secret(ws, f"{tag}_token", f"value-of-{tag}-9f8e7d"),
    "keys.keypolicy": lambda ws, tag: make_key_policy(ws),  # "Key policy of Acme" / "... of Globex"
    "secrets_app.tool": lambda ws, tag: make_tool(ws, f"{tag}_lookup", description=f"{tag} tool",
                                                  url=f"https://{tag}.example.com/hook"),
    "secrets_app.oauthprovider": _oauth_provider,
    "broker.brokerkey": lambda ws, tag: make_broker_key(
        ws, name=f"{tag} key", service_account=make_service_account(ws, f"{tag}-broker-robot", role="Developer"),
        agents=[make_agent(ws, f"{tag} broker agent")]).key,
    "keys.apikey": lambda ws, tag: make_api_key_row(ws, "dev", name=f"{tag} key"),
    "secrets_app.authconnection": lambda ws, tag: make_auth_connection(
        ws, f"{tag} bearer", provider=f"{tag}-api", secrets={"token": f"{tag}-bearer-token-5c4b3a"}),
    "secrets_app.usercredential": _user_credential,
    "broker.webhookagent": _webhook_agent,
    "broker.refreshtool": _refresh_tool,
    "sync.drift": lambda ws, tag: DriftFactory(workspace=ws, object_id=str(make_agent(ws, f"{tag} drifted").pk),
                                               object_repr=f"{tag} drifted agent"),
    "detection.incident": lambda ws, tag: make_incident(ws, f"{tag} incident"),
    "detection.detectionpolicy": lambda ws, tag: make_detection_policy(ws),
}


def visible_in(model_admin: Any, workspace: Workspace) -> int:
    """How many rows of the admin's model a person holding roles only in `workspace` should see."""
    model = model_admin.model
    label = model._meta.label_lower
    if label == "workspaces.role":
        return Role.objects.filter(Q(workspace=workspace) | Q(workspace__isnull=True)).count()
    return model._default_manager.filter(**{model_admin.workspace_lookup: workspace.pk}).distinct().count()


def workspace_path_problem(model_admin: Any) -> str | None:
    """Why a registered admin's model cannot take part in the matrix (None: it can)."""
    model = model_admin.model
    first = getattr(model_admin, "workspace_lookup", "").split("__")[0]
    try:
        model._meta.get_field(first)
    except FieldDoesNotExist:
        return (f"{model._meta.label_lower} has no workspace path ({model_admin.workspace_lookup!r} is not a field): "
                "the matrix cannot tell own from other workspace")
    return None


def matrix_admins() -> list[Any]:
    return sorted(admin.site._registry.values(), key=lambda a: a.model._meta.label_lower)


def skip_reason(model_admin: Any) -> str | None:
    """Why the matrix cannot build this admin's objects (None: it can). Known at collection time, so skipped
    cases cost nothing; `pytest -ra` prints the reasons."""
    label = model_admin.model._meta.label_lower
    problem = workspace_path_problem(model_admin)
    if problem:
        return problem
    if label not in MATRIX_FACTORIES:
        return f"no matrix factory for {label}: add one to MATRIX_FACTORIES in tests/keys/conftest.py"
    return None


#: Known custom admin actions: (model label, action) -> (permissions needed together, prepare, changed).
@dataclass(frozen=True)
class ActionSpec:
    needs: tuple[str, ...]
    prepare: Callable[[Model], None] | None
    changed: Callable[[Model], bool]


def _disable(sa: Model) -> None:
    services.service_account_disable(actor=SYSTEM, service_account=sa)


def _fail(job: Model) -> None:
    type(job).objects.filter(pk=job.pk).update(state="failed")


KNOWN_ACTIONS: dict[tuple[str, str], ActionSpec] = {
    ("workspaces.serviceaccount", "disable_service_accounts"): ActionSpec(("keys.revoke",), None,
                                                                    lambda sa: not sa.is_active),
    ("workspaces.serviceaccount", "enable_service_accounts"): ActionSpec(("keys.issue", "keys.revoke"), _disable,
                                                                   lambda sa: sa.is_active),
    ("sync.syncjob", "retry_jobs"): ActionSpec(("sync.manage",), _fail, lambda job: job.state == "pending"),
    ("sync.syncjob", "discard_jobs"): ActionSpec(("sync.manage",), None, lambda job: job.state == "discarded"),
    ("alerts.alert", "acknowledge"): ActionSpec(("incidents.manage",), None,
                                                   lambda alert: alert.state == "acknowledged"),
    ("alerts.alert", "resolve"): ActionSpec(("incidents.manage",), None, lambda alert: alert.state == "resolved"),
}

#: Cross-workspace leaks the matrix found in pages other engineers own, reported to the lead and listed here so
#: the rest of the matrix stays green. Strict: once the page stops leaking, the test fails until the entry goes.
KNOWN_LEAKS: dict[str, str] = {}

#: Known custom views on one object: url name -> permission needed (besides seeing the object).
KNOWN_OBJECT_VIEWS: dict[str, str] = {
    "agents_agent_mint": "sessions.mint",
    "auth_user_password_change": SUPERUSER,
    "keys_apikey_rotate": "keys.issue",
    "keys_apikey_revoke": "keys.revoke",
}
