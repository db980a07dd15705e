"""Who can reach end users' vault tokens through the broker (issue 19, items 3 and 7).

3. A broker key carries vault tokens only when someone holding secrets.manage issued it with that right; a key
   without it opens sessions whose webhook answers carry no tokens (keys.issue plus roles.assign is not enough).
7. The credential webhook requires agent_id and answers a conversation once (or within a configured window of
   the session's opening); refusals are logged and audited.
"""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from agents import webhook
from broker.models import BrokerKey, BrokerSession
from project.audit.models import AuditEvent
from tests.conftest import login
from tests.factories import make_person, make_vault_credential

pytestmark = pytest.mark.django_db

VARIABLE = "secret__user_google_token"


@pytest.fixture
def team_lead(workspace):
    return make_person("lead", "Team lead", workspace)


def _conversation(api, secret, agent, end_user_id="user-42"):
    response = api.session(agent.remote_id, secret, {"end_user_id": end_user_id, "mode": "conversation_token"})
    assert response.status_code == 200, response.content
    return response.json()["conversation_id"]


def _ask(api, agent, conversation_id, **extra):
    body = {"agent_id": agent.remote_id, "conversation_id": conversation_id, **extra}
    return api.webhook(body, webhook.agent_secret(agent))


# --- 3. the vault right ----------------------------------------------------------------------------------------
def test_a_team_lead_cannot_issue_a_key_that_carries_vault_tokens(team_lead, key_fields):
    from broker.services import broker_key_issue

    with pytest.raises(ValidationError) as refused:
        broker_key_issue(actor=team_lead, carries_vault_tokens=True, **key_fields)
    assert "carries_vault_tokens" in refused.value.message_dict
    assert not BrokerKey.objects.exists()


def test_a_team_leads_key_opens_sessions_whose_answers_carry_no_tokens(api, team_lead, key_fields, webhook_agent,
                                                                       workspace, google, token_endpoint):
    from broker.services import broker_key_issue

    make_vault_credential(workspace, google, "victim", "victims-google-token-Pq55", expires_in=3600)
    issued = broker_key_issue(actor=team_lead, **key_fields)
    assert issued.key.carries_vault_tokens is False
    conversation_id = _conversation(api, issued.secret, webhook_agent, end_user_id="victim")
    response = _ask(api, webhook_agent, conversation_id)
    assert response.status_code == 200 and response.json()["dynamic_variables"] == {}
    assert "victims-google" not in response.content.decode()
    event = AuditEvent.objects.get(action="broker.webhook_answer")
    assert event.changes["withheld"] and event.changes["variables"] == []


def test_a_key_issued_with_the_right_by_a_security_admin_carries_tokens(api, security_admin, key_fields,
                                                                        webhook_agent, workspace, google,
                                                                        token_endpoint):
    from broker.services import broker_key_issue

    make_vault_credential(workspace, google, "user-42", "valid-google-token-Ab12", expires_in=3600)
    issued = broker_key_issue(actor=security_admin, carries_vault_tokens=True, **key_fields)
    response = _ask(api, webhook_agent, _conversation(api, issued.secret, webhook_agent))
    assert response.json()["dynamic_variables"] == {VARIABLE: "valid-google-token-Ab12"}


def test_only_secrets_managers_turn_the_right_on_later(team_lead, security_admin, key_fields):
    from broker.services import broker_key_issue, broker_key_update

    key = broker_key_issue(actor=team_lead, **key_fields).key
    with pytest.raises(ValidationError):
        broker_key_update(actor=team_lead, key=key, carries_vault_tokens=True)
    assert BrokerKey.objects.get().carries_vault_tokens is False
    broker_key_update(actor=security_admin, key=key, carries_vault_tokens=True)
    assert BrokerKey.objects.get().carries_vault_tokens is True
    broker_key_update(actor=team_lead, key=BrokerKey.objects.get(), carries_vault_tokens=False)  # taking it away
    assert BrokerKey.objects.get().carries_vault_tokens is False


def test_the_issue_form_refuses_the_right_to_a_team_lead_on_its_field(team_lead, workspace, backend, signed_agent):
    client = login(team_lead)
    url = reverse("admin:broker_brokerkey_add")
    page = client.get(url)
    nonce = page.context["form"].initial["issue_nonce"]
    response = client.post(url, {"workspace": workspace.pk, "service_account": backend.pk,
                                 "environment": workspace.environments.get(name="prod").pk, "name": "web",
                                 "agents": [signed_agent.pk], "rate_limit_per_minute": 60, "session_quota": 100,
                                 "quota_period": "day", "carries_vault_tokens": "on", "issue_nonce": nonce})
    assert response.status_code == 200
    assert "carries_vault_tokens" in response.context["form"].errors
    assert not BrokerKey.objects.exists()


def test_the_right_is_shown_in_the_list_and_on_the_page(owner, issue):
    key = issue(carries_vault_tokens=True).key
    client = login(owner)
    listing = client.get(reverse("admin:broker_brokerkey_changelist")).content.decode()
    assert "Carries vault tokens" in listing or "carries vault tokens" in listing.lower()
    page = client.get(reverse("admin:broker_brokerkey_change", args=[key.pk])).content.decode()
    assert 'name="carries_vault_tokens"' in page and "checked" in page.split('name="carries_vault_tokens"')[0][-200:] \
        + page.split('name="carries_vault_tokens"')[1][:200]


def test_the_upgrade_keeps_the_right_only_for_keys_whose_issuer_holds_secrets_manage(owner, team_lead, key_fields):
    from broker.services import broker_key_issue

    by_owner = broker_key_issue(actor=owner, **{**key_fields, "name": "by owner"}).key
    by_lead = broker_key_issue(actor=team_lead, **{**key_fields, "name": "by lead"}).key
    by_system = broker_key_issue(actor=owner, **{**key_fields, "name": "seeded"}).key
    BrokerKey.objects.filter(pk=by_system.pk).update(created_by=None)
    migration = importlib.import_module("broker.migrations.0007_existing_keys_vault_right")
    migration.decide(apps, None)
    carries = dict(BrokerKey.objects.values_list("pk", "carries_vault_tokens"))
    assert carries == {by_owner.pk: True, by_lead.pk: False, by_system.pk: False}


# --- 7. one answer per conversation, agent_id required --------------------------------------------------------
def test_the_webhook_requires_agent_id(api, issue, webhook_agent):
    conversation_id = _conversation(api, issue(carries_vault_tokens=True).secret, webhook_agent)
    response = api.webhook({"conversation_id": conversation_id}, webhook.agent_secret(webhook_agent))
    assert response.status_code == 400 and response.json()["error"] == "agent_id_required"
    assert AuditEvent.objects.get(action="broker.webhook_refused").changes["reason"] == "agent_id_required"


def test_a_conversation_is_answered_once(api, issue, webhook_agent, workspace, google, token_endpoint, caplog):
    make_vault_credential(workspace, google, "user-42", "valid-google-token-Ab12", expires_in=3600)
    conversation_id = _conversation(api, issue(carries_vault_tokens=True).secret, webhook_agent)
    assert _ask(api, webhook_agent, conversation_id).json()["dynamic_variables"] == {VARIABLE:
                                                                                       "valid-google-token-Ab12"}
    again = _ask(api, webhook_agent, conversation_id)
    assert again.status_code == 409 and again.json()["error"] == "already_answered"
    assert "valid-google" not in again.content.decode()
    assert AuditEvent.objects.get(action="broker.webhook_refused").changes["reason"] == "already_answered"
    assert "already_answered" in caplog.text


def test_within_the_configured_window_a_retry_is_answered_again(api, issue, webhook_agent, workspace, google,
                                                               token_endpoint, settings):
    settings.BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS = 30
    make_vault_credential(workspace, google, "user-42", "valid-google-token-Ab12", expires_in=3600)
    conversation_id = _conversation(api, issue(carries_vault_tokens=True).secret, webhook_agent)
    assert _ask(api, webhook_agent, conversation_id).status_code == 200
    assert _ask(api, webhook_agent, conversation_id).json()["dynamic_variables"] == {VARIABLE:
                                                                                       "valid-google-token-Ab12"}
    BrokerSession.objects.update(created_at=timezone.now() - timedelta(seconds=31))
    assert _ask(api, webhook_agent, conversation_id).status_code == 409


def test_the_token_refresh_tool_gives_no_token_to_a_session_of_a_key_without_the_right(
        api, team_lead, key_fields, webhook_agent, workspace, google, token_endpoint):
    from broker.services import broker_key_issue

    make_vault_credential(workspace, google, "victim", "victims-google-token-Pq55", expires_in=3600)
    issued = broker_key_issue(actor=team_lead, **key_fields)
    conversation_id = _conversation(api, issued.secret, webhook_agent, end_user_id="victim")
    response = api.refresh({"conversation_id": conversation_id, "agent_id": webhook_agent.remote_id,
                            "provider": "google"}, webhook.agent_secret(webhook_agent))
    assert response.status_code == 403 and response.json()["error"] == "key_without_vault_right"
    assert "victims-google" not in response.content.decode()
    assert AuditEvent.objects.get(action="broker.token_refresh_refused").changes["reason"] == \
        "key_without_vault_right"
