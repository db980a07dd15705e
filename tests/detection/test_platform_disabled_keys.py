"""Keys the platform disabled itself (disable_reason in its key list): a critical alert and an incident each;
keys issued with an expiry the platform enforces itself (expires_at_unix)."""

from datetime import timedelta

import pytest

from detection import usage
from detection.models import Incident
from detection.platform_keys import platform_disabled_keys_check
from keys.models import ApiKey
from project.alerts.models import Alert
from tests.conftest import key_works
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


def test_a_key_the_platform_found_exposed_opens_a_critical_alert_and_an_incident(owner, account, emulator,
                                                                                  platform):
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    other = ApiKey.objects.get(pk=make_api_key(owner, account, "dev").key.pk)
    emulator.disable_key_for(key.remote_key_id, "exposed_publicly")
    result = usage.usage_watch()
    assert result["platform_alerts"] == 1 and result["platform_incidents"] == 1
    alert = Alert.objects.get(kind="api_key_disabled_by_platform")
    assert alert.severity == "critical" and alert.object_id == str(key.pk)
    assert alert.details["disable_reason"] == "exposed_publicly"
    incident = Incident.objects.get(api_key=key)
    assert incident.severity == "critical" and incident.alert == alert
    assert not Incident.objects.filter(api_key=other).exists()
    # The next pass finds the same: nothing new.
    assert platform_disabled_keys_check() == {"disabled_by_platform": 1, "alerts": 0, "incidents": 0}


def test_revoked_keys_the_platform_disabled_raise_nothing(owner, account, emulator, platform,
                                                          django_capture_on_commit_callbacks):
    from keys import services

    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    emulator.disable_key_for(key.remote_key_id, "exposed_publicly")
    services.api_key_revoke(actor=owner, key=key, reason="done")
    assert platform_disabled_keys_check()["alerts"] == 0


def test_a_key_with_an_expiry_is_issued_with_expires_at_unix_and_dies_on_the_platform(owner, account, emulator,
                                                                                     clock):
    expires = clock.now + timedelta(days=10)
    issued = make_api_key(owner, account, expires_at=expires)
    remote = emulator._keys[ApiKey.objects.get(pk=issued.key.pk).remote_key_id]
    assert remote["expires_at_unix"] == int(expires.timestamp())
    assert key_works(emulator, issued.secret)
    clock.now = clock.now + timedelta(days=11)  # Keyward down: its sweep never ran, the platform ends it anyway
    assert not key_works(emulator, issued.secret)


def test_an_expiry_beyond_the_platforms_90_days_is_not_sent_yet(owner, account, emulator, clock):
    issued = make_api_key(owner, account, expires_at=clock.now + timedelta(days=200))
    assert emulator._keys[ApiKey.objects.get(pk=issued.key.pk).remote_key_id]["expires_at_unix"] is None


def test_changing_the_expiry_sends_it_to_the_platform(owner, account, emulator, clock,
                                                      django_capture_on_commit_callbacks):
    from keys import services

    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    expires = clock.now + timedelta(days=30)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(actor=owner, key=key, expires_at=expires)
    assert emulator._keys[key.remote_key_id]["expires_at_unix"] == int(expires.timestamp())


def test_a_key_keyward_suspended_raises_nothing_unless_found_exposed(owner, account, emulator, platform,
                                                                     django_capture_on_commit_callbacks):
    from keys import services

    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_suspend(actor=owner, key=key, reason="credit guard")
    emulator.disable_key_for(key.remote_key_id, "self_disabled")  # whatever the platform lists for it
    assert platform_disabled_keys_check()["alerts"] == 0
    emulator.disable_key_for(key.remote_key_id, "exposed_publicly")
    assert platform_disabled_keys_check()["alerts"] == 1


def test_an_expiry_changed_on_the_platform_is_drift(owner, account, emulator, platform, clock):
    from keys.sync import reconcile_api_keys

    expires = clock.now + timedelta(days=10)
    key = ApiKey.objects.get(pk=make_api_key(owner, account, expires_at=expires).key.pk)
    assert not [i for i in reconcile_api_keys(platform) if i.object_id == key.pk]
    emulator._keys[key.remote_key_id]["expires_at_unix"] = None  # someone cleared it on the platform
    (item,) = [i for i in reconcile_api_keys(platform) if i.object_id == key.pk]
    assert item.fields == {"expires_at_unix": [int(expires.timestamp()), None]}
