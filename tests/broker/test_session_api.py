"""The session API: what an app backend gets, and every documented refusal."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services as agent_services
from broker import auth, keyformat, limits, services
from broker.models import BrokerKeyUsage
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.factories import ServiceAccountFactory, make_agent
from workspaces.models import RoleAssignment

pytestmark = pytest.mark.django_db


def test_signed_url_session_returns_url_expiry_and_environment_uncached(api, issued, signed_agent):
    response = api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-42"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["signed_url"].startswith("wss://") and "conversation_signature=" in body["signed_url"]
    assert body["environment"] == "prod" and body["agent_id"] == signed_agent.remote_id
    assert body["conversation_id"].startswith("conv_")
    assert datetime.fromisoformat(body["expires_at"]) > timezone.now() + timedelta(minutes=14)
    assert response["Cache-Control"] == "no-store"
    assert not response.cookies


def test_conversation_token_session_by_keyward_id(api, issued, signed_agent):
    response = api.session(str(signed_agent.uuid), issued.secret, {"mode": "conversation_token"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["conversation_token"] and body["conversation_id"].startswith("conv_")
    assert "signed_url" not in body


def test_each_mint_is_audited_as_the_service_account_without_the_credential(api, issued, signed_agent, backend):
    response = api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-42"},
                           remote_addr="198.51.100.20")
    credential = response.json()["signed_url"]
    event = AuditEvent.objects.get(action="broker.session")
    assert event.actor_type == AuditEvent.ActorType.SERVICE_ACCOUNT and backend.name in event.actor_label
    assert event.ip == "198.51.100.20"
    assert event.changes["key"] == issued.key.hint and event.changes["agent"] == "Support"
    assert event.changes["environment"] == "prod" and event.changes["end_user_id"] == "user-42"
    signature = credential.split("conversation_signature=")[1].split("&")[0]
    for row in AuditEvent.objects.all():
        text = str(row.changes) + row.object_repr + row.actor_label
        assert signature not in text and issued.secret not in text


# --- 401: one body, one path ----------------------------------------------------------------------------
def _revoked(issue, owner):
    issued = issue(name="revoked")
    services.broker_key_revoke(actor=owner, key=issued.key)
    return issued.secret


def _expired(issue, owner):
    return issue(name="expired", expires_at=timezone.now() - timedelta(seconds=1)).secret


def _disabled_account(issue, owner):
    issued = issue(name="disabled")
    type(issued.key.service_account).objects.filter(pk=issued.key.service_account_id).update(is_active=False)
    return issued.secret


CASES = {
    "missing": lambda issue, owner: None,
    "malformed": lambda issue, owner: "kw_prod_not-a-key",
    "mistyped": lambda issue, owner: (lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"))(issue(name="typo").secret),
    "unknown": lambda issue, owner: keyformat.generate("prod"),
    "revoked": _revoked,
    "expired": _expired,
    "disabled service account": _disabled_account,
}


def test_every_bad_key_gets_the_same_401_body_and_headers(api, issue, owner, signed_agent):
    answers = {}
    for name, make in CASES.items():
        response = api.session(signed_agent.remote_id, make(issue, owner))
        assert response.status_code == 401, name
        headers = {k: v for k, v in response.headers.items() if k.lower() != "x-request-id"}
        answers[name] = (response.content, tuple(sorted(headers.items())))
    assert len(set(answers.values())) == 1, answers
    assert b"invalid_key" in next(iter(answers.values()))[0]
    assert not AuditEvent.objects.filter(action="broker.session").exists()


def test_unknown_revoked_and_expired_keys_take_the_same_single_lookup(issue, owner, signed_agent):
    """Timing parity by construction: one indexed query and one constant-time compare for every well-formed
    key; malformed keys stop before the database."""
    for make in (CASES["unknown"], _revoked, _expired):
        presented = make(issue, owner)
        with CaptureQueriesContext(connection) as queries:
            assert auth.broker_key_authenticate(presented) is None
        assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        assert auth.broker_key_authenticate("kw_prod_" + "x" * 49) is None
        assert auth.broker_key_authenticate(None) is None
    assert len(queries) == 0


def test_revocation_takes_effect_on_the_very_next_request(api, issued, signed_agent, owner):
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200
    services.broker_key_revoke(actor=owner, key=issued.key)
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 401


def test_disabling_the_service_account_revokes_its_keys(issued, owner, backend):
    from workspaces import services as key_services

    key_services.service_account_disable(actor=owner, service_account=backend)
    issued.key.refresh_from_db()
    assert issued.key.revoked_at is not None and issued.key.revoke_reason == "service account disabled"


def test_admin_session_cookie_is_no_substitute_for_a_key(signed_agent, superuser):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(f"/api/v1/agents/{signed_agent.remote_id}/session", data="{}",
                           content_type="application/json")
    assert response.status_code == 401


# --- 403 / 404 / 409 --------------------------------------------------------------------------------------
def test_403_for_an_agent_the_key_is_not_for(api, issued, second_agent):
    response = api.session(second_agent.remote_id, issued.secret)
    assert response.status_code == 403 and response.json()["error"] == "agent_not_allowed"


def test_403_from_an_address_outside_the_allowlist_raises_one_alert(api, issue, signed_agent):
    issued = issue(allowed_networks=["203.0.113.0/24", "2001:db8::/32"])
    assert api.session(signed_agent.remote_id, issued.secret, remote_addr="203.0.113.5").status_code == 200
    assert api.session(signed_agent.remote_id, issued.secret, remote_addr="2001:db8::9").status_code == 200
    for _ in range(2):
        response = api.session(signed_agent.remote_id, issued.secret, remote_addr="198.51.100.7")
        assert response.status_code == 403 and response.json()["error"] == "address_not_allowed"
    alert = Alert.objects.get(kind="broker_key_foreign_address")
    assert alert.details["address"] == "198.51.100.7"
    assert BrokerKeyUsage.objects.get(pk=issued.key.pk).rate_used == 2  # refused requests spend no rate


def test_403_when_the_service_account_lost_sessions_mint(api, issued, signed_agent, backend):
    RoleAssignment.objects.filter(service_account=backend).delete()
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 403 and response.json()["error"] == "not_permitted"


def test_404_for_agents_of_other_workspaces_and_unknown_ids(api, issued, other_workspace, platform):
    foreign = make_agent(other_workspace, "Theirs", synced=True, auth_mode="signed")
    for ref in (foreign.remote_id, str(foreign.uuid), "agent_doesnotexist", "not%20an%20id", "x" * 300):
        response = api.session(ref, issued.secret)
        assert response.status_code == 404, ref
        assert response.json()["error"] == "agent_not_found"


def test_409_for_an_agent_no_longer_in_signed_mode(api, issued, signed_agent):
    agent_services.agent_update(actor=SYSTEM, agent=signed_agent, auth_mode="allowlist", allowlist=["app.example.com"])
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 409 and response.json()["error"] == "agent_not_signed"


def test_409_for_an_agent_not_on_the_platform_yet(api, issue, workspace, signed_agent, platform):
    fresh = make_agent(workspace, "Fresh")  # not synced: no remote id yet
    issued = issue(agents=[signed_agent, fresh])
    response = api.session(str(fresh.uuid), issued.secret)
    assert response.status_code == 409 and response.json()["error"] == "agent_not_synced"


# --- 429 ----------------------------------------------------------------------------------------------------
def test_429_rate_limit_with_retry_after_until_the_next_minute(api, issue, signed_agent, clock):
    issued = issue(rate_limit_per_minute=3)
    statuses = [api.session(signed_agent.remote_id, issued.secret).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = api.session(signed_agent.remote_id, issued.secret)
    assert refused.json()["error"] == "rate_limited" and refused["Retry-After"] == "20"  # 40 s into the minute
    clock.advance(20)
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200


def test_429_quota_per_period_with_retry_after(api, issue, signed_agent, clock):
    issued = issue(session_quota=2, quota_period="hour")
    assert [api.session(signed_agent.remote_id, issued.secret).status_code for _ in range(3)] == [200, 200, 429]
    refused = api.session(signed_agent.remote_id, issued.secret)
    assert refused.json()["error"] == "quota_exhausted"
    assert int(refused["Retry-After"]) == 3600 - (1_900_000_000 % 3600)
    clock.advance(int(refused["Retry-After"]))
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200


def test_monthly_quota_window_ends_at_the_first_of_next_month():
    window = limits.quota_window("month", 1_900_000_000.0)  # 2030-03-17
    assert datetime.fromtimestamp(window.ends_at, tz=UTC).isoformat() == "2030-04-01T00:00:00+00:00"
    december = limits.quota_window("month", 1_923_000_000.0)  # 2030-12-08
    assert datetime.fromtimestamp(december.ends_at, tz=UTC).isoformat().startswith("2031-01-01")


def test_quota_fails_closed_when_its_store_is_down(api, issued, signed_agent, platform, emulator, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(limits, "admit", down)
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert not emulator.call_counts.get("GET /v1/convai/conversation/get-signed-url")


def test_a_failed_platform_call_gives_the_session_back(api, issued, signed_agent, emulator):
    emulator.set_faults(fail_next=[503])
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 503 and response.json()["error"] == "platform_unavailable"
    assert int(response["Retry-After"]) >= 1
    usage = BrokerKeyUsage.objects.get(pk=issued.key.pk)
    assert usage.quota_used == 0 and usage.sessions_total == 0


def test_a_platform_refusal_is_502_without_the_platform_body(api, issued, signed_agent, emulator):
    emulator.set_faults(fail_next=[401])
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 502 and response.json()["error"] == "platform_refused"


# --- 400 / 405 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[]", b"not json", b'{"mode": "video"}', b'{"enduser": "x"}',
                                 b'{"end_user_id": 42}', b'{"end_user_id": "has space"}', b"{" + b" " * 5000 + b"}"])
def test_400_for_a_bad_body(api, issued, signed_agent, raw):
    response = api.session(signed_agent.remote_id, issued.secret, raw=raw)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert not AuditEvent.objects.filter(action="broker.session").exists()


def test_405_for_anything_but_post(api, issued, signed_agent):
    response = api.client.get(f"/api/v1/agents/{signed_agent.remote_id}/session",
                              HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_a_key_cannot_be_issued_to_another_workspaces_service_account(issue, other_workspace):
    with pytest.raises(ValidationError, match="another workspace"):
        issue(service_account=ServiceAccountFactory(workspace=other_workspace, name="theirs", role="Developer"))
