"""Issuing, changing and revoking broker keys: the services' rules and the admin pages."""

import hashlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from broker import services
from broker.models import BrokerKey, BrokerKeyUsage
from project.audit.models import AuditEvent
from tests.conftest import login
from tests.factories import ServiceAccountFactory, make_agent, make_person

pytestmark = pytest.mark.django_db

ADD = "/admin/broker/brokerkey/add/"
LIST = "/admin/broker/brokerkey/"


def _post_fields(key_fields: dict, nonce: str = "nonce-1") -> dict:
    return {"workspace": key_fields["workspace"].pk, "service_account": key_fields["service_account"].pk,
            "environment": key_fields["environment"].pk, "name": "from the admin",
            "agents": [a.pk for a in key_fields["agents"]], "allowed_networks": "203.0.113.0/24\n2001:DB8::/32",
            "rate_limit_per_minute": 120, "session_quota": 5000, "quota_period": "month", "issue_nonce": nonce}


# --- services ---------------------------------------------------------------------------------------------
def test_issue_stores_only_a_digest_and_a_hint(issued):
    row = BrokerKey.objects.filter(pk=issued.key.pk).values().get()
    assert issued.secret not in str(row)
    assert row["digest"] == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert issued.secret not in repr(issued) and issued.secret not in str(issued.key)
    event = AuditEvent.objects.get(action="broker_key.issue")
    assert issued.secret not in str(event.changes) and row["digest"] not in str(event.changes)
    assert event.changes["service_account"] == "web-backend"
    assert BrokerKeyUsage.objects.filter(pk=issued.key.pk).exists()


def test_issuing_needs_keys_issue_in_the_workspace(member, outsider, viewer, key_fields):
    for person in (member, outsider, viewer):
        with pytest.raises(PermissionDenied):
            services.broker_key_issue(actor=person, **key_fields)
    assert not BrokerKey.objects.exists()


def test_issue_refuses_agents_of_another_workspace_or_not_signed(owner, key_fields, other_workspace, workspace,
                                                                 platform):
    foreign = make_agent(other_workspace, "Theirs", synced=True)
    web = make_agent(workspace, "Web", synced=True, auth_mode="allowlist", allowlist=["app.example.com"])
    for agents, message in (([foreign], "Not agents of this workspace"), ([web], "signed-URL agents only"),
                            ([], "at least one agent")):
        with pytest.raises(ValidationError, match=message):
            services.broker_key_issue(actor=owner, **{**key_fields, "agents": agents})


def test_issue_refuses_a_service_account_without_sessions_mint(owner, key_fields, workspace):
    bare = ServiceAccountFactory(workspace=workspace, name="no-role")
    with pytest.raises(ValidationError, match="sessions.mint"):
        services.broker_key_issue(actor=owner, **{**key_fields, "service_account": bare})


def test_issue_refuses_host_bits_in_the_allowlist(issue):
    with pytest.raises(ValidationError, match="host bits set"):
        issue(allowed_networks=["10.1.2.3/8"])


def test_a_reposted_issue_returns_the_issued_key_without_its_secret(issue):
    first = issue(issue_nonce="abc")
    again = issue(issue_nonce="abc")
    assert first.secret and again.secret == "" and again.key.pk == first.key.pk
    assert BrokerKey.objects.count() == 1


def test_revoking_needs_keys_revoke_and_is_final(issued, member, owner):
    with pytest.raises(PermissionDenied):
        services.broker_key_revoke(actor=member, key=issued.key)
    services.broker_key_revoke(actor=owner, key=issued.key, reason="leaked in a ticket")
    services.broker_key_revoke(actor=owner, key=issued.key)
    assert AuditEvent.objects.filter(action="broker_key.revoke").count() == 1
    with pytest.raises(ValidationError, match="revoked key cannot change"):
        services.broker_key_update(actor=owner, key=issued.key, name="again")


def test_update_changes_limits_and_agents_audited(issued, owner, second_agent):
    services.broker_key_update(actor=owner, key=issued.key, agents=[second_agent], session_quota=10,
                               allowed_networks=["2001:DB8::/32"])
    key = BrokerKey.objects.get(pk=issued.key.pk)
    assert list(key.agents.all()) == [second_agent] and key.allowed_networks == ["2001:db8::/32"]
    event = AuditEvent.objects.get(action="broker_key.update")
    assert event.changes["agents"] == [["Support"], ["Sales"]] and event.changes["session_quota"] == [1000, 10]


# --- admin ------------------------------------------------------------------------------------------------
def test_issue_page_shows_the_key_once_and_never_on_reload(owner, key_fields):
    client = login(owner)
    page = client.get(ADD)
    assert page.status_code == 200 and 'name="issue_nonce"' in page.content.decode()
    response = client.post(ADD, _post_fields(key_fields))
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = BrokerKey.objects.get()
    secret = html.split('id="issued-key"')[1].split(">")[1].split("<")[0]
    assert secret.startswith("kw_prod_") and hashlib.sha256(secret.encode()).hexdigest() == key.digest
    assert key.allowed_networks == ["203.0.113.0/24", "2001:db8::/32"] and key.quota_period == "month"
    reloaded = client.post(ADD, _post_fields(key_fields))
    assert secret not in reloaded.content.decode() and "already submitted" in reloaded.content.decode()
    assert BrokerKey.objects.count() == 1
    for path in (LIST, f"{LIST}{key.pk}/change/"):
        assert secret not in client.get(path).content.decode()


def test_issue_page_refuses_people_without_keys_issue(member, key_fields):
    client = login(member)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, _post_fields(key_fields)).status_code == 403
    assert not BrokerKey.objects.exists()


def test_outsider_gets_404_on_a_key_and_sees_none_listed(issued, outsider):
    client = login(outsider)
    assert client.get(f"{LIST}{issued.key.pk}/change/").status_code == 404
    assert issued.key.name not in client.get(LIST).content.decode()


def test_member_sees_keys_and_usage_but_cannot_change_or_revoke(issued, member, api, signed_agent):
    api.session(signed_agent.remote_id, issued.secret)
    client = login(member)
    listing = client.get(LIST).content.decode()
    assert issued.key.hint in listing and "1 / 1000 per day (UTC)" in listing
    assert "revoke_keys" not in listing
    response = client.post(f"{LIST}{issued.key.pk}/change/", {"name": "renamed"})
    assert response.status_code == 403


def test_revoke_action_revokes_only_with_keys_revoke(issued, owner, workspace):
    lead = make_person("lead", "Team lead", workspace)  # keys.issue, not keys.revoke
    data = {"action": "revoke_keys", "_selected_action": [issued.key.pk]}
    login(lead).post(LIST, data)
    assert BrokerKey.objects.get(pk=issued.key.pk).revoked_at is None
    login(owner).post(LIST, data)
    assert BrokerKey.objects.get(pk=issued.key.pk).revoked_at is not None
    page = login(owner).get(f"{LIST}{issued.key.pk}/change/").content.decode()
    assert "revoked" in page and 'name="name"' not in page  # read-only now


def test_change_page_updates_through_the_service(issued, owner, second_agent, signed_agent):
    response = login(owner).post(f"{LIST}{issued.key.pk}/change/", {
        "name": "renamed", "agents": [signed_agent.pk, second_agent.pk], "allowed_networks": "",
        "rate_limit_per_minute": 30, "session_quota": 50, "quota_period": "day", "expires_at": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    key = BrokerKey.objects.get(pk=issued.key.pk)
    assert key.name == "renamed" and key.agents.count() == 2 and key.rate_limit_per_minute == 30
    assert AuditEvent.objects.filter(action="broker_key.update").exists()


def test_key_list_queries_do_not_grow_with_rows(issue, owner, workspace):
    client = login(owner)
    issue(name="one")
    with CaptureQueriesContext(connection) as few:
        assert client.get(LIST).status_code == 200
    for n in range(15):
        issue(name=f"key {n}")
    with CaptureQueriesContext(connection) as many:
        assert client.get(LIST).status_code == 200
    assert len(many) == len(few)
