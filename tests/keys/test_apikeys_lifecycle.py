"""Issue, sync, update, revoke, expire against the emulator; retry safety of issuing; the service-account handler
and the disable hook."""

from datetime import timedelta

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from keys import services
from keys.models import ApiKey, key_digest
from keys.services import issue as issuing
from keys.sync import push_api_key, reconcile_api_keys
from project.audit.models import AuditEvent
from project.platform.client import PlatformClient
from project.sync.models import SyncJob
from tests.conftest import EMULATOR_KEY, drain, key_works
from tests.factories import ServiceAccountFactory, environment, make_api_key, make_service_account
from workspaces import services as workspace_services

pytestmark = pytest.mark.django_db


def _remote(emulator, key):
    return next((k for k in emulator.state_snapshot()["api_keys"] if k["key_id"] == key.remote_key_id), None)


def _remote_tagged(emulator, key):
    return [k for k in emulator.state_snapshot()["api_keys"] if key.remote_tag in k["name"]]


def _job(key):
    return SyncJob.objects.filter(kind="api_key", object_id=str(key.pk)).order_by("-id").first()


def test_issue_creates_the_key_on_the_platform_with_its_limits(owner, account, emulator):
    issued = make_api_key(owner, account, scopes=["convai_read", "workspace_read"], credit_quota=1234,
                          allowed_ips=["127.0.0.1", "2001:db8::/32"])
    key = ApiKey.objects.get(pk=issued.key.pk)
    remote = _remote(emulator, key)
    assert remote["permissions"] == ["workspace_read", "convai_read"] or sorted(remote["permissions"]) == sorted(
        ["convai_read", "workspace_read"])
    assert remote["character_limit"] == 1234
    assert remote["allowed_ips"] == ["127.0.0.1/32", "2001:db8::/32"]
    assert remote["name"] == f"billing {key.remote_tag}"
    assert key.state == "active" and key.hint == issued.secret[-4:]
    # The digest (leak check) is Keyward's own sha256; usage is joined on the hash the platform lists, read back.
    assert key.digest == key_digest(issued.secret) and key.platform_hash == remote["hashed_xi_api_key"]
    assert key_works(emulator, issued.secret)


def test_all_scopes_reach_the_platform_as_all(owner, account, emulator):
    key = make_api_key(owner, account, scopes="all").key
    assert emulator._keys[ApiKey.objects.get(pk=key.pk).remote_key_id]["permissions"] == "all"


def test_issue_is_audited_without_the_secret(owner, account):
    issued = make_api_key(owner, account)
    actions = list(AuditEvent.objects.filter(object_id=str(issued.key.pk)).values_list("action", flat=True))
    assert sorted(actions) == ["api_key.activate", "api_key.issue"]
    assert all(issued.secret not in str(e.changes) + e.object_repr for e in AuditEvent.objects.all())


def test_issued_key_repr_hides_the_secret(owner, account):
    issued = make_api_key(owner, account)
    assert issued.secret not in repr(issued) and issued.secret not in str(issued.key) + repr(issued.key)


def test_revoke_disables_and_deletes_on_the_platform_at_once(owner, account, emulator,
                                                             django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(actor=owner, key=issued.key, reason="leaked in a CI log")
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.state == "revoked" and key.revoked_by == owner and key.revoke_reason == "leaked in a CI log"
    assert _remote(emulator, key) is None and not key_works(emulator, issued.secret)
    assert _job(key).state == "done"
    calls = emulator.call_counts
    assert calls["PATCH /v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"] >= 1
    assert calls["DELETE /v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"] == 1


def test_revoke_sync_is_idempotent_when_the_key_is_already_gone(owner, account, emulator, platform):
    issued = make_api_key(owner, account)
    platform.delete_api_key(account.remote_id, ApiKey.objects.get(pk=issued.key.pk).remote_key_id)
    services.api_key_revoke(actor=owner, key=issued.key, reason="gone")
    SyncJob.objects.filter(kind="api_key").update(next_attempt_at=SyncJob.objects.first().created_at)
    drain()
    assert _job(issued.key).state == "done"


def test_revoked_key_can_never_be_re_enabled(owner, account):
    key = make_api_key(owner, account).key
    services.api_key_revoke(actor=owner, key=key, reason="done")
    with pytest.raises(ValidationError, match="already revoked"):
        services.api_key_revoke(actor=owner, key=key, reason="again")
    with pytest.raises(ValidationError, match="can never be re-enabled"):
        services.api_key_update(actor=owner, key=key, name="back")
    with pytest.raises(ValidationError, match="can never be re-enabled"):
        services.api_key_rotate(actor=owner, key=key)
    # Not even a raw write brings it back: the database refuses.
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(state="active")
    assert ApiKey.objects.get(pk=key.pk).state == "revoked"


def test_update_patches_the_platform(owner, account, emulator, django_capture_on_commit_callbacks):
    key = make_api_key(owner, account).key
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(actor=owner, key=key, name="renamed", scopes=["convai_read"], credit_quota=None,
                                allowed_ips=["198.51.100.0/24"])
    remote = emulator._keys[ApiKey.objects.get(pk=key.pk).remote_key_id]
    assert remote["name"].startswith("renamed [keyward:")
    assert remote["permissions"] == ["convai_read"] and remote["character_limit"] is None
    assert remote["allowed_ips"] == ["198.51.100.0/24"]
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.changes["credit_quota"] == [1000, None] and event.changes["name"] == ["billing", "renamed"]


def test_key_deleted_behind_keywards_back_is_revoked_with_an_alert(owner, account, platform, clock):
    from project.alerts.models import Alert

    key = make_api_key(owner, account).key
    platform.delete_api_key(account.remote_id, ApiKey.objects.get(pk=key.pk).remote_key_id)
    clock.advance(seconds=61)
    drain()  # the deferred check after issuing finds it gone
    key.refresh_from_db()
    assert key.state == "revoked" and "outside Keyward" in key.revoke_reason
    assert Alert.objects.get(kind="api_key_deleted_remotely").object_id == str(key.pk)


def test_a_key_missing_moments_after_its_issue_is_looked_for_again_not_revoked(owner, account, platform, clock,
                                                                              django_capture_on_commit_callbacks):
    from project.alerts.models import Alert

    key = make_api_key(owner, account).key
    platform.delete_api_key(account.remote_id, ApiKey.objects.get(pk=key.pk).remote_key_id)  # the platform lost it
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(actor=owner, key=ApiKey.objects.get(pk=key.pk), name="renamed")
    drain()
    key.refresh_from_db()
    assert key.state == "active" and not Alert.objects.filter(kind="api_key_deleted_remotely").exists()
    clock.advance(seconds=3600)
    drain()  # long past the grace: now it is gone for real
    key.refresh_from_db()
    assert key.state == "revoked" and Alert.objects.filter(kind="api_key_deleted_remotely").exists()


def test_expired_key_is_ended_by_the_sweep(owner, account, emulator, clock, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account, expires_at=clock.now + timedelta(days=1))
    assert services.api_keys_sweep()["expired"] == 0
    clock.advance(days=1, seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.api_keys_sweep()["expired"] == 1
    key = ApiKey.objects.get(pk=issued.key.pk)
    assert key.state == "expired" and not key_works(emulator, issued.secret)
    assert AuditEvent.objects.filter(action="api_key.expire", object_id=str(key.pk)).exists()


# --- retry safety of issuing ---------------------------------------------------------------------------------
def test_lost_answer_leaves_no_orphan(owner, account, emulator):
    """The platform makes the key but the answer never arrives: nothing usable stays, here or there."""

    def lose_create_answer(request):
        response = emulator.handle(request)
        if request.method == "POST" and request.url.path.endswith("/api-keys"):
            return httpx.Response(504)  # a gateway timeout after the platform did the work
        return response

    flaky = PlatformClient("http://emulator.test", EMULATOR_KEY, transport=httpx.MockTransport(lose_create_answer))
    with pytest.raises(ValidationError, match="did not issue the key"):
        make_api_key(owner, account, client=flaky)
    key = ApiKey.objects.get()
    assert key.state == "failed" and not key.digest
    assert len(_remote_tagged(emulator, key)) == 1  # the orphan the lost answer left
    drain()  # the failed key's job runs at once
    assert _remote_tagged(emulator, key) == []


def test_crash_between_create_and_answer_is_cleaned_up_after_the_grace(owner, account, emulator, clock, platform):
    """The process dies after the platform made the key: the deferred job declares the issue lost and deletes it."""
    key = issuing._issue_prepare(actor=owner, service_account=account, environment=environment(account.workspace),
                                  name="crash", scopes=["convai_read"], credit_quota=10, allowed_ips=[],
                                  expires_at=None, request_uuid=None)
    platform.create_api_key(account.remote_id, name=key.remote_name, permissions=["convai_read"])
    assert drain() == 0  # deferred: the request might still be waiting for the platform
    clock.advance(seconds=30)
    with pytest.raises(Exception, match="issue_in_progress"):
        push_api_key(_job(key), platform)  # even if run early, the young pending key is left alone
    assert ApiKey.objects.get(pk=key.pk).state == "pending"
    clock.advance(seconds=31)
    drain()
    key.refresh_from_db()
    assert key.state == "failed" and _remote_tagged(emulator, key) == []
    assert AuditEvent.objects.filter(action="api_key.issue_failed", object_id=str(key.pk)).exists()


def test_answer_arriving_after_the_issue_was_declared_lost_is_deleted(owner, account, emulator, clock, platform):
    key = issuing._issue_prepare(actor=owner, service_account=account, environment=environment(account.workspace),
                                  name="late", scopes=["convai_read"], credit_quota=10, allowed_ips=[],
                                  expires_at=None, request_uuid=None)
    clock.advance(seconds=61)
    drain()  # declared lost
    created = platform.create_api_key(account.remote_id, name=key.remote_name, permissions=["convai_read"])
    assert issuing._issue_complete(actor=owner, key_pk=key.pk, key_id=created["key_id"],
                                    secret=created["xi-api-key"], overlap=None) is None
    drain()
    assert ApiKey.objects.get(pk=key.pk).state == "failed" and _remote_tagged(emulator, key) == []


def test_platform_refusal_fails_the_key_and_says_why(owner, account, emulator):
    emulator.set_faults(fail_next=[422])
    with pytest.raises(ValidationError, match="did not issue the key"):
        make_api_key(owner, account)
    key = ApiKey.objects.get()
    assert key.state == "failed" and key.revoke_reason.startswith("issue failed")


def test_resubmitted_form_never_issues_twice(owner, account, emulator):
    import uuid

    token = uuid.uuid4()
    first = make_api_key(owner, account, request_uuid=token)
    with pytest.raises(services.AlreadyIssued) as exc:
        make_api_key(owner, account, request_uuid=token)
    assert exc.value.key.pk == first.key.pk and ApiKey.objects.count() == 1
    assert len(emulator.state_snapshot()["api_keys"]) == 1


# --- service accounts -----------------------------------------------------------------------------------------
def test_service_account_job_creates_it_on_the_platform_and_stores_its_id(workspace, platform, emulator):
    sa = make_service_account(workspace, "robot")
    drain()
    sa.refresh_from_db()
    assert sa.remote_id and [a["name"] for a in emulator.state_snapshot()["service_accounts"]] == [
        f"robot [keyward:sa-{sa.pk}]"]


def test_service_account_lost_create_is_found_not_duplicated(workspace, platform, emulator):
    sa = make_service_account(workspace, "robot")
    made = platform.create_service_account(name=workspace_services.service_account_remote_name(sa))
    SyncJob.objects.filter(kind="service_account").update(attempts=1)  # as if an earlier attempt had run
    drain()
    sa.refresh_from_db()
    assert sa.remote_id == made and len(emulator.state_snapshot()["service_accounts"]) == 1


def test_disabling_a_service_account_revokes_its_keys_in_the_same_transaction(owner, account, emulator,
                                                                               django_capture_on_commit_callbacks):
    from workspaces import services as roles

    first, second = make_api_key(owner, account), make_api_key(owner, account, "dev")
    other = make_api_key(owner, ServiceAccountFactory(workspace=account.workspace, name="other",
                                                      remote_id=account.remote_id))
    with django_capture_on_commit_callbacks(execute=True):
        roles.service_account_disable(actor=owner, service_account=account)
    states = dict(ApiKey.objects.values_list("pk", "state"))
    assert states[first.key.pk] == states[second.key.pk] == "revoked"
    assert states[other.key.pk] == "active"
    assert not key_works(emulator, first.secret) and key_works(emulator, other.secret)


def test_disable_hook_rolls_back_with_the_disable(owner, account):
    key = make_api_key(owner, account).key
    with pytest.raises(RuntimeError), transaction.atomic():
        services.api_keys_revoke_for_service_account(owner, account)
        raise RuntimeError("the disable failed later")
    assert ApiKey.objects.get(pk=key.pk).state == "active"


def test_disable_hook_needs_keys_revoke(member, outsider, owner, account):
    from django.core.exceptions import PermissionDenied

    key = make_api_key(owner, account).key
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_keys_revoke_for_service_account(actor, account)
    assert ApiKey.objects.get(pk=key.pk).state == "active"


# --- reconcile ---------------------------------------------------------------------------------------------------
def test_reconcile_reports_missing_changed_and_unknown_keys(owner, account, emulator, platform):
    kept, changed, missing = (make_api_key(owner, account).key, make_api_key(owner, account, "dev").key,
                              make_api_key(owner, account, "staging").key)
    changed, missing = ApiKey.objects.get(pk=changed.pk), ApiKey.objects.get(pk=missing.pk)
    platform.update_api_key(account.remote_id, changed.remote_key_id, character_limit=5)
    platform.delete_api_key(account.remote_id, missing.remote_key_id)
    platform.create_api_key(account.remote_id, name="made by hand", permissions="all")
    items = {(i.object_id, i.problem): i for i in reconcile_api_keys(platform)}
    assert items[(changed.pk, "differs")].fields == {"character_limit": [1000, 5]}
    assert (missing.pk, "missing_remotely") in items
    assert (None, "unknown_locally") in items
    assert not any(object_id == kept.pk for object_id, _ in items)


def test_key_the_platform_disabled_stays_disabled_and_shows_as_drift(owner, account, emulator, platform,
                                                                     django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    key = ApiKey.objects.get(pk=issued.key.pk)
    platform.update_api_key(account.remote_id, key.remote_key_id, is_enabled=False)  # e.g. found exposed publicly
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(actor=owner, key=key, name="renamed")
    assert emulator._keys[key.remote_key_id]["is_disabled"] is True and not key_works(emulator, issued.secret)
    (item,) = [i for i in reconcile_api_keys(platform) if i.object_id == key.pk]
    assert item.problem == "differs" and item.fields == {"enabled": [True, False]}


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="needs a second database connection: run with DATABASE_URL=postgres://...")
@pytest.mark.django_db(transaction=True)
def test_pending_key_and_its_job_are_committed_before_the_platform_is_called(owner, account, emulator):
    """A crash during the create call must leave a record the outbox can clean up: another connection (a worker)
    sees the pending row and its job while the platform is being asked."""
    import psycopg

    db = connection.settings_dict
    seen = {}

    def observe(request):
        if request.method == "POST" and request.url.path.endswith("/api-keys"):
            with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"],
                                 password=db["PASSWORD"] or None) as other:
                seen["keys"] = other.execute("SELECT state FROM keys_apikey").fetchall()
                seen["jobs"] = other.execute(
                    "SELECT state, next_attempt_at > now() FROM sync_syncjob WHERE kind = 'api_key'").fetchall()
        return emulator.handle(request)

    client = PlatformClient("http://emulator.test", EMULATOR_KEY, transport=httpx.MockTransport(observe))
    issued = make_api_key(owner, account, client=client)
    assert seen == {"keys": [("pending",)], "jobs": [("pending", True)]}  # committed, and deferred by the grace
    assert ApiKey.objects.get(pk=issued.key.pk).state == "active"


@pytest.mark.parametrize("listed_as", ["null", "list"])
def test_all_permissions_listed_either_way_and_reordered_lists_are_not_drift(owner, account, emulator, platform,
                                                                               listed_as):
    emulator.all_permissions_listed_as = listed_as
    everything = ApiKey.objects.get(pk=make_api_key(owner, account, scopes="all").key.pk)
    some = ApiKey.objects.get(pk=make_api_key(owner, account, "dev", scopes=["convai_read", "workspace_read"]).key.pk)
    emulator._keys[some.remote_key_id]["permissions"] = ["workspace_read", "convai_read"]  # the platform's order
    assert not [i for i in reconcile_api_keys(platform) if i.object_id in (everything.pk, some.pk)]
    emulator._keys[some.remote_key_id]["permissions"] = ["workspace_read"]
    (item,) = [i for i in reconcile_api_keys(platform) if i.object_id == some.pk]
    assert set(item.fields) == {"permissions"}
