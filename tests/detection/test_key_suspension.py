"""keys' api_key_suspend / api_key_resume (added for the credit guard): the key is disabled on the platform
through the outbox without being revoked, and enabled again on resume; both audited and permission-checked."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from keys import services
from keys.models import ApiKey
from keys.sync import _differences
from project.audit.models import AuditEvent
from tests.conftest import key_works
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


def _remote(emulator, key):
    return next(k for k in emulator.state_snapshot()["api_keys"] if k["key_id"] == key.remote_key_id)


def test_suspend_disables_the_key_on_the_platform_and_resume_enables_it(
        owner, account, emulator, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_suspend(actor=owner, key=issued.key, reason="investigating a spike")
    assert key.state == "active" and key.suspended_by == owner and key.suspend_reason == "investigating a spike"
    assert _remote(emulator, key)["is_disabled"] and not key_works(emulator, issued.secret)
    with django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_resume(actor=owner, key=key, reason="false alarm")
    assert key.suspended_at is None and not _remote(emulator, key)["is_disabled"]
    assert key_works(emulator, issued.secret)
    actions = list(AuditEvent.objects.filter(object_id=str(key.pk), action__in=["api_key.suspend", "api_key.resume"])
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["api_key.suspend", "api_key.resume"]


def test_a_later_change_keeps_a_suspended_key_disabled(owner, account, emulator,
                                                       django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_suspend(actor=owner, key=issued.key, reason="quota")
    with django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_update(actor=owner, key=issued.key, name="renamed")
    assert _remote(emulator, key)["is_disabled"] and "renamed" in _remote(emulator, key)["name"]


def test_a_plain_change_does_not_re_enable_a_key_the_platform_disabled(owner, account, emulator, platform,
                                                                       django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    key = ApiKey.objects.get(pk=issued.key.pk)
    platform.update_api_key(account.remote_id, key.remote_key_id, is_enabled=False)  # the platform's own doing
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(actor=owner, key=key, name="renamed")
    assert _remote(emulator, key)["is_disabled"]


def test_suspension_needs_keys_revoke_and_resume_keys_issue(owner, member, outsider, account):
    key = make_api_key(owner, account).key
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_key_suspend(actor=actor, key=key, reason="x")
    services.api_key_suspend(actor=owner, key=key, reason="x")
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_key_resume(actor=actor, key=key)
    assert ApiKey.objects.get(pk=key.pk).suspended_at is not None


def test_revoked_key_cannot_be_suspended_and_suspend_needs_a_reason(owner, account):
    key = make_api_key(owner, account).key
    with pytest.raises(ValidationError, match="Say why"):
        services.api_key_suspend(actor=owner, key=key, reason=" ")
    services.api_key_revoke(actor=owner, key=key, reason="leaked")
    with pytest.raises(ValidationError, match="Only an active or rotated key"):
        services.api_key_suspend(actor=owner, key=key, reason="quota")


def test_suspending_twice_changes_nothing(owner, account):
    key = make_api_key(owner, account).key
    first = services.api_key_suspend(actor=owner, key=key, reason="quota").suspended_at
    assert services.api_key_suspend(actor=owner, key=key, reason="again").suspended_at == first
    assert AuditEvent.objects.filter(action="api_key.suspend").count() == 1


def test_reconcile_expects_a_suspended_key_to_be_disabled(owner, account):
    key = services.api_key_suspend(actor=owner, key=make_api_key(owner, account).key, reason="quota")
    remote = {"name": key.remote_name, "permissions": key.scopes, "character_limit": key.credit_quota,
              "allowed_ips": [], "is_disabled": True}
    assert "enabled" not in _differences(key, remote)
    assert _differences(key, {**remote, "is_disabled": False})["enabled"] == [False, True]


def test_suspension_uses_the_platforms_disable_route(owner, account, emulator, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_suspend(actor=owner, key=issued.key, reason="credit guard")
    assert emulator.call_counts.get(
        "POST /v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}/disable") == 1
    assert _remote(emulator, key)["is_disabled"] and not key_works(emulator, issued.secret)


def test_a_platform_without_the_disable_route_gets_patch_is_enabled_false(owner, account, emulator, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    from project.platform.emulator.accounts import AccountRoutes

    # An older platform: the route does not exist (a plain 404 from the router, not api_key_not_found).
    monkeypatch.setattr(emulator, "_routes", [r for r in emulator._routes if r[5] is not AccountRoutes._key_disable])
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        key = services.api_key_suspend(actor=owner, key=issued.key, reason="credit guard")
    assert _remote(emulator, key)["is_disabled"] and not key_works(emulator, issued.secret)
