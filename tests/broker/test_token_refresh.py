"""Fresh tokens in the middle of a conversation: the token-refresh tool added to an agent through the outbox, the
whole loop through the emulator, and every refusal of the endpoint."""

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.utils import timezone

from agents import webhook
from broker import services
from broker.models import BrokerSession, RefreshTool
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from secrets_app.models import UserCredential
from tests.conftest import login
from tests.factories import make_agent, make_oauth_provider, make_vault_credential

pytestmark = pytest.mark.django_db

CALENDAR = "https://calendar.example.test/events"
ADD_URL = "/admin/broker/refreshtool/add-to-agent/"


class Outbound(httpx.BaseTransport):
    """Where the emulator's calls go: Keyward's URLs to this Django (its whole request stack, through the test
    client's handler, which keeps the test's database connection), the team's own tool (a calendar API) to a
    recorder."""

    def __init__(self) -> None:
        self.keyward = Client()
        self.calendar_calls: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "calendar.example.test":
            self.calendar_calls.append(request)
            return httpx.Response(200, json={"events": []})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length",
                                                                                  "content-type")}
        response = self.keyward.generic(request.method, request.url.raw_path.decode(), data=request.content,
                                        content_type=request.headers.get("content-type", ""), headers=headers)
        return httpx.Response(response.status_code, headers=dict(response.items()), content=response.content)


@pytest.fixture
def outbound(emulator) -> Outbound:
    transport = Outbound()
    emulator.outbound = transport
    return transport


@pytest.fixture
def calendar_tool(webhook_agent, platform) -> str:
    """The team's own tool, built on the platform: it reads the user's Google token from a secret__ variable."""
    config = {"type": "webhook", "name": "list_events", "description": "List the user's events",
              "api_schema": {"url": CALENDAR, "method": "GET",
                             "request_headers": {"Authorization": "Bearer {{secret__user_google_token}}"}}}
    tool_id = platform.create_tool(tool_config=config)["id"]
    remote = platform.get_agent(webhook_agent.remote_id)
    conversation_config = remote["conversation_config"]
    conversation_config.setdefault("agent", {}).setdefault("prompt", {})["tool_ids"] = [tool_id]
    platform.update_agent(webhook_agent.remote_id, conversation_config=conversation_config)
    return tool_id


def _add(owner, agent, provider, capture) -> RefreshTool:
    with capture(execute=True):
        tool = services.refresh_tool_add(actor=owner, agent=agent, provider=provider)
    tool.refresh_from_db()
    return tool


@pytest.fixture
def refresh_tool(owner, webhook_agent, google, calendar_tool, django_capture_on_commit_callbacks) -> RefreshTool:
    return _add(owner, webhook_agent, google, django_capture_on_commit_callbacks)


def _tool_ids(emulator, agent) -> list[str]:
    return emulator._agent_tool_ids(emulator._agents[agent.remote_id])


def _body(agent, conversation_id: str, provider: str = "google") -> dict[str, Any]:
    return {"conversation_id": conversation_id, "agent_id": agent.remote_id, "provider": provider}


@pytest.fixture
def conversation(api, issued, webhook_agent, workspace, google) -> str:
    """A conversation Keyward brokered for user-42, who connected Google (a token that expires in a minute)."""
    make_vault_credential(workspace, google, "user-42", "at-first-Kp3", expires_in=60)
    response = api.session(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-42"})
    return response.json()["conversation_id"]


# --- the whole loop ---------------------------------------------------------------------------------------------
def test_the_whole_refresh_loop_through_the_emulator(api, issued, refresh_tool, webhook_agent, workspace, google,
                                                     token_endpoint, emulator, outbound, caplog):
    caplog.set_level(logging.DEBUG)
    make_vault_credential(workspace, google, "user-42", "at-first-Kp3", expires_in=60)
    # 1. The app backend brokers the session for its user.
    session = api.session(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-42"}).json()
    # 2. The conversation starts: the platform asks the credential webhook, which refreshes the soon-expiring token.
    started = emulator.conversation_start(webhook_agent.remote_id, conversation_id=session["conversation_id"])
    assert started["webhook_status"] == 200
    first = started["dynamic_variables"]["secret__user_google_token"]
    assert first == "fresh-google-token-0001-Zx81q"
    call = emulator.conversation_call_tool(session["conversation_id"], "list_events")
    assert call["request"]["headers"]["Authorization"] == f"Bearer {first}"
    # 3. An hour later the token expires.
    UserCredential.objects.filter(end_user_id="user-42").update(expires_at=timezone.now() - timedelta(seconds=5))
    # 4. The model calls the refresh tool; Keyward answers the fresh token, which only the variable gets.
    refreshed = emulator.conversation_call_tool(session["conversation_id"], refresh_tool.tool_name)
    assert refreshed["status"] == 200, refreshed
    assert refreshed["request"]["body"] == _body(webhook_agent, session["conversation_id"])
    assert "access_token" not in refreshed["response"]  # sanitized: the model never sees it
    second = emulator.conversation(session["conversation_id"])["dynamic_variables"]["secret__user_google_token"]
    assert second == "fresh-google-token-0002-Zx81q"
    # 5. The next tool call carries the new token.
    call = emulator.conversation_call_tool(session["conversation_id"], "list_events")
    assert call["request"]["headers"]["Authorization"] == f"Bearer {second}"
    assert [r.headers["authorization"] for r in outbound.calendar_calls] == [f"Bearer {first}", f"Bearer {second}"]
    # Audited once, without the token; the agent's tool row shows the call.
    event = AuditEvent.objects.get(action="broker.token_refresh")
    assert event.changes["end_user_id"] == "user-42" and event.changes["provider"] == "google"
    assert event.changes["conversation_id"] == session["conversation_id"]
    assert "platform (token-refresh tool)" in event.actor_label
    text = caplog.text + "".join(str(e.changes) + e.object_repr for e in AuditEvent.objects.all())
    for token in (first, second):
        assert token not in text
    refresh_tool.refresh_from_db()
    assert refresh_tool.last_call_at is not None and refresh_tool.last_failure_at is None


# --- adding and removing the tool ------------------------------------------------------------------------------
def test_adding_creates_the_tool_and_attaches_it_keeping_the_agents_tools(refresh_tool, webhook_agent, emulator,
                                                                          calendar_tool):
    assert refresh_tool.state == RefreshTool.State.ATTACHED and refresh_tool.remote_id
    assert _tool_ids(emulator, webhook_agent) == [calendar_tool, refresh_tool.remote_id]
    config = emulator._tools[refresh_tool.remote_id]["tool_config"]
    assert config["api_schema"]["url"] == "http://127.0.0.1:8000/api/v1/platform/token-refresh"
    assert config["api_schema"]["request_headers"] == {
        webhook.HEADER: {"secret_id": webhook_agent.webhook_secret_remote_id}}
    assert config["assignments"] == [{"source": "response", "dynamic_variable": "secret__user_google_token",
                                      "value_path": "access_token", "sanitize": True}]
    assert webhook.agent_secret(webhook_agent) not in str(config)
    assert AuditEvent.objects.filter(action="agent.refresh_tool_add").count() == 1


def test_adding_again_is_idempotent(refresh_tool, owner, webhook_agent, google, emulator,
                                    django_capture_on_commit_callbacks):
    again = _add(owner, webhook_agent, google, django_capture_on_commit_callbacks)
    assert again.pk == refresh_tool.pk and RefreshTool.objects.count() == 1
    assert len(emulator._tools) == 2  # the team's tool and one refresh tool
    assert _tool_ids(emulator, webhook_agent).count(refresh_tool.remote_id) == 1
    assert AuditEvent.objects.filter(action="agent.refresh_tool_add").count() == 1


def test_a_create_whose_answer_was_lost_is_found_by_name(owner, webhook_agent, google, emulator, platform,
                                                         django_capture_on_commit_callbacks):
    from project.sync.services import job_run

    tool = services.refresh_tool_add(actor=owner, agent=webhook_agent, provider=google)
    job = SyncJob.objects.get(kind="refresh_tool", object_id=str(tool.pk))
    assert job_run(job, client=platform).state == SyncJob.State.DONE
    RefreshTool.objects.filter(pk=tool.pk).update(remote_id="")  # the answer never arrived
    assert job_run(job, client=platform).state == SyncJob.State.DONE
    assert len([t for t in emulator._tools.values() if t["tool_config"]["name"] == tool.tool_name]) == 1


def test_the_tool_waits_for_the_agents_webhook_secret(owner, signed_agent, google, platform):
    from project.sync.services import job_run

    signed_agent.credential_webhook = True
    signed_agent.save(update_fields=["credential_webhook"])
    tool = services.refresh_tool_add(actor=owner, agent=signed_agent, provider=google)
    outcome = job_run(SyncJob.objects.get(kind="refresh_tool", object_id=str(tool.pk)), client=platform)
    assert outcome.state == SyncJob.State.PENDING and "waiting_for_agent" in outcome.error


def test_removing_detaches_and_deletes_the_tool(refresh_tool, owner, webhook_agent, emulator, calendar_tool,
                                                django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_tool_remove(actor=owner, tool=refresh_tool)
    assert not RefreshTool.objects.exists()
    assert _tool_ids(emulator, webhook_agent) == [calendar_tool]
    assert refresh_tool.remote_id not in emulator._tools
    assert AuditEvent.objects.filter(action="agent.refresh_tool_remove").count() == 1


def test_adding_needs_the_credential_webhook_and_agents_manage(owner, viewer, signed_agent, google):
    with pytest.raises(ValidationError, match="credential webhook on"):
        services.refresh_tool_add(actor=owner, agent=signed_agent, provider=google)
    with pytest.raises(PermissionDenied):
        services.refresh_tool_add(actor=viewer, agent=signed_agent, provider=google)
    assert not RefreshTool.objects.exists()


def test_a_provider_of_another_workspace_is_refused(owner, webhook_agent, other_workspace):
    theirs = make_oauth_provider(other_workspace, slug="google")
    with pytest.raises(ValidationError, match="another workspace"):
        services.refresh_tool_add(actor=owner, agent=webhook_agent, provider=theirs)


# --- the endpoint's refusals (each audited) ----------------------------------------------------------------------
def _refused(api, agent, body, status, code, secret=None):
    response = api.refresh(body, secret or webhook.agent_secret(agent))
    assert response.status_code == status, response.content
    assert response.json()["error"] == code and response["Cache-Control"] == "no-store"
    assert "access_token" not in response.json()
    return response


def test_a_fresh_token_is_answered_and_audited_without_it(api, webhook_agent, conversation, token_endpoint):
    response = api.refresh(_body(webhook_agent, conversation), webhook.agent_secret(webhook_agent))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert response.json()["access_token"] == "fresh-google-token-0001-Zx81q"
    assert token_endpoint.refreshes == 1  # it expired within the window, so the vault refreshed it
    assert "fresh-google-token" not in str(AuditEvent.objects.get(action="broker.token_refresh").changes)


def test_a_token_far_from_expiry_is_answered_without_a_refresh(api, webhook_agent, conversation, token_endpoint):
    UserCredential.objects.update(expires_at=timezone.now() + timedelta(hours=1))
    response = api.refresh(_body(webhook_agent, conversation), webhook.agent_secret(webhook_agent))
    assert response.json()["access_token"] == "at-first-Kp3" and token_endpoint.refreshes == 0


def test_refused_for_a_conversation_keyward_did_not_broker(api, webhook_agent, conversation):
    _refused(api, webhook_agent, _body(webhook_agent, "conv_madeup"), 404, "conversation_not_brokered")
    assert AuditEvent.objects.get(action="broker.token_refresh_refused").changes["reason"] == \
        "conversation_not_brokered"


def test_refused_for_a_conversation_that_has_ended(api, webhook_agent, conversation):
    BrokerSession.objects.update(expires_at=timezone.now() - timedelta(seconds=601))  # started, 600 s max
    _refused(api, webhook_agent, _body(webhook_agent, conversation), 409, "conversation_ended")
    assert AuditEvent.objects.filter(action="broker.token_refresh_refused").exists()


def test_refused_for_an_agent_that_does_not_match(api, webhook_agent, second_agent, conversation):
    for agent_id in (second_agent.remote_id, "", None):
        body = {**_body(webhook_agent, conversation), "agent_id": agent_id}
        _refused(api, webhook_agent, body, 403, "agent_mismatch")
    # Another agent's secret cannot reach this agent's conversation either.
    second_agent.credential_webhook = True
    second_agent.save(update_fields=["credential_webhook"])
    _refused(api, second_agent, _body(second_agent, conversation), 404, "conversation_not_brokered")
    assert AuditEvent.objects.filter(action="broker.token_refresh_refused").count() == 4


def test_refused_for_a_provider_the_user_has_not_connected(api, webhook_agent, conversation, workspace):
    make_oauth_provider(workspace, slug="slack", name="Slack")
    for provider in ("slack", "github"):
        _refused(api, webhook_agent, _body(webhook_agent, conversation, provider), 404, "provider_not_connected")
    UserCredential.objects.update(state=UserCredential.State.REVOKED)
    _refused(api, webhook_agent, _body(webhook_agent, conversation), 404, "provider_not_connected")


def test_a_failed_refresh_of_an_expired_token_is_refused_not_answered_stale(api, webhook_agent, conversation,
                                                                           token_endpoint, refresh_tool):
    UserCredential.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    token_endpoint.fail = True
    _refused(api, webhook_agent, _body(webhook_agent, conversation), 502, "refresh_failed")
    refresh_tool.refresh_from_db()
    assert refresh_tool.last_failure_at is not None and "refresh_failed" in refresh_tool.last_failure


def test_refused_for_another_workspaces_conversation(api, webhook_agent, other_workspace, owner, platform,
                                                     conversation, django_capture_on_commit_callbacks):
    from agents import services as agent_services
    from tests.factories import ServiceAccountFactory, make_broker_key

    theirs = make_agent(other_workspace, "Theirs", synced=True, auth_mode="signed")
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_credential_webhook_set(actor=SYSTEM, agent=theirs, enabled=True)
    theirs.refresh_from_db()
    backend = ServiceAccountFactory(workspace=other_workspace, role="Developer")
    key = make_broker_key(other_workspace, service_account=backend, agents=[theirs], name="theirs")
    their_conversation = api.session(theirs.remote_id, key.secret, {"end_user_id": "user-42"}).json()[
        "conversation_id"]
    # Our agent's secret, naming their conversation (and their agent or ours): refused, their user stays theirs.
    for agent_id, status in ((webhook_agent.remote_id, 404), (theirs.remote_id, 403)):
        body = {"conversation_id": their_conversation, "agent_id": agent_id, "provider": "google"}
        response = api.refresh(body, webhook.agent_secret(webhook_agent))
        assert response.status_code == status and "access_token" not in response.json()
    assert AuditEvent.objects.filter(action="broker.token_refresh_refused", workspace_id=webhook_agent.workspace_id
                                     ).count() == 2
    assert not AuditEvent.objects.filter(action="broker.token_refresh").exists()


def test_401_400_and_405(api, webhook_agent, conversation):
    for secret in ("", "kw_hook_nope", webhook.agent_secret(webhook_agent)[:-1] + "0"):
        response = api.refresh(_body(webhook_agent, conversation), secret)
        assert response.status_code == 401 and response.json()["error"] == "invalid_webhook_secret"
    response = api.refresh({"agent_id": webhook_agent.remote_id}, webhook.agent_secret(webhook_agent))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    response = api.client.get("/api/v1/platform/token-refresh")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_refused_when_the_credential_webhook_is_off(api, webhook_agent, conversation):
    from agents.models import Agent

    Agent.objects.filter(pk=webhook_agent.pk).update(credential_webhook=False)
    _refused(api, webhook_agent, _body(webhook_agent, conversation), 404, "webhook_not_enabled")


# --- the agent's page ----------------------------------------------------------------------------------------------
def test_the_agent_page_adds_shows_and_removes_the_tool(owner, webhook_agent, google, calendar_tool, emulator,
                                                        django_capture_on_commit_callbacks):
    client = login(owner)
    page = client.get(f"/admin/agents/agent/{webhook_agent.pk}/change/").content.decode()
    assert "Add the token-refresh tool" in page and "None attached." in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(ADD_URL, {"agent": webhook_agent.pk, "provider": google.pk})
    assert response.status_code == 302
    tool = RefreshTool.objects.get()
    RefreshTool.objects.update(last_call_at=timezone.now(), last_failure_at=timezone.now(),
                               last_failure="conversation_ended: This conversation has ended.")
    page = client.get(f"/admin/agents/agent/{webhook_agent.pk}/change/").content.decode()
    assert f"attached ({tool.remote_id})" in page and "conversation_ended" in page
    assert "Remove the token-refresh tool" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/broker/refreshtool/{tool.pk}/remove/")
    assert not RefreshTool.objects.exists() and tool.remote_id not in emulator._tools


def test_the_agent_page_refuses_people_without_agents_manage_and_outsiders(viewer, outsider, webhook_agent, google):
    fields = {"agent": webhook_agent.pk, "provider": google.pk}
    assert login(viewer).post(ADD_URL, fields).status_code == 403
    assert login(outsider).post(ADD_URL, fields).status_code == 404
    assert "Add the token-refresh tool" not in login(viewer).get(
        f"/admin/agents/agent/{webhook_agent.pk}/change/").content.decode()
    assert not RefreshTool.objects.exists()


def test_a_refresh_answers_in_a_fixed_number_of_queries(api, webhook_agent, conversation,
                                                        django_assert_max_num_queries):
    UserCredential.objects.update(expires_at=timezone.now() + timedelta(hours=1))
    # The agent with its workspace, the session binding, the credential, the audit event, the tool's last call.
    with django_assert_max_num_queries(5):
        response = api.refresh(_body(webhook_agent, conversation), webhook.agent_secret(webhook_agent))
    assert response.status_code == 200


# --- drift ------------------------------------------------------------------------------------------------------
def test_reconcile_reports_a_detached_or_changed_tool_and_one_left_behind(refresh_tool, webhook_agent, emulator,
                                                                         platform, calendar_tool):
    from broker.sync import reconcile_refresh_tools
    from secrets_app.sync import reconcile_tools

    assert list(reconcile_refresh_tools(platform)) == []
    assert [d for d in reconcile_tools(platform) if d.remote_id == refresh_tool.remote_id] == []
    remote = platform.get_agent(webhook_agent.remote_id)
    remote["conversation_config"]["agent"]["prompt"]["tool_ids"] = [calendar_tool]
    platform.update_agent(webhook_agent.remote_id, conversation_config=remote["conversation_config"])
    config = emulator._tools[refresh_tool.remote_id]["tool_config"]
    config["api_schema"]["url"] = "https://elsewhere.example/steal"
    (drift,) = reconcile_refresh_tools(platform)
    assert drift.problem == "differs" and drift.fields["attached"] == [True, False]
    assert drift.fields["url"][1] == "https://elsewhere.example/steal"
    RefreshTool.objects.all().delete()  # as if its agent had been deleted in Keyward
    (left,) = reconcile_refresh_tools(platform)
    assert left.problem == "unknown_locally" and left.remote_id == refresh_tool.remote_id


def test_a_provider_with_a_refresh_tool_cannot_be_deleted(refresh_tool, owner, google):
    from secrets_app.models import OAuthProvider
    from secrets_app.services import provider_delete

    with pytest.raises(ValidationError, match="token refresh"):
        provider_delete(actor=owner, provider=google)
    assert OAuthProvider.objects.filter(pk=google.pk).exists()
    assert not AuditEvent.objects.filter(action="oauth_provider.delete").exists()
