"""Rotation end to end against the emulator, with time moved forward: successor issued, both valid during the
overlap, the old key revoked after the window once quiet, an alert while it is still in use; rotate now."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from keys import services
from keys.models import ApiKey
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.conftest import drain, key_works
from tests.factories import environment, make_api_key, make_platform_usage

pytestmark = pytest.mark.django_db


def _sweep(emulator):
    result = services.api_keys_sweep()
    drain()  # the revocations reach the platform
    return result


def test_rotation_story_old_key_retires_once_quiet(owner, account, emulator, clock):
    old = make_api_key(owner, account, scopes=["workspace_read", "convai_read"], credit_quota=5000,
                       allowed_ips=["127.0.0.1", "2001:db8::/32"], expires_at=clock.now + timedelta(days=365))
    clock.advance(days=80)
    new = services.api_key_rotate(actor=owner, key=old.key)
    successor, predecessor = ApiKey.objects.get(pk=new.key.pk), ApiKey.objects.get(pk=old.key.pk)
    # Same environment, scopes, quota, network limits (and expiry) as the old key; a new secret.
    same = ("environment_id", "service_account_id", "scopes", "credit_quota", "allowed_ips", "expires_at")
    assert [getattr(successor, f) for f in same] == [getattr(predecessor, f) for f in same]
    assert new.secret != old.secret and successor.predecessor_id == predecessor.pk
    assert predecessor.state == "superseded" and predecessor.overlap_until == clock.now + timedelta(days=7)
    assert key_works(emulator, old.secret) and key_works(emulator, new.secret)  # both valid in the overlap

    # The old key is still used during the overlap: that is expected, nothing happens before the window ends.
    emulator.add_usage([make_platform_usage(predecessor, clock.now + timedelta(days=2))])
    clock.advance(days=3)
    services.api_key_usage_ingest()  # the hourly task
    predecessor.refresh_from_db()
    assert predecessor.last_used_at is not None
    clock.advance(days=3, hours=23)
    assert _sweep(emulator)["revoked"] == 0 and key_works(emulator, old.secret)

    clock.advance(hours=2)  # the window has ended and the last use was days ago: quiet
    assert _sweep(emulator)["revoked"] == 1
    predecessor.refresh_from_db()
    assert predecessor.state == "revoked" and "gone quiet" in predecessor.revoke_reason
    assert not key_works(emulator, old.secret) and key_works(emulator, new.secret)
    assert not Alert.objects.filter(kind="api_key_still_in_use").exists()


def test_old_key_still_in_use_after_the_window_raises_an_alert_then_retires(owner, account, emulator, clock):
    old = make_api_key(owner, account)
    new = services.api_key_rotate(actor=owner, key=old.key, overlap=timedelta(days=3))
    clock.advance(days=3, hours=1)
    emulator.add_usage([make_platform_usage(old.secret, clock.now - timedelta(minutes=30), credits=42)])
    assert _sweep(emulator)["in_use"] == 1
    alert = Alert.objects.get(kind="api_key_still_in_use")
    assert alert.object_id == str(old.key.pk) and alert.details["quiet_hours"] == 24
    assert ApiKey.objects.get(pk=old.key.pk).state == "superseded" and key_works(emulator, old.secret)

    clock.advance(hours=6)  # still within the quiet period: one alert, not one per sweep
    assert _sweep(emulator)["in_use"] == 1 and Alert.objects.filter(kind="api_key_still_in_use").count() == 1

    clock.advance(days=1)  # no use for 24 hours: now it goes
    assert _sweep(emulator)["revoked"] == 1
    assert not key_works(emulator, old.secret) and key_works(emulator, new.secret)


def test_overlap_is_configurable_per_rotation(owner, account, clock):
    old = make_api_key(owner, account)
    services.api_key_rotate(actor=owner, key=old.key, overlap=timedelta(days=1))
    assert ApiKey.objects.get(pk=old.key.pk).overlap_until == clock.now + timedelta(days=1)
    with pytest.raises(ValidationError, match="between 0 and 90 days"):
        services.api_key_rotate(actor=owner, key=make_api_key(owner, account, "dev").key, overlap=timedelta(days=91))


def test_default_overlap_follows_the_policy(owner, account, workspace, clock):
    services.key_policy_save(actor=owner, workspace=workspace, default_overlap_days=2)
    old = make_api_key(owner, account)
    services.api_key_rotate(actor=owner, key=old.key)
    assert ApiKey.objects.get(pk=old.key.pk).overlap_until == clock.now + timedelta(days=2)


def test_overlap_waits_when_usage_cannot_be_read(owner, account, emulator, clock):
    old = make_api_key(owner, account)
    services.api_key_rotate(actor=owner, key=old.key, overlap=timedelta(days=1))
    clock.advance(days=2)
    emulator.set_faults(error_rate=1.0, error_status=503)
    assert services.api_keys_sweep()["overlaps_waiting"] == 1  # nobody can say it is quiet: it stays
    assert ApiKey.objects.get(pk=old.key.pk).state == "superseded"


def test_rotate_now_revokes_the_old_key_at_once(owner, account, emulator, django_capture_on_commit_callbacks):
    old = make_api_key(owner, account, credit_quota=700)
    with django_capture_on_commit_callbacks(execute=True):
        new = services.api_key_rotate_now(actor=owner, key=old.key)
    predecessor = ApiKey.objects.get(pk=old.key.pk)
    assert predecessor.state == "revoked" and predecessor.revoke_reason == "rotated now (exposure)"
    assert new.key.predecessor_id == predecessor.pk and new.key.credit_quota == 700
    assert not key_works(emulator, old.secret) and key_works(emulator, new.secret)


def test_rotate_now_during_an_overlap_only_revokes(owner, account, emulator, django_capture_on_commit_callbacks):
    old = make_api_key(owner, account)
    new = services.api_key_rotate(actor=owner, key=old.key)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.api_key_rotate_now(actor=owner, key=old.key) is None
    assert ApiKey.objects.get(pk=old.key.pk).state == "revoked" and ApiKey.objects.count() == 2
    assert not key_works(emulator, old.secret) and key_works(emulator, new.secret)


def test_rotate_now_keeps_the_revocation_when_the_successor_fails(owner, account, emulator,
                                                                   django_capture_on_commit_callbacks):
    old = make_api_key(owner, account)
    emulator.set_faults(fail_next=[503])
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError):
        services.api_key_rotate_now(actor=owner, key=old.key)
    assert ApiKey.objects.get(pk=old.key.pk).state == "revoked"
    # Trying again replaces the revoked key: exactly one live successor.
    retry = services.api_key_rotate_now(actor=owner, key=old.key)
    assert ApiKey.objects.filter(predecessor=old.key, state__in=ApiKey.LIVE_STATES).get().pk == retry.key.pk
    assert key_works(emulator, retry.secret)


def test_lost_rotation_answer_never_leaves_two_successors(owner, account, emulator):
    old = make_api_key(owner, account)
    emulator.set_faults(fail_next=[504])
    with pytest.raises(ValidationError, match="did not issue"):
        services.api_key_rotate(actor=owner, key=old.key)
    assert ApiKey.objects.get(pk=old.key.pk).state == "active"  # still the one in use
    new = services.api_key_rotate(actor=owner, key=old.key)
    drain()
    live = ApiKey.objects.filter(predecessor=old.key, state__in=ApiKey.LIVE_STATES)
    assert list(live.values_list("pk", flat=True)) == [new.key.pk]
    tagged = [k for k in emulator.state_snapshot()["api_keys"] if "[keyward:" in k["name"]]
    assert len(tagged) == 2  # the old key and its one successor: no orphan


def test_second_rotation_of_the_same_key_is_refused(owner, account):
    old = make_api_key(owner, account)
    services.api_key_rotate(actor=owner, key=old.key)
    with pytest.raises(ValidationError, match="Only an active key can be rotated"):
        services.api_key_rotate(actor=owner, key=old.key)


def test_rotation_respects_the_live_key_cap(owner, account):
    first, _ = make_api_key(owner, account), make_api_key(owner, account)
    with pytest.raises(ValidationError, match="already has 2 live key"):
        services.api_key_rotate(actor=owner, key=first.key)


def test_rotation_pair_counts_once_in_the_budget(owner, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 1000
    prod.save()
    old = make_api_key(owner, account, credit_quota=1000)
    assert services.api_key_rotate(actor=owner, key=old.key).key.credit_quota == 1000


def test_rotation_is_audited(owner, account):
    old = make_api_key(owner, account)
    new = services.api_key_rotate(actor=owner, key=old.key)
    supersede = AuditEvent.objects.get(action="api_key.supersede")
    assert supersede.object_id == str(old.key.pk) and supersede.changes["successor"] == new.key.pk


def test_rotation_needs_keys_issue_and_rotate_now_also_keys_revoke(owner, member, outsider, account, workspace):
    from tests.factories import make_person

    lead = make_person("lead", "Team lead", workspace)  # keys.issue without keys.revoke
    key = make_api_key(owner, account).key
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_key_rotate(actor=actor, key=key)
    for actor in (member, outsider, lead):
        with pytest.raises(PermissionDenied):
            services.api_key_rotate_now(actor=actor, key=key)
    assert ApiKey.objects.get(pk=key.pk).state == "active" and ApiKey.objects.count() == 1
