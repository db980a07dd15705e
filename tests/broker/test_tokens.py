"""Single-use tokens for speech clients through broker keys: what an app backend gets, and every refusal of the
session API's table that applies (README, "Single-use tokens for speech clients")."""

import logging
from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError, connection
from django.utils import timezone

from broker import limits, services
from broker.models import BrokerKeyUsage
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.broker.test_session_api import CASES
from workspaces.models import RoleAssignment

pytestmark = pytest.mark.django_db

TTS = "tts_websocket"


@pytest.fixture
def speech_key(issue):
    return issue(name="speech", token_types=[TTS, "realtime_scribe"])


def test_a_token_comes_back_once_usable_uncached_and_audited_without_it(api, speech_key, emulator, backend):
    response = api.token(TTS, speech_key.secret, {"end_user_id": "user-42"}, remote_addr="198.51.100.20")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token"].startswith("sutkn_") and body["token_type"] == TTS and body["environment"] == "prod"
    assert datetime.fromisoformat(body["expires_at"]) > timezone.now() + timedelta(minutes=14)
    assert response["Cache-Control"] == "no-store" and response["Pragma"] == "no-cache"
    assert not response.cookies
    # The speech client uses it once; the platform refuses a second use.
    assert emulator.single_use_token_use(body["token"], TTS) == (True, "ok")
    assert emulator.single_use_token_use(body["token"], TTS) == (False, "token_already_used")
    event = AuditEvent.objects.get(action="broker.single_use_token")
    assert event.actor_type == AuditEvent.ActorType.SERVICE_ACCOUNT and backend.name in event.actor_label
    assert event.changes == {"key": speech_key.key.hint, "token_type": TTS, "environment": "prod",
                             "end_user_id": "user-42", "address": "198.51.100.20"}
    assert event.ip == "198.51.100.20"
    assert emulator.call_counts["POST /v1/single-use-token/{token_type}"] == 1
    usage = BrokerKeyUsage.objects.get(pk=speech_key.key.pk)
    assert usage.quota_used == 1 and usage.sessions_total == 1


def test_the_emulator_refuses_an_expired_token_and_one_of_another_type(api, speech_key, emulator):
    token = api.token(TTS, speech_key.secret).json()["token"]
    assert emulator.single_use_token_use(token, "realtime_scribe") == (False, "wrong_token_type")
    emulator.clock = lambda: 10**12
    assert emulator.single_use_token_use(token, TTS) == (False, "token_expired")
    assert emulator.single_use_token_use("sutkn_unknown", TTS) == (False, "unknown_token")


def test_no_token_value_in_logs_audit_or_database(api, speech_key, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = [api.token(t, speech_key.secret).json()["token"] for t in (TTS, "realtime_scribe")]
    text = "\n".join(str(r.changes) + r.object_repr for r in AuditEvent.objects.all()) + caplog.text
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from the schema itself
            text += repr(cursor.fetchall())
    for token in tokens:
        assert token not in text
    assert speech_key.secret not in text


# --- 401 ------------------------------------------------------------------------------------------------------
def test_every_bad_key_gets_the_session_apis_401(api, issue, owner, signed_agent):
    session_401 = api.session(signed_agent.remote_id, None)
    for name, make in CASES.items():
        response = api.token(TTS, make(issue, owner))
        assert response.status_code == 401, name
        assert response.content == session_401.content
        assert response["WWW-Authenticate"] == session_401["WWW-Authenticate"]
        assert response["Cache-Control"] == "no-store"
    assert not AuditEvent.objects.filter(action="broker.single_use_token").exists()


# --- 403 / 404 ----------------------------------------------------------------------------------------------
def test_a_key_mints_no_token_type_by_default(api, issued, emulator):
    assert issued.key.token_types == []
    response = api.token(TTS, issued.secret)
    assert response.status_code == 403 and response.json()["error"] == "token_type_not_allowed"
    assert not emulator.call_counts.get("POST /v1/single-use-token/{token_type}")


def test_403_for_a_type_the_key_was_not_given(api, speech_key):
    response = api.token("batch_scribe", speech_key.secret)
    assert response.status_code == 403 and response.json()["error"] == "token_type_not_allowed"


def test_403_from_an_address_outside_the_allowlist_with_an_alert(api, issue):
    key = issue(token_types=[TTS], allowed_networks=["203.0.113.0/24"])
    assert api.token(TTS, key.secret, remote_addr="203.0.113.9").status_code == 200
    response = api.token(TTS, key.secret, remote_addr="198.51.100.7")
    assert response.status_code == 403 and response.json()["error"] == "address_not_allowed"
    assert Alert.objects.filter(kind="broker_key_foreign_address").count() == 1


def test_403_when_the_service_account_lost_sessions_mint(api, speech_key, backend):
    RoleAssignment.objects.filter(service_account=backend).delete()
    response = api.token(TTS, speech_key.secret)
    assert response.status_code == 403 and response.json()["error"] == "not_permitted"


@pytest.mark.parametrize("token_type", ["agent", "TTS_WEBSOCKET", "convai", "x" * 200])
def test_404_for_an_unknown_token_type(api, speech_key, emulator, token_type):
    response = api.token(token_type, speech_key.secret)
    assert response.status_code == 404 and response.json()["error"] == "token_type_not_found"
    assert not emulator.call_counts.get("POST /v1/single-use-token/{token_type}")


# --- 429: the key's own limits, shared with sessions ---------------------------------------------------------
def test_429_rate_limit_counts_refused_types_and_says_when_to_retry(api, issue, clock):
    key = issue(token_types=[TTS], rate_limit_per_minute=3)
    statuses = [api.token(t, key.secret).status_code for t in (TTS, "batch_scribe", TTS, TTS)]
    assert statuses == [200, 403, 200, 429]
    refused = api.token(TTS, key.secret)
    assert refused.json()["error"] == "rate_limited" and refused["Retry-After"] == "20"
    clock.advance(20)
    assert api.token(TTS, key.secret).status_code == 200


def test_429_quota_is_shared_by_sessions_and_tokens(api, issue, signed_agent, clock):
    key = issue(token_types=[TTS], session_quota=3, quota_period="hour")
    assert api.session(signed_agent.remote_id, key.secret).status_code == 200
    assert [api.token(TTS, key.secret).status_code for _ in range(3)] == [200, 200, 429]
    refused = api.session(signed_agent.remote_id, key.secret)
    assert refused.status_code == 429 and refused.json()["error"] == "quota_exhausted"
    assert int(refused["Retry-After"]) == 3600 - (1_900_000_000 % 3600)


# --- the platform and the store ---------------------------------------------------------------------------------
def test_a_failed_mint_gives_the_quota_back(api, speech_key, emulator):
    emulator.set_faults(fail_next=[503])
    response = api.token(TTS, speech_key.secret)
    assert response.status_code == 503 and response.json()["error"] == "platform_unavailable"
    emulator.set_faults(fail_next=[401])
    response = api.token(TTS, speech_key.secret)
    assert response.status_code == 502 and response.json()["error"] == "platform_refused"
    usage = BrokerKeyUsage.objects.get(pk=speech_key.key.pk)
    assert usage.quota_used == 0 and usage.sessions_total == 0
    assert not AuditEvent.objects.filter(action="broker.single_use_token").exists()


def test_fails_closed_when_the_counters_are_down(api, speech_key, emulator, monkeypatch):
    monkeypatch.setattr(limits, "admit", lambda *a, **k: (_ for _ in ()).throw(OperationalError("down")))
    response = api.token(TTS, speech_key.secret)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert not emulator.call_counts.get("POST /v1/single-use-token/{token_type}")


# --- 400 / 405 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[]", b"not json", b'{"mode": "signed_url"}', b'{"end_user_id": 42}',
                                 b'{"end_user_id": "has space"}', b"{" + b" " * 5000 + b"}"])
def test_400_for_a_bad_body(api, speech_key, raw):
    response = api.token(TTS, speech_key.secret, raw=raw)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert response["Cache-Control"] == "no-store"


def test_405_for_anything_but_post(api, speech_key):
    response = api.client.get(f"/api/v1/tokens/{TTS}", HTTP_AUTHORIZATION=f"Bearer {speech_key.secret}")
    assert response.status_code == 405 and response["Allow"] == "POST"


# --- the key's token types ------------------------------------------------------------------------------------
def test_a_key_for_speech_tokens_only_needs_no_agent(issue, api):
    key = issue(agents=[], token_types=["batch_scribe"])
    assert api.token("batch_scribe", key.secret).status_code == 200


def test_a_key_needs_an_agent_or_a_token_type(issue):
    with pytest.raises(ValidationError, match="at least one agent"):
        issue(agents=[])


def test_unknown_token_types_are_refused_at_issue(issue):
    with pytest.raises(ValidationError) as caught:
        issue(token_types=["tts_websocket", "video"])
    assert "token_types" in caught.value.message_dict


def test_changing_the_types_is_audited_and_applies_to_the_next_request(api, speech_key, owner):
    services.broker_key_update(actor=owner, key=speech_key.key, token_types=["batch_scribe"])
    assert api.token(TTS, speech_key.secret).status_code == 403
    assert api.token("batch_scribe", speech_key.secret).status_code == 200
    event = AuditEvent.objects.filter(action="broker_key.update").latest("id")
    assert event.changes["token_types"] == [[TTS, "realtime_scribe"], ["batch_scribe"]]


# --- the admin: chosen at issue, shown on the key's page ------------------------------------------------------
def test_token_types_are_chosen_on_the_issue_page_and_shown_on_the_keys_page(owner, key_fields):
    from broker.models import BrokerKey
    from tests.broker.test_keys_admin import ADD, LIST, _post_fields
    from tests.conftest import login

    client = login(owner)
    page = client.get(ADD).content.decode()
    assert 'name="token_types"' in page and 'value="tts_websocket"' in page
    fields = {**_post_fields(key_fields), "agents": [], "token_types": ["realtime_scribe"]}
    response = client.post(ADD, fields)
    assert response.status_code == 200 and "/api/v1/tokens/" in response.content.decode()
    key = BrokerKey.objects.get()
    assert key.token_types == ["realtime_scribe"] and not key.agents.exists()
    assert "realtime_scribe" in client.get(LIST).content.decode()
    change = client.get(f"{LIST}{key.pk}/change/").content.decode()
    import re

    assert re.search(r'value="realtime_scribe"[^>]*checked', change), "the type is shown ticked on the key's page"
    assert not re.search(r'value="tts_websocket"[^>]*checked', change)


def test_the_issue_page_refuses_a_key_with_neither_agents_nor_token_types(owner, key_fields):
    from broker.models import BrokerKey
    from tests.broker.test_keys_admin import ADD, _post_fields
    from tests.conftest import login

    response = login(owner).post(ADD, {**_post_fields(key_fields), "agents": []})
    assert response.status_code == 200 and "at least one agent" in response.content.decode()
    assert not BrokerKey.objects.exists()


def test_the_change_page_sets_token_types_through_the_service(issued, owner, signed_agent):
    from broker.models import BrokerKey
    from tests.broker.test_keys_admin import LIST
    from tests.conftest import login

    response = login(owner).post(f"{LIST}{issued.key.pk}/change/", {
        "name": "web app", "agents": [signed_agent.pk], "token_types": ["tts_websocket", "batch_scribe"],
        "allowed_networks": "", "rate_limit_per_minute": 1000, "session_quota": 1000, "quota_period": "day",
        "expires_at": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert BrokerKey.objects.get(pk=issued.key.pk).token_types == ["tts_websocket", "batch_scribe"]
    assert AuditEvent.objects.filter(action="broker_key.update").latest("id").changes["token_types"] == [
        [], ["tts_websocket", "batch_scribe"]]
