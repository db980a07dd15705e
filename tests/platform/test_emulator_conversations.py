"""The emulator's single-use speech tokens and its conversations (initiation webhook, webhook tool calls with
their headers, body and response assignments)."""

from __future__ import annotations

import json

import httpx
import pytest

from project.platform.client import PlatformClient
from project.platform.emulator import ConversationError, Emulator
from project.platform.errors import AuthenticationFailed, ValidationFailed

ADMIN_KEY = "emulator-admin-key"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=ADMIN_KEY)


@pytest.fixture
def client(emulator: Emulator) -> PlatformClient:
    return PlatformClient("http://platform.test", ADMIN_KEY, transport=httpx.MockTransport(emulator.handle))


# --- single-use tokens ------------------------------------------------------------------------------------------
def test_a_single_use_token_is_good_once(client: PlatformClient, emulator: Emulator) -> None:
    token = client.create_single_use_token("realtime_scribe")
    assert token.startswith("sutkn_")
    assert emulator.single_use_token_use(token, "realtime_scribe") == (True, "ok")
    assert emulator.single_use_token_use(token, "realtime_scribe") == (False, "token_already_used")


def test_a_single_use_token_expires_after_15_minutes(client: PlatformClient, emulator: Emulator) -> None:
    now = 1_900_000_000.0
    emulator.clock = lambda: now
    token = client.create_single_use_token("batch_scribe")
    emulator.clock = lambda: now + 15 * 60
    assert emulator.single_use_token_use(token) == (False, "token_expired")


def test_unknown_token_types_get_a_422(client: PlatformClient) -> None:
    with pytest.raises(ValidationFailed):
        client.create_single_use_token("convai")


def test_a_key_without_speech_scopes_is_refused(emulator: Emulator) -> None:
    admin = PlatformClient("http://platform.test", ADMIN_KEY, transport=httpx.MockTransport(emulator.handle))
    account = admin.create_service_account(name="bot")
    key = admin.create_api_key(account, name="agents only", permissions=["convai_read"])["xi-api-key"]
    limited = PlatformClient("http://platform.test", key, transport=httpx.MockTransport(emulator.handle))
    with pytest.raises(AuthenticationFailed):
        limited.create_single_use_token("tts_websocket")


def test_the_control_route_uses_a_token_once(client: PlatformClient, emulator: Emulator) -> None:
    token = client.create_single_use_token("tts_websocket")

    def use() -> httpx.Response:
        return emulator.handle(httpx.Request("POST", "http://platform.test/_emulator/single-use-token/use",
                                             json={"token": token, "token_type": "tts_websocket"}))

    assert use().status_code == 200
    second = use()
    assert second.status_code == 401 and json.loads(second.content)["reason"] == "token_already_used"


# --- conversations ------------------------------------------------------------------------------------------------
class Recorder(httpx.BaseTransport):
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/hook":
            return httpx.Response(200, json={"type": "conversation_initiation_client_data",
                                             "dynamic_variables": {"secret__token": "first"}})
        if request.url.path == "/refresh":
            return httpx.Response(200, json={"data": {"token": "second"}, "note": "ok"})
        return httpx.Response(200, json={"ok": True})


@pytest.fixture
def wired(client: PlatformClient, emulator: Emulator) -> tuple[str, Recorder]:
    recorder = Recorder()
    emulator.outbound = recorder
    secret = client.create_secret(name="hook", value="hook-secret-value")["secret_id"]
    refresh = client.create_tool(tool_config={
        "type": "webhook", "name": "refresh", "description": "refresh",
        "api_schema": {"url": "https://svc.test/refresh", "method": "POST",
                       "request_headers": {"X-Secret": {"secret_id": secret}},
                       "request_body_schema": {"type": "object", "properties": {
                           "conversation_id": {"type": "string", "dynamic_variable": "system__conversation_id"},
                           "kind": {"type": "string", "constant_value": "calendar"},
                           "reason": {"type": "string", "description": "why"}}}},
        "assignments": [{"source": "response", "dynamic_variable": "secret__token", "value_path": "data.token",
                         "sanitize": True}]})["id"]
    use = client.create_tool(tool_config={
        "type": "webhook", "name": "use", "description": "use",
        "api_schema": {"url": "https://svc.test/use", "method": "GET",
                       "request_headers": {"Authorization": "Bearer {{secret__token}}",
                                           "X-Var": {"variable_name": "secret__token"}}}})["id"]
    agent_id = client.create_agent(name="A", conversation_config={"agent": {"prompt": {"tool_ids": [refresh, use]}}},
                                   platform_settings={
                                       "overrides": {"enable_conversation_initiation_client_data_from_webhook": True},
                                       "workspace_overrides": {"conversation_initiation_client_data_webhook": {
                                           "url": "https://svc.test/hook",
                                           "request_headers": {"X-Secret": {"secret_id": secret}}}}})
    return agent_id, recorder


def test_a_conversation_calls_the_webhook_then_tools_with_assignments(emulator: Emulator, wired) -> None:
    agent_id, recorder = wired
    started = emulator.conversation_start(agent_id, conversation_id="conv_1")
    assert started["dynamic_variables"]["secret__token"] == "first"
    hook = recorder.requests[0]
    assert hook.headers["x-secret"] == "hook-secret-value"
    assert json.loads(hook.content) == {"agent_id": agent_id, "conversation_id": "conv_1", "caller_id": None,
                                        "called_number": None}
    call = emulator.conversation_call_tool("conv_1", "use")
    assert call["request"]["headers"] == {"Authorization": "Bearer first", "X-Var": "first"}
    refreshed = emulator.conversation_call_tool("conv_1", "refresh", {"reason": "expired"})
    assert refreshed["request"]["body"] == {"conversation_id": "conv_1", "kind": "calendar", "reason": "expired"}
    assert refreshed["response"] == {"data": {}, "note": "ok"}  # sanitized: the model does not see the token
    assert emulator.conversation_call_tool("conv_1", "use")["request"]["headers"]["Authorization"] == "Bearer second"


def test_a_tool_the_agent_lacks_or_an_ended_conversation_is_refused(emulator: Emulator, wired) -> None:
    agent_id, _ = wired
    emulator.conversation_start(agent_id, conversation_id="conv_2")
    with pytest.raises(ConversationError):
        emulator.conversation_call_tool("conv_2", "missing")
    emulator.conversation_end("conv_2")
    with pytest.raises(ConversationError):
        emulator.conversation_call_tool("conv_2", "use")


def test_assignments_must_name_a_variable_and_a_path(client: PlatformClient) -> None:
    config = {"type": "webhook", "name": "bad", "description": "bad", "api_schema": {"url": "https://svc.test/x"},
              "assignments": [{"dynamic_variable": "x"}]}
    with pytest.raises(ValidationFailed):
        client.create_tool(tool_config=config)
