"""Fixtures for the keys tests, and the permission matrix's registry of factories and designed outcomes.

Another app's admin joins the matrix automatically; to let the matrix build its objects, add a factory to
MATRIX_FACTORIES (label -> callable(workspace, tag) returning one object of that workspace whose text shows
`tag`), and, if its permissions are not simply the admin's declared view/manage permissions, its row to
DESIGNED.
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

from agents import services as agent_services
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import record
from tests.factories import UserFactory, builtin_role, grant
from workspaces import services
from workspaces.models import Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.permissions import BUILTIN_ROLES


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Passwords are not under test here, and the matrix creates hundreds of people: PBKDF2 would dominate.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- people in each built-in role -------------------------------------------------------------------------


def person(username: str, role: str | None, workspace: Workspace, **extra: Any) -> Any:
    user = UserFactory(username=username, **extra)
    if role:
        grant(user, role, workspace)
    return user


@pytest.fixture
def team_lead(workspace: Workspace) -> Any:
    return person("lead", "Team lead", workspace)


@pytest.fixture
def security_admin(workspace: Workspace) -> Any:
    return person("security", "Security admin", workspace)


@pytest.fixture
def second_admin(workspace: Workspace) -> Any:
    return person("owner2", "Admin", workspace)


@pytest.fixture
def globex_sa(other_workspace: Workspace) -> ServiceAccount:
    return services.service_account_create(actor=SYSTEM, workspace=other_workspace, name="globex-robot")


@pytest.fixture
def acme_sa(workspace: Workspace) -> ServiceAccount:
    return services.service_account_create(actor=SYSTEM, workspace=workspace, name="acme-robot")


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


def make_principal(name: str, workspace: Workspace) -> Any:
    username = "matrix-" + name.lower().replace(" ", "-")
    if name == "superuser":
        return UserFactory(username=username, is_superuser=True)
    return person(username, None if name == "nobody" else name, workspace)


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


def _environment(ws: Workspace, tag: str) -> Model:
    return ws.environments.get(name="dev")  # "Acme / dev" or "Globex / dev"


def _agent(ws: Workspace, tag: str) -> Model:
    return agent_services.agent_create(actor=SYSTEM, workspace=ws, name=f"{tag} agent", auth_mode="signed")


def _audit_event(ws: Workspace, tag: str) -> Model:
    return record(actor=SYSTEM, action="matrix.test", object_type="matrix.thing", object_id=tag,
                  object_repr=f"{tag} event", workspace_id=ws.pk)


def _sync_job(ws: Workspace, tag: str) -> Model:
    from project.sync.models import SyncJob

    return SyncJob.objects.create(kind="matrix", object_id=tag, workspace_id=ws.pk, object_repr=f"{tag} job")


def _role(ws: Workspace, tag: str) -> Model:
    return services.role_create(actor=SYSTEM, workspace=ws, name=f"{tag} role", permissions=["workspace.view"])


def _assignment(ws: Workspace, tag: str) -> Model:
    user = UserFactory(username=f"{tag}-person")
    return services.role_assign(actor=SYSTEM, workspace=ws, role=builtin_role("Viewer"), user=user)


def _service_account(ws: Workspace, tag: str) -> Model:
    return services.service_account_create(actor=SYSTEM, workspace=ws, name=f"{tag}-robot")


def _alert(ws: Workspace, tag: str) -> Model:
    from project.alerts.services import alert_raise

    return alert_raise(actor=SYSTEM, workspace=ws, kind="matrix", title=f"{tag} alert", dedup_key=f"matrix-{tag}")[0]


def _secret(ws: Workspace, tag: str) -> Model:
    from secrets_app.services.secrets import secret_create

    return secret_create(actor=SYSTEM, workspace=ws, name=f"{tag}_token", value=f"value-of-{tag}-9f8e7d")


def _tool(ws: Workspace, tag: str) -> Model:
    from secrets_app.services.tools import tool_create

    return tool_create(actor=SYSTEM, workspace=ws, name=f"{tag}_lookup", description=f"{tag} tool",
                       url=f"https://{tag}.example.com/hook")


def _oauth_provider(ws: Workspace, tag: str) -> Model:
    from secrets_app.services.vault import provider_save

    return provider_save(actor=SYSTEM, workspace=ws, client_secret=f"{tag}-client-secret-9f8e", slug=f"{tag}crm",
                         name=f"{tag} CRM", token_url=f"https://{tag}.example.com/token", client_id=f"{tag}-client")


def _broker_key(ws: Workspace, tag: str) -> Model:
    from broker.services.keys import broker_key_issue

    account = services.service_account_create(actor=SYSTEM, workspace=ws, name=f"{tag}-broker-robot")
    services.role_assign(actor=SYSTEM, workspace=ws, role=builtin_role("Developer"), service_account=account)
    return broker_key_issue(actor=SYSTEM, workspace=ws, service_account=account, name=f"{tag} key",
                            environment=ws.environments.get(name="dev"), agents=[_agent(ws, f"{tag} broker")]).key


def _key_policy(ws: Workspace, tag: str) -> Model:
    from keys.services import key_policy_save

    return key_policy_save(actor=SYSTEM, workspace=ws)  # "Key policy of Acme" / "... of Globex"


def _api_key(ws: Workspace, tag: str) -> Model:
    import hashlib

    from django.utils import timezone

    from keys.models import ApiKey

    sa = ServiceAccount.objects.create(workspace=ws, name=f"{tag}-keyholder", remote_id=f"remote-{tag}")
    return ApiKey.objects.create(workspace=ws, service_account=sa, environment=ws.environments.get(name="dev"),
                                 name=f"{tag} key", scopes=["convai_read"], state="active", hint="abcd",
                                 digest=hashlib.sha256(tag.encode()).hexdigest(), remote_key_id=f"key-{tag}",
                                 activated_at=timezone.now())


def _auth_connection(ws: Workspace, tag: str) -> Model:
    from secrets_app.services.auth_connections import auth_connection_save

    return auth_connection_save(actor=SYSTEM, workspace=ws, name=f"{tag} bearer", kind="bearer_auth",
                                provider=f"{tag}-api", secrets={"token": f"{tag}-bearer-token-5c4b3a"})


def _user_credential(ws: Workspace, tag: str) -> Model:
    from secrets_app.services.vault import credential_store

    return credential_store(actor=SYSTEM, workspace=ws, provider=_oauth_provider(ws, f"{tag}v"),
                            end_user_id=f"{tag}-user-1", access_token=f"{tag}-access-8e7d6c",
                            refresh_token=f"{tag}-refresh-8e7d6c")


def _webhook_agent(ws: Workspace, tag: str) -> Model:
    from broker.models import WebhookAgent

    return WebhookAgent.objects.get(pk=_agent(ws, f"{tag} hook").pk)


def _drift(ws: Workspace, tag: str) -> Model:
    from project.sync.models import Drift

    agent = _agent(ws, f"{tag} drifted")
    return Drift.objects.create(kind="agent", object_id=str(agent.pk), object_repr=f"{tag} drifted agent",
                                workspace_id=ws.pk, problem="missing_remotely")


def _incident(ws: Workspace, tag: str) -> Model:
    from detection.models import Incident

    return Incident.objects.create(workspace=ws, title=f"{tag} incident")


def _platform_account(ws: Workspace, tag: str) -> Model:
    """An account of the workspace's own (bound to it alone), made without asking the platform."""
    from workspaces.models import PlatformAccount

    account = PlatformAccount.objects.create(name=f"{tag} platform account", base_url="https://api.example.com",
                                             api_key=f"sk_{tag}_matrix_key_0000000000000000", key_hint="0000")
    Workspace.objects.filter(pk=ws.pk).update(platform_account=account)
    return account


def _detection_policy(ws: Workspace, tag: str) -> Model:
    from detection.models import DetectionPolicy

    return DetectionPolicy.objects.get_or_create(workspace=ws)[0]


def _user(ws: Workspace, tag: str) -> Model:
    return _assignment(ws, f"{tag}-login").user


MATRIX_FACTORIES: dict[str, Callable[[Workspace, str], Model]] = {
    "workspaces.workspace": lambda ws, tag: ws,
    "workspaces.platformaccount": _platform_account,
    "workspaces.environment": _environment,
    "agents.agent": _agent,
    "audit.auditevent": _audit_event,
    "sync.syncjob": _sync_job,
    "workspaces.role": _role,
    "workspaces.roleassignment": _assignment,
    "workspaces.serviceaccount": _service_account,
    "auth.user": _user,
    "alerts.alert": _alert,
    "secrets_app.secret": _secret,
    "keys.keypolicy": _key_policy,
    "secrets_app.tool": _tool,
    "secrets_app.oauthprovider": _oauth_provider,
    "broker.brokerkey": _broker_key,
    "keys.apikey": _api_key,
    "secrets_app.authconnection": _auth_connection,
    "secrets_app.usercredential": _user_credential,
    "broker.webhookagent": _webhook_agent,
    "sync.drift": _drift,
    "detection.incident": _incident,
    "detection.detectionpolicy": _detection_policy,
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
