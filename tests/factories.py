"""Every object the tests build, built in one place.

Three kinds of builder, one style each:

1. **factory-boy factories** (``<Model>Factory``) for rows that have no rules beyond their model: users,
   workspaces (each with its dev, staging and prod environments; ``environment()`` finds one), plain agents,
   service accounts, outbox jobs, drift and reconcile runs, the sign-in records of axes and a bare django-otp
   device. A factory writes its row and nothing else: no audit event, no outbox job, no platform call, so a test
   counts only what it did itself. ``grant`` (with ``builtin_role``) belongs here too: a role assignment
   written as a row, and so do ``make_person`` and ``make_principal``, a user with a grant. The people and
   robots of fixtures hold their roles that way on purpose: the tests of granting count ``role.assign`` audit
   events and must not find a fixture's among them; the rules of granting are tested through ``role_assign``.

2. **builder functions** (``make_<thing>``) for objects whose creation has rules or side effects: secrets,
   tools, auth connections, OAuth providers and vault credentials, agents (and agents that sync), service
   accounts as the admin makes them, roles, API keys, broker keys, key and detection policies, alerts,
   incidents, audit events. They go through the app's service as ``actor=SYSTEM`` (Keyward itself: an explicit
   actor holding every permission), so the object is what the product would have made: cleaned, audited, its
   outbox job enqueued. ``make_api_key`` takes the actor instead, because the API-key tests use it as the act
   of issuing (as owner, member and outsider), and ``make_confirmed_device`` enrols an authenticator as the
   person themself (enrolment is self-service only).

3. **rows written past the services on purpose**, named for it (``make_api_key_row``, ``make_hourly_usage``,
   ``make_daily_usage``, ``make_usage_baseline``): states the services reach only through the platform and the
   passage of time, such as an active key issued 60 days ago or a week of usage. Detection reads rows; it needs
   no platform. Their dates default to ``NOW``, the fixed time the detection tests pin ``timezone.now`` to.
   ``make_platform_usage`` is no row at all: the usage the emulator reports for a key.

Fixtures stay in the conftests (pytest finds them there) and call these builders. What is not an object
builder lives elsewhere: the emulator, the platform client, ``login`` and the API-key clock and checks in
``tests/conftest.py``; worker processes, brokers and polling in ``tests/sync/workers.py``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.test import TestCase
from django.utils import timezone

from agents.models import Agent
from project.actors import SYSTEM, Actor
from project.sync.models import Drift, ReconcileRun, SyncJob
from workspaces.models import Environment, Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.services.platform_accounts import default_account

#: The fixed "now" of the detection tests (their ``fixed_now`` fixture pins timezone.now to it) and the time the
#: row builders of part 3 date things from: Wednesday 2026-11-18, 12:00 UTC (winter: Berlin is UTC+1).
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


# --- 1. factories: rows without rules beyond their model ---------------------------------------------------
class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True

    @factory.post_generation
    def password(self, create: bool, extracted: object, **kwargs: object) -> None:
        self.set_password(extracted or "correct-horse-battery")
        if create:
            self.save(update_fields=["password"])


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"ws-{n}")
    # Tests' workspaces share the default platform account, so their objects carry the <slug>__ prefix there.
    platform_account = factory.LazyFunction(lambda: default_account())
    remote_prefix = factory.LazyAttribute(lambda ws: f"{ws.slug}__")

    @factory.post_generation
    def environments(self, create: bool, extracted: object, **kwargs: object) -> None:
        if not create:
            return
        for name, platform_env, is_prod in (("dev", "development", False), ("staging", "staging", False),
                                            ("prod", "production", True)):
            Environment.objects.get_or_create(workspace=self, name=name,
                                              defaults={"platform_environment": platform_env,
                                                        "is_production": is_prod})


def environment(workspace: Workspace, name: str = "prod") -> Environment:
    """One of the environments every workspace of WorkspaceFactory has (dev, staging, prod)."""
    return workspace.environments.get(name=name)


class AgentFactory(factory.django.DjangoModelFactory):
    """An agent row, never audited nor sent to the platform; make_agent makes one as the admin does."""

    class Meta:
        model = Agent

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    auth_mode = Agent.AuthMode.SIGNED


class ServiceAccountFactory(factory.django.DjangoModelFactory):
    """A machine identity the platform does not know (see make_synced_service_account). ``role="Developer"``
    grants it that built-in role in its workspace (Developer carries sessions.mint: an app backend)."""

    class Meta:
        model = ServiceAccount
        skip_postgeneration_save = True

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"svc-{n}")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        if create and extracted:
            grant(self, extracted, self.workspace)


def builtin_role(name: str) -> Role:
    return Role.objects.get(workspace=None, name=name)


def grant(principal: Any, role_name: str, workspace: Workspace) -> RoleAssignment:
    """A built-in role for a person or a service account, written as a row: not audited (see the docstring)."""
    field = "service_account" if isinstance(principal, ServiceAccount) else "user"
    return RoleAssignment.objects.create(role=builtin_role(role_name), workspace=workspace, **{field: principal})


def make_person(username: str, role: str | None = None, workspace: Workspace | None = None, **extra: Any) -> Any:
    """A staff login holding ``role`` (a built-in role's name) in ``workspace``; no role when None."""
    user = UserFactory(username=username, **extra)
    if role:
        grant(user, role, workspace)
    return user


def make_principal(name: str, workspace: Workspace) -> Any:
    """The person the permission matrix signs in as: a built-in role's name, "nobody" (no role) or "superuser"."""
    username = "matrix-" + name.lower().replace(" ", "-")
    if name == "superuser":
        return UserFactory(username=username, is_superuser=True)
    return make_person(username, None if name == "nobody" else name, workspace)


class _InWorkspace(factory.django.DjangoModelFactory):
    """Ground-floor rows know their workspace by id only: ``workspace=`` sets it (None for no workspace)."""

    class Meta:
        abstract = True

    class Params:
        workspace = None

    workspace_id = factory.LazyAttribute(lambda row: row.workspace.pk if row.workspace is not None else None)


class SyncJobFactory(_InWorkspace):
    """An outbox row in the state a test needs (the services enqueue jobs as pending)."""

    class Meta:
        model = SyncJob

    kind = "agent"
    object_id = factory.Sequence(str)
    object_repr = factory.LazyAttribute(lambda job: f"obj {job.object_id}")


class DriftFactory(_InWorkspace):
    """A difference the reconcile pass found between a row and the platform."""

    class Meta:
        model = Drift

    kind = "agent"
    object_id = factory.Sequence(str)
    object_repr = factory.LazyAttribute(lambda drift: f"drifted {drift.object_id}")
    problem = Drift.Problem.MISSING_REMOTELY


class ReconcileRunFactory(factory.django.DjangoModelFactory):
    """A reconcile pass over the agents, queued; ``finished=True``: one that checked ten rows a minute ago."""

    class Meta:
        model = ReconcileRun

    class Params:
        finished = factory.Trait(
            state=ReconcileRun.State.DONE, total=10, done=10,
            started_at=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1)),
            finished_at=factory.LazyFunction(timezone.now))

    kinds = factory.LazyFunction(lambda: ["agent"])


class AccessAttemptFactory(factory.django.DjangoModelFactory):
    """axes' record of failed sign-ins for one username (the lockout counts them)."""

    class Meta:
        model = "axes.AccessAttempt"

    username = factory.Sequence(lambda n: f"guesser{n}")
    ip_address = "127.0.0.1"
    user_agent = "curl/8"
    path_info = "/admin/login/"
    get_data = ""
    post_data = ""
    failures_since_start = 3
    attempt_time = factory.LazyFunction(timezone.now)


class AccessLogFactory(factory.django.DjangoModelFactory):
    """axes' record of one sign-in."""

    class Meta:
        model = "axes.AccessLog"

    username = factory.Sequence(lambda n: f"person{n}")
    ip_address = "127.0.0.1"
    user_agent = "Firefox"
    path_info = "/admin/login/"
    attempt_time = factory.LazyFunction(timezone.now)


class TOTPDeviceFactory(factory.django.DjangoModelFactory):
    """A bare django-otp device row (no sealed seed: nobody can compute its codes); make_confirmed_device makes
    one a person can sign in with."""

    class Meta:
        model = "otp_totp.TOTPDevice"

    user = factory.SubFactory(UserFactory)
    name = "phone"
    confirmed = True


# --- 2. builders through the services, as the system --------------------------------------------------------
def make_confirmed_device(user: Any) -> tuple[Any, list[str]]:
    """A confirmed authenticator of ``user`` and its ten recovery codes, enrolled through the accounts services
    by the person themself (the only actor enrolment accepts)."""
    from accounts import services
    from tests.accounts.conftest import code_for  # the code an authenticator app would show

    device = services.otp_device_enrol(actor=user, user=user)
    codes = services.otp_device_confirm(actor=user, device=device, code=code_for(device))
    assert codes is not None
    device.refresh_from_db()
    return device, list(codes)


def make_service_account(workspace: Workspace, name: str, *, role: str | None = None) -> ServiceAccount:
    """A service account as the admin makes it (service_account_create: audited, its platform create enqueued),
    holding ``role`` when given."""
    from workspaces.services import service_account_create

    account = service_account_create(actor=SYSTEM, workspace=workspace, name=name)
    if role:
        grant(account, role, workspace)
    return account


def make_synced_service_account(workspace: Workspace, name: str) -> ServiceAccount:
    """A service account the (emulated) platform already knows, ready for API keys: the row, then
    service_account_ensure_remote. No outbox job is left behind, so the key tests count only their own jobs.
    Needs the ``platform`` fixture."""
    from workspaces.services import service_account_ensure_remote

    account = ServiceAccountFactory(workspace=workspace, name=name)
    service_account_ensure_remote(actor=SYSTEM, service_account=account)
    account.refresh_from_db()
    return account


def make_role(workspace: Workspace, name: str, permissions: Iterable[str] = ("workspace.view",)) -> Role:
    """A custom role of one workspace (role_create: audited)."""
    from workspaces.services import role_create

    return role_create(actor=SYSTEM, workspace=workspace, name=name, permissions=list(permissions))


def make_agent(workspace: Workspace, name: str = "Support", *, synced: bool = False, **fields: Any) -> Agent:
    """An agent as the admin makes it (agent_create: audited, its platform create enqueued; signed unless
    ``auth_mode`` says otherwise). ``synced=True`` runs that create now, so the agent has its remote id (needs the
    ``platform`` fixture)."""
    from agents.services import agent_create

    if not synced:
        return agent_create(actor=SYSTEM, workspace=workspace, name=name, **fields)
    with TestCase.captureOnCommitCallbacks(execute=True):
        agent = agent_create(actor=SYSTEM, workspace=workspace, name=name, **fields)
    agent.refresh_from_db()
    return agent


def make_secret(workspace: Workspace, name: str = "crm_token", value: str = "crm-value-Hq28-xx", **fields: Any) -> Any:
    """A secret (secret_create: audited without its value, its platform create enqueued)."""
    from secrets_app.services import secret_create

    return secret_create(actor=SYSTEM, workspace=workspace, name=name, value=value, **fields)


def make_tool(workspace: Workspace, name: str = "lookup", headers: dict[str, str] | None = None, **fields: Any) -> Any:
    """A webhook tool (tool_create: its secret references recorded, its platform create enqueued)."""
    from secrets_app.services import tool_create

    fields.setdefault("description", "Look a customer up")
    fields.setdefault("url", "https://crm.example/api/lookup")
    return tool_create(actor=SYSTEM, workspace=workspace, name=name, headers=headers or {}, **fields)


def make_auth_connection(workspace: Workspace, name: str = "svc", kind: str = "bearer_auth", **fields: Any) -> Any:
    """An auth connection (auth_connection_save: audited, its platform create enqueued); a bearer token unless
    ``kind`` and its fields say otherwise."""
    from secrets_app.services import auth_connection_save

    if kind == "bearer_auth":
        fields.setdefault("secrets", {"token": "bt-built-for-a-test-5c4b3a"})
    return auth_connection_save(actor=SYSTEM, workspace=workspace, name=name, kind=kind, **fields)


def make_oauth_provider(workspace: Workspace, slug: str = "google", name: str = "Google", *,
                        token_url: str = "https://provider.test/token", client_id: str = "kw-client",
                        client_secret: str = "provider-client-secret-Zk41", **fields: Any) -> Any:
    """An OAuth provider of the credential vault (provider_save: audited, the client secret only as changed)."""
    from secrets_app.services import provider_save

    return provider_save(actor=SYSTEM, workspace=workspace, slug=slug, name=name, token_url=token_url,
                         client_id=client_id, client_secret=client_secret, **fields)


def make_vault_credential(workspace: Workspace, provider: Any, end_user_id: str = "u-1", access_token: str = "", *,
                          refresh_token: str = "", expires_in: int | None = 60,
                          scopes: Iterable[str] | None = ("calendar.read",)) -> Any:
    """An end user's tokens at ``provider`` (credential_store: audited without the tokens), expiring
    ``expires_in`` seconds from now (None: never). The tokens default to ``at-old-<user>-Kp3`` and
    ``rt-old-<user>-Kp4``: old, as the refresh tests want them."""
    from secrets_app.services import credential_store

    expires_at = timezone.now() + timedelta(seconds=expires_in) if expires_in is not None else None
    return credential_store(actor=SYSTEM, workspace=workspace, provider=provider, end_user_id=end_user_id,
                            access_token=access_token or f"at-old-{end_user_id}-Kp3",
                            refresh_token=refresh_token or f"rt-old-{end_user_id}-Kp4", expires_at=expires_at,
                            scopes=list(scopes) if scopes is not None else None)


def make_api_key(actor: Actor, account: ServiceAccount, env_name: str = "prod", **fields: Any) -> Any:
    """Issue an API key (api_key_issue on the platform; needs the ``platform`` fixture and an account from
    make_synced_service_account) with defaults that let it call the usage endpoint. Returns the IssuedKey (the
    row and its secret). The actor is the caller's: the issuing tests act through this as owner, member and
    outsider."""
    from keys.services import api_key_issue

    values: dict[str, Any] = {"name": "billing", "scopes": ["workspace_read"], "credit_quota": 1000}
    values.update(fields)
    return api_key_issue(actor=actor, service_account=account, environment=environment(account.workspace, env_name),
                         **values)


def make_key_policy(workspace: Workspace, **fields: Any) -> Any:
    """The workspace's key policy (key_policy_save: audited)."""
    from keys.services import key_policy_save

    return key_policy_save(actor=SYSTEM, workspace=workspace, **fields)


def make_broker_key(workspace: Workspace, *, service_account: ServiceAccount | None = None,
                    agents: Iterable[Agent] | None = None, environment: Environment | None = None,
                    name: str = "web app", actor: Actor = SYSTEM, **fields: Any) -> Any:
    """Issue a broker key (broker_key_issue: audited). Returns the IssuedKey (the row and its secret). By default
    for a new app backend holding Developer (which carries sessions.mint) and one new signed agent, in dev."""
    from broker.services import broker_key_issue

    if service_account is None:
        service_account = ServiceAccountFactory(workspace=workspace, role="Developer")
    if agents is None:
        agents = [make_agent(workspace, f"{name} agent")]
    environment = environment or workspace.environments.get(name="dev")
    return broker_key_issue(actor=actor, workspace=workspace, service_account=service_account,
                            environment=environment, name=name, agents=agents, **fields)


def make_detection_policy(workspace: Workspace, **fields: Any) -> Any:
    """The workspace's detection policy with ``fields`` changed (detection_policy_save: cleaned, audited)."""
    from detection.services import detection_policy_save

    return detection_policy_save(actor=SYSTEM, workspace=workspace, **fields)


def make_alert(workspace: Workspace, kind: str = "usage_spike", *, target: Any = None, title: str = "",
               dedup_key: str = "", severity: str = "high", details: dict[str, Any] | None = None) -> Any:
    """An open alert (alert_raise: audited), about ``target`` when given. One per kind and target (or title):
    a second call with the same returns the first alert, as the dedup key of a real rule would."""
    from project.alerts.services import alert_raise

    title = title or (f"{kind} on {target}" if target is not None else kind)
    dedup_key = dedup_key or f"{kind}:{target.pk if target is not None else title}"
    return alert_raise(actor=SYSTEM, workspace=workspace, kind=kind, title=title, dedup_key=dedup_key,
                       severity=severity, details=details, target=target)[0]


def make_incident(workspace: Workspace, title: str = "Security incident") -> Any:
    """An incident opened by hand, about nothing in particular (incident_open: its first step, audited)."""
    from detection.incidents import incident_open

    return incident_open(actor=SYSTEM, workspace=workspace, title=title)[0]


def make_audit_event(workspace: Workspace, *, action: str = "test.event", object_type: str = "test.thing",
                     object_id: str = "1", object_repr: str = "an event") -> Any:
    """One line of the audit trail, written as the system."""
    from project.audit.services import record

    return record(actor=SYSTEM, action=action, object_type=object_type, object_id=object_id,
                  object_repr=object_repr, workspace_id=workspace.pk)


# --- 3. rows past the services, on purpose --------------------------------------------------------------------
_serial = itertools.count(1)


def make_api_key_row(workspace: Workspace, env_name: str = "prod", *, name: str | None = None,
                     service_account: ServiceAccount | None = None, activated: datetime | None = None,
                     **fields: Any) -> Any:
    """An active API key as a row, with no platform behind it: the digest of a made-up secret, issued (created
    and activated) 60 days before NOW unless ``activated`` says when, to a new service account unless given."""
    from keys.models import ApiKey

    n = next(_serial)
    service_account = service_account or ServiceAccountFactory(workspace=workspace, name=f"svc-{n}")
    activated = activated or NOW - timedelta(days=60)
    values: dict[str, Any] = {"scopes": ["text_to_speech"], "allowed_ips": ["10.0.0.0/8"], "credit_quota": None}
    values.update(fields)
    key = ApiKey.objects.create(
        workspace=workspace, service_account=service_account, environment=environment(workspace, env_name),
        name=name or f"key-{n}", state=ApiKey.State.ACTIVE, hint=f"{n:04d}"[-4:],
        digest=hashlib.sha256(f"secret-{n}".encode()).hexdigest(), remote_key_id=f"remote-{n}",
        activated_at=activated, **values)
    ApiKey.objects.filter(pk=key.pk).update(created_at=activated)
    key.refresh_from_db()
    return key


def make_hourly_usage(key: Any, hour: datetime, credits: float, requests: int = 1) -> Any:
    """Detection's usage row of one key in one hour."""
    from keys.models import KeyUsageHourly

    return KeyUsageHourly.objects.create(key=key, hour=hour.replace(minute=0, second=0, microsecond=0),
                                         credits=Decimal(str(credits)), requests=requests)


def make_daily_usage(key: Any, day: date, credits: float, requests: int = 1) -> Any:
    """The keys app's usage total of one key on one day (new), with the burn aggregates moved as the ingest does."""
    from keys.models import KeyUsageDaily
    from keys.services.burn import usage_burn_apply

    row = KeyUsageDaily.objects.create(key=key, day=day, credits=Decimal(str(credits)), requests=requests)
    usage_burn_apply({(key.pk, day): row.credits})
    return row


def make_usage_baseline(key: Any, before: date, credits_per_day: float, days: int = 7) -> None:
    """The same spend on each of the ``days`` whole days before ``before``."""
    for n in range(1, days + 1):
        make_daily_usage(key, before - timedelta(days=n), credits_per_day, requests=10)


def make_platform_usage(key: Any, when: datetime, credits: float = 10, requests: int = 1) -> dict[str, Any]:
    """What the platform reports for a key (an ApiKey or its secret) at ``when``: one usage row as the emulator's
    /_emulator/usage (Emulator.add_usage) takes it."""
    from keys.models import ApiKey
    from project.platform.emulator import hash_key

    # An ApiKey is named by the hash the platform listed for it (never sha256 of its secret).
    hashed = key.platform_hash if isinstance(key, ApiKey) else hash_key(key)
    return {"hashed_xi_api_key": hashed, "time_ms": int(when.timestamp() * 1000), "credits": credits,
            "requests": requests}
