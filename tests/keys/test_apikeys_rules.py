"""The rules of an API key: scopes, network allowlist, expiry, quota and budget, live-key cap, who may issue."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from keys import services
from keys.models import PLATFORM_SCOPES, ApiKey, KeyPolicy
from project.audit.models import AuditEvent
from project.networks import normalise_networks as normalise_allowed_ips
from project.platform.emulator import PERMISSION_TYPES
from project.sync.models import SyncJob
from tests.factories import environment, make_api_key
from workspaces import services as workspace_services

pytestmark = pytest.mark.django_db


def _nothing_written() -> bool:
    return (not ApiKey.objects.exists() and not SyncJob.objects.filter(kind="api_key").exists()
            and not AuditEvent.objects.filter(action__startswith="api_key").exists())


def _field_errors(exc: pytest.ExceptionInfo) -> dict:
    return {field: " ".join(e for err in errors for e in err.messages) for field, errors in
            exc.value.error_dict.items()}


def test_scope_catalogue_is_the_platforms():
    assert PLATFORM_SCOPES == PERMISSION_TYPES and len(PLATFORM_SCOPES) == 52  # the SDK's PermissionType


@pytest.mark.parametrize("raw,message", [
    ("10.0.0.0/33", "prefix length is a number from 0 to 32"),
    ("300.1.1.1", "is not an IPv4 or IPv6 address"),
    ("10.0.0.1/24", "has host bits set: write 10.0.0.0/24 for the whole range, or 10.0.0.1/32"),
    ("2001:db8::1/48", "has host bits set"),
    ("2001:db8::/129", "prefix length is a number from 0 to 128"),
    ("10.0.0.0/abc", "prefix length is a number"),
    ("0.0.0.0/0", "allows every address"),
    ("fe80::1%eth0", "scoped addresses"),
    ("example.com", "is not an IPv4 or IPv6 address"),
    ("010.0.0.1", "is not an IPv4 or IPv6 address"),
])
def test_bad_cidr_is_refused_on_the_allowlist_field(owner, account, raw, message):
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account, allowed_ips=["192.0.2.0/24", raw])
    assert message in _field_errors(exc)["allowed_ips"]
    assert _nothing_written()


def test_allowlist_is_normalised_for_v4_and_v6():
    assert normalise_allowed_ips([" 192.0.2.7 ", "2001:DB8:0:0::/32", "198.51.100.0/24", "::1"]) == [
        "192.0.2.7/32", "2001:db8::/32", "198.51.100.0/24", "::1/128"]


def test_allowlist_refuses_duplicates_after_normalising():
    with pytest.raises(ValidationError, match="listed twice"):
        normalise_allowed_ips(["192.0.2.7", "192.0.2.7/32"])


def test_allowlist_refuses_a_hundred_and_first_entry():
    with pytest.raises(ValidationError, match="At most 100"):
        normalise_allowed_ips([f"10.0.{i // 256}.{i % 256}" for i in range(101)])


def test_issued_key_keeps_the_normalised_allowlist(owner, account):
    key = make_api_key(owner, account, allowed_ips=["192.0.2.7", "2001:db8::/32"]).key
    assert ApiKey.objects.get(pk=key.pk).allowed_ips == ["192.0.2.7/32", "2001:db8::/32"]


def test_expiry_in_the_past_is_refused(owner, account):
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account, expires_at=timezone.now() - timedelta(minutes=1))
    assert "in the past" in _field_errors(exc)["expires_at"]
    assert _nothing_written()


@pytest.mark.parametrize("scopes,message", [
    (["convai_read", "convai_admin"], "Not in the platform's permission catalogue: convai_admin"),
    ([], "at least one scope"),
    ("everything", "“all” or a list"),
])
def test_scopes_outside_the_catalogue_are_refused(owner, account, scopes, message):
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account, scopes=scopes)
    assert message in _field_errors(exc)["scopes"]
    assert _nothing_written()


def test_scopes_are_kept_in_catalogue_order_without_duplicates(owner, account):
    key = make_api_key(owner, account, scopes=["workspace_read", "convai_read", "workspace_read"]).key
    assert ApiKey.objects.get(pk=key.pk).scopes == ["workspace_read", "convai_read"]


def test_budget_overflow_says_by_how_much(owner, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 10_000
    prod.save()
    make_api_key(owner, account, credit_quota=7_000)
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account, credit_quota=4_500)
    message = _field_errors(exc)["credit_quota"]
    assert "would add up to 11,500 credits, 1,500 over its budget of 10,000" in message
    assert "at most 3,000" in message
    assert ApiKey.objects.count() == 1


def test_budget_counts_only_live_keys_of_that_environment(owner, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 10_000
    prod.save()
    first = make_api_key(owner, account, credit_quota=8_000).key
    make_api_key(owner, account, "staging", credit_quota=9_000)  # another environment: no budget there
    services.api_key_revoke(actor=owner, key=first, reason="retired")
    assert make_api_key(owner, account, credit_quota=10_000).key.state == "active"


def test_key_without_quota_is_refused_where_there_is_a_budget(owner, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 10_000
    prod.save()
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account, credit_quota=None)
    assert "needs a credit quota" in _field_errors(exc)["credit_quota"]


def test_raising_a_quota_past_the_budget_is_refused_and_changes_nothing(owner, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 5_000
    prod.save()
    key = make_api_key(owner, account, credit_quota=2_000).key
    with pytest.raises(ValidationError, match="1,000 over its budget"):
        services.api_key_update(actor=owner, key=key, credit_quota=6_000)
    assert ApiKey.objects.get(pk=key.pk).credit_quota == 2_000


def test_budget_below_allocation_is_refused_with_the_gap(owner, account, workspace):
    make_api_key(owner, account, credit_quota=3_000)
    with pytest.raises(ValidationError) as exc:
        services.environment_budgets_set(actor=owner, budgets={environment(workspace).pk: 2_500})
    assert "500 more than 2,500" in " ".join(exc.value.message_dict[f"budget_{environment(workspace).pk}"])
    assert environment(workspace).credit_budget is None


def test_budget_is_refused_while_a_live_key_has_no_quota(owner, account, workspace):
    make_api_key(owner, account, credit_quota=None)
    with pytest.raises(ValidationError, match="have no quota"):
        services.environment_budgets_set(actor=owner, budgets={environment(workspace).pk: 100_000})


def test_budgets_are_set_all_or_nothing(owner, account, workspace):
    make_api_key(owner, account, credit_quota=3_000)
    budgets = {environment(workspace, "dev").pk: 1_000, environment(workspace).pk: 100}
    with pytest.raises(ValidationError):
        services.environment_budgets_set(actor=owner, budgets=budgets)
    assert environment(workspace, "dev").credit_budget is None


def test_live_key_cap_per_account_and_environment(owner, account, workspace):
    make_api_key(owner, account)
    make_api_key(owner, account)
    with pytest.raises(ValidationError) as exc:
        make_api_key(owner, account)
    assert "already has 2 live key(s) in prod" in _field_errors(exc)["service_account"]
    assert make_api_key(owner, account, "dev").key.state == "active"  # another environment has its own count


def test_live_key_cap_follows_the_workspace_policy(owner, account, workspace):
    services.key_policy_save(actor=owner, workspace=workspace, max_live_keys_per_account_per_env=1)
    make_api_key(owner, account)
    with pytest.raises(ValidationError, match="limit \\(1"):
        make_api_key(owner, account)


def test_policy_defaults_are_the_issues():
    policy = KeyPolicy()
    assert (policy.rotation_period_days, policy.max_live_keys_per_account_per_env, policy.idle_days,
            policy.default_overlap_days) == (90, 2, 30, 7)


def test_account_of_another_workspace_is_refused(owner, account, other_workspace, globex_account):
    with pytest.raises(ValidationError) as exc:
        services.api_key_issue(actor=owner, service_account=globex_account, environment=environment(account.workspace),
                               name="x", scopes=["convai_read"])
    assert "another workspace" in _field_errors(exc)["service_account"]


def test_disabled_account_gets_no_key(owner, account):
    account.is_active = False
    account.save()
    with pytest.raises(ValidationError, match="disabled"):
        make_api_key(owner, account)


def test_account_not_yet_on_the_platform_gets_a_clear_error(owner, workspace, platform):
    from tests.factories import ServiceAccountFactory

    fresh = ServiceAccountFactory(workspace=workspace, name="fresh")
    with pytest.raises(ValidationError, match="has not reached the platform yet"):
        make_api_key(owner, fresh)


def test_member_and_outsider_cannot_issue(member, outsider, account):
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            make_api_key(actor, account)
    assert _nothing_written()


def test_member_and_outsider_cannot_revoke(owner, member, outsider, account):
    key = make_api_key(owner, account).key
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_key_revoke(actor=actor, key=key, reason="no")
    assert ApiKey.objects.get(pk=key.pk).state == "active"


def test_policy_needs_workspace_manage(member, outsider, owner, workspace):
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.key_policy_save(actor=actor, workspace=workspace, rotation_period_days=30)
    policy = services.key_policy_save(actor=owner, workspace=workspace, rotation_period_days=30)
    assert policy.rotation_period_days == 30
    assert AuditEvent.objects.get(action="key_policy.create").changes["rotation_period_days"] == [None, 30]


def test_policy_values_out_of_range_are_refused(owner, workspace):
    with pytest.raises(ValidationError) as exc:
        services.key_policy_save(actor=owner, workspace=workspace, rotation_period_days=0, quiet_hours=0)
    assert {"rotation_period_days", "quiet_hours"} <= set(exc.value.message_dict)
    assert not KeyPolicy.objects.exists()


def test_budgets_need_workspace_manage(member, outsider, workspace):
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.environment_budgets_set(actor=actor, budgets={environment(workspace).pk: 10})
    assert environment(workspace).credit_budget is None


def test_member_and_outsider_cannot_change_a_key(owner, member, outsider, account, owner_client, member_client,
                                                 outsider_client):
    from django.urls import reverse

    key = make_api_key(owner, account).key
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            services.api_key_update(actor=actor, key=key, name="hijacked")
    url = reverse("admin:keys_apikey_change", args=[key.pk])
    form = {"name": "hijacked", "scopes": ["workspace_read"], "credit_quota": "1", "allowed_ips": "", "expires_at": ""}
    assert member_client.post(url, form).status_code == 403
    assert outsider_client.post(url, form).status_code == 404
    assert ApiKey.objects.get(pk=key.pk).name == "billing"


def test_putting_an_account_on_the_platform_needs_keys_issue(owner, member, outsider, workspace, platform):
    from tests.factories import ServiceAccountFactory

    fresh = ServiceAccountFactory(workspace=workspace, name="fresh")
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            workspace_services.service_account_ensure_remote(actor=actor, service_account=fresh)
    assert workspace_services.service_account_ensure_remote(actor=owner, service_account=fresh)
