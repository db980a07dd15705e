"""Platform accounts: each workspace on its own account and key, verified before it is saved, and Keyward's own
key rotated like any other (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from project.fields import DecryptionError
from project.platform import client as platform_client
from project.platform.emulator import EmulatorHub
from project.sync.models import SyncJob
from project.sync.services import outbox_drain
from tests.factories import UserFactory, grant
from workspaces.models import PlatformAccount, Workspace
from workspaces.services import platform_accounts as accounts
from workspaces.services import workspace_create

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9"  # never dialled: every account's client goes through the hub's transport
ACME_KEY = "sk_acme_admin_key_0000000000000000000000000000000001"
GLOBEX_KEY = "sk_globex_admin_key_000000000000000000000000000000002"


@pytest.fixture
def hub() -> Iterator[EmulatorHub]:
    """Two isolated platform accounts behind one transport; Keyward's keys are service-account keys there."""
    hub = EmulatorHub()
    for name, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY)):
        hub.add_account(name, api_key=f"root-{name}-unused-0000000000").install_key(key, service_account="keyward")
    platform_client.set_client(None)
    platform_client.set_transport(httpx.MockTransport(hub.handle))
    yield hub
    platform_client.set_transport(None)


def _account(name: str, key: str) -> PlatformAccount:
    return accounts.platform_account_create(actor=SYSTEM, name=name, base_url=URL, api_key=key)


def _workspace(name: str, account: PlatformAccount) -> Workspace:
    return workspace_create(actor=SYSTEM, name=name.title(), slug=name, platform_account=account)


def test_a_good_key_is_verified_encrypted_and_shown_by_its_hint_only(hub):
    account = _account("Acme production", ACME_KEY)
    assert account.state == "verified" and account.verified_at is not None
    assert account.key_hint == ACME_KEY[-4:] and account.platform_info["tier"] == "enterprise"
    assert account.key_service_account_id and account.key_remote_id  # listed: Keyward can rotate it itself
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM workspaces_platformaccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()[0]
    assert ACME_KEY not in stored and ACME_KEY[8:30] not in stored
    event = AuditEvent.objects.get(action="platform_account.create", object_id=str(account.pk))
    assert ACME_KEY not in str(event.changes) and ACME_KEY[8:30] not in str(event.changes)


def test_a_wrong_key_is_an_error_on_the_key_and_saves_nothing(hub):
    before = PlatformAccount.objects.count()
    with pytest.raises(ValidationError) as refused:
        _account("Bogus", "sk_not_a_key_the_platform_knows_00000000000000000")
    assert "api_key" in refused.value.message_dict
    assert "refused this key" in refused.value.message_dict["api_key"][0]
    assert PlatformAccount.objects.count() == before


def test_an_unreachable_url_is_an_error_on_the_url(db):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    platform_client.set_client(None)
    platform_client.set_transport(httpx.MockTransport(down))
    try:
        with pytest.raises(ValidationError) as refused:
            _account("Unreachable", ACME_KEY)
    finally:
        platform_client.set_transport(None)
    assert "Could not reach the platform" in refused.value.message_dict["base_url"][0]
    assert not PlatformAccount.objects.filter(name="Unreachable").exists()


def test_a_key_without_the_permissions_keyward_needs_is_refused(hub):
    reader = "sk_reader_key_only_reads_0000000000000000000000000003"
    hub.account("acme").install_key(reader, service_account="read-only", permissions=["convai_read"])
    with pytest.raises(ValidationError) as refused:
        _account("Reader", reader)
    assert "may not manage service accounts" in refused.value.message_dict["api_key"][0]
    partial = "sk_partial_key_no_writes_00000000000000000000000000005"
    hub.account("acme").install_key(partial, service_account="partial",
                                    permissions=["convai_read", "service_account_write"])
    with pytest.raises(ValidationError) as refused:
        _account("Partial", partial)
    message = refused.value.message_dict["api_key"][0]
    assert "lacks permissions" in message and "change agents" in message and "read usage" in message
    assert not PlatformAccount.objects.filter(name__in=["Reader", "Partial"]).exists()


def test_http_urls_are_refused_unless_loopback_in_debug(hub, settings):
    with pytest.raises(ValidationError, match="https"):
        accounts.validate_base_url("http://api.example.com")
    settings.PRODUCTION = True
    with pytest.raises(ValidationError, match="debug"):
        accounts.validate_base_url("http://127.0.0.1:8765")
    assert accounts.validate_base_url("https://api.elevenlabs.io/") == "https://api.elevenlabs.io"


def test_two_accounts_are_isolated_end_to_end(hub, django_capture_on_commit_callbacks):
    acme = _workspace("acme", _account("Acme", ACME_KEY))
    globex = _workspace("globex", _account("Globex", GLOBEX_KEY))
    assert (acme.remote_prefix, globex.remote_prefix) == ("", "")  # alone on their accounts: plain names
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_create(actor=SYSTEM, workspace=acme, name="Support", auth_mode="signed")
        agent_services.agent_create(actor=SYSTEM, workspace=globex, name="Sales", auth_mode="signed")
    outbox_drain()
    acme_agents = [a["name"] for a in hub.account("acme").state_snapshot()["agents"]]
    globex_agents = [a["name"] for a in hub.account("globex").state_snapshot()["agents"]]
    assert acme_agents == ["Support"] and globex_agents == ["Sales"]
    assert Agent.objects.filter(remote_id="").count() == 0


def test_a_failing_account_does_not_hold_back_the_healthy_one(hub, django_capture_on_commit_callbacks):
    acme = _workspace("acme", _account("Acme", ACME_KEY))
    globex = _workspace("globex", _account("Globex", GLOBEX_KEY))
    hub.account("globex").set_faults(error_rate=1.0, error_status=503)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(10):
            agent_services.agent_create(actor=SYSTEM, workspace=acme, name=f"Acme {i}", auth_mode="signed")
            agent_services.agent_create(actor=SYSTEM, workspace=globex, name=f"Globex {i}", auth_mode="signed")
    outbox_drain()
    healthy = SyncJob.objects.filter(workspace_id=acme.pk)
    failing = SyncJob.objects.filter(workspace_id=globex.pk)
    assert set(healthy.values_list("state", flat=True)) == {"done"}
    assert set(failing.values_list("state", flat=True)) == {"pending"}  # backing off, not dead
    assert all(job.next_attempt_at > timezone.now() for job in failing)
    globex_row = PlatformAccount.objects.get(name="Globex")
    assert globex_row.state == "failing" and "service_unavailable" in globex_row.last_failure
    assert PlatformAccount.objects.get(name="Acme").last_success_at is not None


def test_a_worker_pauses_an_account_failing_every_call(hub, django_capture_on_commit_callbacks):
    acme = _workspace("acme", _account("Acme", ACME_KEY))
    globex = _workspace("globex", _account("Globex", GLOBEX_KEY))
    hub.account("globex").set_faults(error_rate=1.0, error_status=503)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(30):
            agent_services.agent_create(actor=SYSTEM, workspace=globex, name=f"Globex {i}", auth_mode="signed")
        agent_services.agent_create(actor=SYSTEM, workspace=acme, name="Acme", auth_mode="signed")
    outbox_drain(batch=100)
    calls = sum(n for route, n in hub.account("globex").call_counts.items() if route.startswith("POST"))
    assert calls == 5  # five failures in a row, then the account is left alone for the pause
    failing = SyncJob.objects.filter(workspace_id=globex.pk)
    assert sorted(set(failing.values_list("attempts", flat=True))) == [0, 1]  # the untried spent nothing
    assert all(job.next_attempt_at > timezone.now() for job in failing) and not failing.exclude(state="pending")
    assert SyncJob.objects.get(workspace_id=acme.pk).state == "done"


def test_moving_a_workspace_with_synced_objects_is_refused(hub, django_capture_on_commit_callbacks):
    acme_account, globex_account = _account("Acme", ACME_KEY), _account("Globex", GLOBEX_KEY)
    acme = _workspace("acme", acme_account)
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_create(actor=SYSTEM, workspace=acme, name="Support", auth_mode="signed")
    outbox_drain()
    with pytest.raises(ValidationError, match="1 agents"):
        accounts.workspace_bind_account(actor=SYSTEM, workspace=acme, account=globex_account)
    assert Workspace.objects.get(pk=acme.pk).platform_account == acme_account
    empty = _workspace("empty", acme_account)
    assert empty.remote_prefix == "empty__"  # shares the account with acme
    moved = accounts.workspace_bind_account(actor=SYSTEM, workspace=empty, account=globex_account)
    assert moved.platform_account == globex_account and moved.remote_prefix == ""
    with pytest.raises(Exception, match="protected"):
        acme_account.delete()  # an account with workspaces cannot be deleted


def test_only_admins_of_every_bound_workspace_manage_an_account(hub):
    account = _account("Acme", ACME_KEY)
    acme, other = _workspace("acme", account), _workspace("other", account)
    admin, lead = UserFactory(), UserFactory()
    grant(admin, "Admin", acme)
    grant(lead, "Team lead", acme)
    with pytest.raises(PermissionDenied):
        accounts.platform_account_check(actor=admin, account=account)  # not an Admin of "other"
    grant(admin, "Admin", other)
    admin = type(admin).objects.get(pk=admin.pk)  # permissions are read once per request (per user object)
    assert accounts.platform_account_check(actor=admin, account=account).state == "verified"
    with pytest.raises(PermissionDenied):
        accounts.platform_account_create(actor=lead, name="Mine", base_url=URL, api_key=GLOBEX_KEY)


def test_keyward_rotates_its_own_key_and_workers_switch_without_restart(hub, monkeypatch):
    account = _account("Acme", ACME_KEY)
    acme = _workspace("acme", account)
    before = platform_client.client_for_workspace(acme.pk)
    rotated = accounts.platform_account_rotate_key(actor=SYSTEM, account=account)
    assert rotated.key_version == account.key_version + 1 and rotated.key_hint != account.key_hint
    assert rotated.previous_key_hint == ACME_KEY[-4:] and rotated.overlap_until > timezone.now()
    assert rotated.api_key != ACME_KEY
    after = platform_client.client_for_workspace(acme.pk)
    assert after is not before and after._http.headers["xi-api-key"] == rotated.api_key
    keys = hub.account("acme").state_snapshot()["api_keys"]
    assert sum(k["name"].startswith("keyward-admin") for k in keys) == 1
    assert hub.account("acme").owns_key(ACME_KEY)  # the old key still works through the overlap
    event = AuditEvent.objects.get(action="platform_account.key_rotate")
    assert rotated.api_key not in str(event.changes) and ACME_KEY not in str(event.changes)


def test_another_process_picks_up_a_new_key_within_the_recheck_time(hub, monkeypatch):
    account = _account("Acme", ACME_KEY)
    acme = _workspace("acme", account)
    first = platform_client.client_for_workspace(acme.pk)
    # Another process rotated: the row changed, this process's cache did not hear of it.
    PlatformAccount.objects.filter(pk=account.pk).update(key_version=account.key_version + 7)
    assert platform_client.client_for_workspace(acme.pk) is first  # within the recheck time
    monkeypatch.setattr(platform_client, "KEY_RECHECK_SECONDS", 0.0)
    assert platform_client.client_for_workspace(acme.pk) is not first


def test_a_lost_rotation_answer_never_leaves_two_successors(hub, monkeypatch):
    account = _account("Acme", ACME_KEY)
    _workspace("acme", account)
    real_create = platform_client.PlatformClient.create_api_key

    def made_but_answer_lost(self, *args, **kwargs):
        real_create(self, *args, **kwargs)
        raise platform_client.Unavailable("ReadTimeout on POST", code="timeout")

    monkeypatch.setattr(platform_client.PlatformClient, "create_api_key", made_but_answer_lost)
    with pytest.raises(platform_client.Unavailable):
        accounts.platform_account_rotate_key(actor=SYSTEM, account=account)
    assert PlatformAccount.objects.get(pk=account.pk).rotation_uuid is not None  # the attempt is on record
    monkeypatch.setattr(platform_client.PlatformClient, "create_api_key", real_create)
    rotated = accounts.platform_account_rotate_key(actor=SYSTEM, account=PlatformAccount.objects.get(pk=account.pk))
    keys = hub.account("acme").state_snapshot()["api_keys"]
    assert sum(k["name"].startswith("keyward-admin") for k in keys) == 1  # the orphan went, one successor left
    assert rotated.rotation_uuid is None and hub.account("acme").owns_key(rotated.api_key)


def test_a_pasted_successor_is_verified_then_used(hub):
    account = _account("Acme", ACME_KEY)
    _workspace("acme", account)
    with pytest.raises(ValidationError):
        accounts.platform_account_rotate_key(actor=SYSTEM, account=account,
                                             pasted_key="sk_not_known_anywhere_0000000000000000000000000000")
    assert PlatformAccount.objects.get(pk=account.pk).key_version == account.key_version
    pasted = "sk_pasted_successor_key_00000000000000000000000000004"
    hub.account("acme").install_key(pasted, service_account="keyward")
    rotated = accounts.platform_account_rotate_key(actor=SYSTEM, account=account, pasted_key=pasted)
    assert rotated.api_key == pasted and rotated.previous_key_hint == ACME_KEY[-4:]


def test_the_sweep_revokes_the_previous_key_once_it_has_gone_quiet(hub, settings):
    account = _account("Acme", ACME_KEY)
    _workspace("acme", account)
    rotated = accounts.platform_account_rotate_key(actor=SYSTEM, account=account, overlap=timedelta(0))
    later = timezone.now() + timedelta(minutes=1)
    assert accounts.platform_accounts_sweep(now=later)["revoked"] == 0  # usage noted; must stay quiet a while
    quiet = later + timedelta(hours=settings.PLATFORM_KEY_QUIET_HOURS, minutes=1)
    assert accounts.platform_accounts_sweep(now=quiet)["revoked"] == 1
    assert not hub.account("acme").owns_key(ACME_KEY)
    row = PlatformAccount.objects.get(pk=rotated.pk)
    assert row.previous_api_key is None and row.overlap_until is None
    assert AuditEvent.objects.filter(action="platform_account.key_revoke").exists()


def test_an_old_account_key_raises_a_rotation_due_alert_in_its_workspaces(hub, settings):
    account = _account("Acme", ACME_KEY)
    acme, other = _workspace("acme", account), _workspace("other", account)
    PlatformAccount.objects.filter(pk=account.pk).update(key_set_at=timezone.now() - timedelta(days=91))
    assert accounts.platform_accounts_sweep()["alerts"] == 2
    alerts = Alert.objects.filter(kind="platform_key_rotation_due")
    assert {a.workspace_id for a in alerts} == {acme.pk, other.pk}
    assert accounts.platform_accounts_sweep()["alerts"] == 0  # deduplicated


def test_an_account_key_no_configured_key_can_read_fails_closed(hub, settings, django_capture_on_commit_callbacks):
    acme = _workspace("acme", _account("Acme", ACME_KEY))
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    platform_client.forget_all()
    with pytest.raises(DecryptionError):
        _ = PlatformAccount.objects.get(workspaces=acme).api_key
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_create(actor=SYSTEM, workspace=acme, name="Support", auth_mode="signed")
    outbox_drain()
    job = SyncJob.objects.get(workspace_id=acme.pk)
    assert job.state == "pending" and "cannot be decrypted" in job.last_error
    assert not hub.account("acme").state_snapshot()["agents"]
