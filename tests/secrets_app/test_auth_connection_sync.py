import json

import httpx
import pytest
from django.utils import timezone

from project.actors import SYSTEM
from project.platform.client import PlatformClient
from project.sync.models import SyncJob
from project.sync.services import outbox_drain
from secrets_app import services
from secrets_app.models import AuthConnection
from secrets_app.sync_auth import reconcile_auth_connections
from tests.conftest import EMULATOR_KEY
from tests.platform.test_contract import json_schema_of, operation_for, validator
from tests.secrets_app.test_auth_connections import KINDS

pytestmark = pytest.mark.django_db


def _save(workspace, kind, connection=None, name=None, **overrides):
    plain, secret = KINDS[kind]
    return services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=connection,
                                         name=name or f"conn {kind}", kind=kind, provider="crm",
                                         **{**plain, **secret, **overrides})


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_reaches_the_platform_without_echoing_its_credential(workspace, emulator, drain, kind):
    conn = _save(workspace, kind)
    drain()
    conn.refresh_from_db(fields=["remote_id"])
    assert conn.remote_id and SyncJob.objects.get().state == "done"
    remote = emulator.auth_connections_snapshot()
    assert [(r["id"], r["name"], r["auth_type"]) for r in remote] == [(conn.remote_id, f"acme__conn {kind}", kind)]
    stored = emulator.auth_connection_secret(conn.remote_id)
    assert next(iter(stored.values())).startswith(("cs-", "js-", "pw-", "bt-", "ch-"))
    assert "Ac0" not in json.dumps(remote)


def test_requests_and_answers_follow_the_platforms_schemas(workspace, emulator):
    exchanges = []

    def capture(request: httpx.Request) -> httpx.Response:
        response = emulator.handle(request)
        exchanges.append((request, response))
        return response

    client = PlatformClient("http://platform.test", EMULATOR_KEY, transport=httpx.MockTransport(capture))
    for kind in KINDS:
        _save(workspace, kind)
    conn = _save(workspace, "basic_auth", name="to update")
    outbox_drain(client=client)
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="to update",
                                  kind="basic_auth", provider="crm2", username="svc2", secrets={"password": None})
    services.auth_connection_delete(actor=SYSTEM, connection=AuthConnection.objects.get(kind="bearer_auth"))
    outbox_drain(client=client)
    methods, checked = set(), 0
    for request, response in exchanges:
        assert response.is_success, response.content
        template, operation = operation_for(request.method, request.url.path)
        methods.add(request.method)
        if request.content:
            pointer = ("paths", template, request.method.lower(), "requestBody", "content", "application/json",
                       "schema")
            errors = [e.message for e in validator(*pointer).iter_errors(json.loads(request.content))]
            assert not errors, (request.method, template, errors[:3])
        schema = json_schema_of(operation["responses"][str(response.status_code)])
        if schema and response.content:
            pointer = ("paths", template, request.method.lower(), "responses", str(response.status_code), "content",
                       "application/json", "schema")
            errors = [e.message for e in validator(*pointer).iter_errors(response.json())]
            assert not errors, (request.method, template, errors[:3])
            checked += 1
    assert methods == {"POST", "GET", "PATCH", "DELETE"} and checked >= 8


def test_an_update_patches_what_the_platform_can_change(workspace, emulator, drain):
    conn = _save(workspace, "basic_auth")
    drain()
    conn.refresh_from_db(fields=["remote_id"])
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="conn basic_auth",
                                  kind="basic_auth", provider="crm", username="svc2",
                                  secrets={"password": "pw-Ac20-new"})
    drain()
    assert emulator.call_counts.get("PATCH /v1/workspace/auth-connections/{auth_connection_id}") == 1
    assert emulator.auth_connections_snapshot()[0]["username"] == "svc2"
    assert emulator.auth_connection_secret(conn.remote_id) == {"password": "pw-Ac20-new"}


def test_a_rename_or_kind_change_replaces_the_remote_connection(workspace, emulator, drain):
    conn = _save(workspace, "basic_auth")
    drain()
    old = AuthConnection.objects.get().remote_id
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="renamed",
                                  kind="bearer_auth", provider="crm", secrets={"token": "bt-Ac21"})
    drain()
    new = AuthConnection.objects.get().remote_id
    assert new != old
    assert [(r["id"], r["name"], r["auth_type"]) for r in emulator.auth_connections_snapshot()] == [
        (new, "acme__renamed", "bearer_auth")]


def test_a_custom_header_connection_with_several_headers_stays_local_with_a_reason(workspace, emulator, drain):
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, name="multi", kind="custom_header_auth",
                                  headers={"X-A": "ch-Ac22", "X-B": "ch-Ac23"})
    drain()
    job = SyncJob.objects.get()
    assert job.state == "failed" and "exactly one header" in job.last_error and "Ac2" not in job.last_error
    assert emulator.auth_connections_snapshot() == []


def test_a_delete_reaches_the_platform(workspace, emulator, drain):
    conn = _save(workspace, "bearer_auth")
    drain()
    services.auth_connection_delete(actor=SYSTEM, connection=conn)
    drain()
    assert emulator.auth_connections_snapshot() == []


def test_an_unreadable_connection_is_never_sent(workspace, emulator, drain, settings, unrelated_key):
    _save(workspace, "bearer_auth")
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    drain()
    job = SyncJob.objects.get()
    assert job.state == "failed" and "cannot decrypt" in job.last_error
    assert emulator.auth_connections_snapshot() == []


def test_a_retried_create_adopts_what_a_lost_attempt_made(workspace, emulator, platform, drain):
    _save(workspace, "bearer_auth")
    earlier = platform.create_auth_connection(body={"name": "acme__conn bearer_auth", "auth_type": "bearer_auth",
                                                    "provider": "crm", "token": "lost"})["id"]
    SyncJob.objects.update(attempts=1, last_error="worker lost; requeued", next_attempt_at=timezone.now())
    drain()
    assert AuthConnection.objects.get().remote_id == earlier
    assert emulator.auth_connection_secret(earlier) == {"token": "bt-Ac04-value"}
    assert len(emulator.auth_connections_snapshot()) == 1


def test_reconcile_reports_a_connection_removed_on_the_platform(workspace, platform, drain):
    conn = _save(workspace, "bearer_auth")
    drain()
    assert list(reconcile_auth_connections(platform)) == []
    platform.delete_auth_connection(AuthConnection.objects.get().remote_id)
    assert [(i.object_id, i.problem) for i in reconcile_auth_connections(platform)] == [(conn.pk, "missing_remotely")]


# --- a create whose answer was lost, then a rename, a kind change or a delete ----------------------------------------
def _lost_create(workspace, platform, kind="basic_auth", name="crm login"):
    """A connection whose create a worker sent (its credential included) and died before recording."""
    from datetime import timedelta

    from project.sync.services import jobs_claim
    from secrets_app.sync_auth import create_body

    conn = _save(workspace, kind, name=name)
    [first] = jobs_claim(worker="killed")
    platform.create_auth_connection(body=create_body(conn))
    return conn, lambda: SyncJob.objects.filter(pk=first.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))


def _drain_all(drain) -> None:
    drain()
    SyncJob.objects.filter(state="pending").update(next_attempt_at=timezone.now())
    drain()


def test_a_connection_renamed_after_a_lost_create_leaves_no_credential_behind(workspace, emulator, platform, drain):
    """The lost create's copy, under the name and kind it was sent with (the audit trail), is replaced, not left on
    the platform with its password."""
    conn, worker_lost = _lost_create(workspace, platform)
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="crm token",
                                  kind="bearer_auth", provider="crm", secrets={"token": "bt-Ac31"})
    worker_lost()
    _drain_all(drain)
    conn.refresh_from_db(fields=["remote_id"])
    assert [(r["id"], r["name"], r["auth_type"]) for r in emulator.auth_connections_snapshot()] == [
        (conn.remote_id, "acme__crm token", "bearer_auth")]
    assert not SyncJob.objects.exclude(state__in=["done", "superseded"]).exists()


def test_a_connection_deleted_after_a_rename_and_a_lost_create_leaves_nothing(workspace, emulator, platform, drain):
    conn, worker_lost = _lost_create(workspace, platform)
    conn = services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="crm renamed",
                                         kind="basic_auth", provider="crm")
    services.auth_connection_delete(actor=SYSTEM, connection=conn)
    worker_lost()
    _drain_all(drain)
    assert emulator.auth_connections_snapshot() == []


def test_a_connection_that_had_its_platform_id_never_takes_a_stranger_under_an_old_name(workspace, emulator,
                                                                                        platform, drain):
    """Its create was confirmed: deleted on the platform behind Keyward's back, it is made again, and a connection
    someone else made under its old name and kind is neither taken over nor deleted as "replaced"."""
    from secrets_app.sync_auth import create_body

    conn = _save(workspace, "basic_auth", name="crm login")
    drain()
    stranger_body = create_body(conn)
    conn = services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="crm renamed",
                                         kind="basic_auth", provider="crm")
    drain()
    conn.refresh_from_db(fields=["remote_id"])
    platform.delete_auth_connection(conn.remote_id)
    stranger = platform.create_auth_connection(body=stranger_body)["id"]
    services.auth_connection_save(actor=SYSTEM, workspace=workspace, connection=conn, name="crm renamed",
                                  kind="basic_auth", provider="crm", username="someone-new")
    drain()
    conn.refresh_from_db(fields=["remote_id"])
    assert sorted((r["id"] == stranger, r["name"]) for r in emulator.auth_connections_snapshot()) == [
        (False, "acme__crm renamed"), (True, "acme__crm login")]
    assert conn.remote_id != stranger
