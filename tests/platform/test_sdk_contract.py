"""Contract with the official SDK (``elevenlabs`` 2.78.0, a dev dependency): the emulator must answer what the
platform's own generated client expects, so the emulator can never be friendlier than the platform.

1. Every answer the emulator gives to a call Keyward makes (PlatformClient, for every operation it uses) validates
   strictly (pydantic ``model_validate``, required fields included) against the SDK's response type for that route.
2. The SDK itself drives the emulator through every one of those operations, and each succeeds.

Skipped when the SDK is not installed (it is never a runtime dependency).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx
import pytest

from project.platform.client import PlatformClient
from project.platform.emulator import Emulator
from project.platform.errors import error_for_response, is_cost_billing_refusal

elevenlabs = pytest.importorskip("elevenlabs")
pydantic = pytest.importorskip("pydantic")

ADMIN_KEY = "sdk-contract-admin-key"
BASE = "http://platform.test"

# (method, route template) of every call Keyward makes -> the SDK's response type for it (None: the SDK types the
# answer as Any, nothing to validate). Route templates as the emulator names them.
RESPONSE_TYPES: dict[tuple[str, str], str | None] = {
    ("POST", "/v1/convai/agents/create"): "CreateAgentResponseModel",
    ("GET", "/v1/convai/agents/{agent_id}"): "GetAgentResponseModel",
    ("GET", "/v1/convai/agents"): "GetAgentsPageResponseModel",
    ("PATCH", "/v1/convai/agents/{agent_id}"): "GetAgentResponseModel",
    ("DELETE", "/v1/convai/agents/{agent_id}"): None,
    ("GET", "/v1/convai/conversation/get-signed-url"): "ConversationSignedUrlResponseModel",
    ("GET", "/v1/convai/conversation/token"): "TokenResponseModel",
    ("GET", "/v1/convai/analytics/live-count"): "GetLiveCountResponse",
    ("GET", "/v1/convai/settings"): "GetConvAiSettingsResponseModel",
    ("POST", "/v1/convai/secrets"): "PostWorkspaceSecretResponseModel",
    ("GET", "/v1/convai/secrets"): "GetWorkspaceSecretsResponseModel",
    ("GET", "/v1/convai/secrets/{secret_id}"): "ConvAiWorkspaceStoredSecretConfig",
    ("PATCH", "/v1/convai/secrets/{secret_id}"): "PostWorkspaceSecretResponseModel",
    ("DELETE", "/v1/convai/secrets/{secret_id}"): None,
    ("POST", "/v1/convai/tools"): "ToolResponseModel",
    ("GET", "/v1/convai/tools"): "ToolsResponseModel",
    ("GET", "/v1/convai/tools/{tool_id}"): "ToolResponseModel",
    ("PATCH", "/v1/convai/tools/{tool_id}"): "ToolResponseModel",
    ("DELETE", "/v1/convai/tools/{tool_id}"): None,
    ("POST", "/v1/workspace/auth-connections"): "AuthConnectionsCreateResponse",
    ("GET", "/v1/workspace/auth-connections"): "ListAuthConnectionsResponse",
    ("PATCH", "/v1/workspace/auth-connections/{auth_connection_id}"): "AuthConnectionsUpdateResponse",
    ("DELETE", "/v1/workspace/auth-connections/{auth_connection_id}"): None,
    ("GET", "/v1/service-accounts"): "WorkspaceServiceAccountListResponseModel",
    ("POST", "/v1/service-accounts"): "WorkspaceCreateServiceAccountResponseModel",
    ("GET", "/v1/service-accounts/{service_account_user_id}/api-keys"): "WorkspaceApiKeyListResponseModel",
    ("POST", "/v1/service-accounts/{service_account_user_id}/api-keys"): "WorkspaceCreateApiKeyResponseModel",
    ("PATCH", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"): None,
    ("POST", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}/disable"): None,
    ("DELETE", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"): None,
    ("POST", "/v1/workspace/analytics/query/usage-by-product-over-time"): "WorkspaceAnalyticsQueryResponseModel",
    ("POST", "/v1/workspace/analytics/usage"): "WorkspaceAnalyticsQueryResponseModel",
    ("GET", "/v1/user/subscription"): "Subscription",
}


@cache
def sdk_type(name: str) -> Any:
    """The SDK's response type called `name`, from ``elevenlabs.types`` or a resource's own ``types`` package."""
    types = importlib.import_module("elevenlabs.types")
    if hasattr(types, name):
        return getattr(types, name)
    for module in pkgutil.walk_packages(elevenlabs.__path__, "elevenlabs."):
        if module.name.endswith(".types") or ".types." in module.name:
            found = getattr(importlib.import_module(module.name), name, None)
            if found is not None:
                return found
    raise LookupError(name)


def validate(name: str, data: Any) -> None:
    """Strict: a missing required field or a wrong type fails (the SDK's own parsing is lenient on purpose)."""
    pydantic.TypeAdapter(sdk_type(name)).validate_python(data)


def _template(method: str, path: str) -> str:
    for candidate_method, template in RESPONSE_TYPES:
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if candidate_method == method and re.match(pattern, path):
            return template
    raise AssertionError(f"{method} {path} is not a call Keyward makes (add it to RESPONSE_TYPES)")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=ADMIN_KEY)


@pytest.fixture
def exchanges() -> list[tuple[httpx.Request, httpx.Response]]:
    return []


@pytest.fixture
def client(emulator: Emulator, exchanges: list[tuple[httpx.Request, httpx.Response]]) -> Iterator[PlatformClient]:
    def capture(request: httpx.Request) -> httpx.Response:
        response = emulator.handle(request)
        exchanges.append((request, response))
        return response

    with PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(capture)) as platform:
        yield platform


def keyward_scenario(client: PlatformClient, emulator: Emulator) -> None:
    """Every operation Keyward's PlatformClient uses, with the arguments Keyward sends."""
    agent_id = client.create_agent(
        name="Support", conversation_config={"agent": {"first_message": "Hello"}},
        platform_settings={"auth": {"enable_auth": True, "allowlist": []}}, tags=["keyward-x"])
    client.get_agent(agent_id)
    list(client.iter_agents(search="Supp", page_size=1))
    client.list_agents(archived=True)
    client.update_agent(agent_id, platform_settings={"auth": {"enable_auth": False,
                                                              "allowlist": [{"hostname": "app.example.com"}]}})
    client.get_signed_url_with_conversation(agent_id, environment="production")
    client.get_conversation_token(agent_id)
    client.live_count(agent_id)
    client.get_convai_settings()
    secret = client.create_secret(name="crm_token", value="v-1")
    client.get_secret(secret["secret_id"])
    client.update_secret(secret["secret_id"], name="crm_token", value="v-2")
    client.secret_id_named("crm_token")
    list(client.iter_secrets())
    tool = client.create_tool(tool_config={
        "type": "webhook", "name": "crm", "description": "CRM lookup",
        "api_schema": {"url": "https://crm.example.com/x", "method": "GET",
                       "request_headers": {"Authorization": {"secret_id": secret["secret_id"]}}}})
    client.get_tool(tool["id"])
    client.update_tool(tool["id"], tool_config={"type": "client", "name": "card", "description": "UI"})
    client.list_tools()
    client.delete_tool(tool["id"], force=True)
    client.delete_secret(secret["secret_id"])
    connection = client.create_auth_connection(body={"name": "conn", "auth_type": "bearer_auth", "provider": "crm",
                                                     "token": "t-1"})
    client.list_auth_connections()
    client.update_auth_connection(connection["id"], body={"auth_type": "bearer_auth", "token": "t-2"})
    client.delete_auth_connection(connection["id"])
    sa_id = client.create_service_account(name="ci")
    key = client.create_api_key(sa_id, name="deploy", permissions=["convai_read"], character_limit=100,
                                allowed_ips=["10.0.0.0/8"], expires_at_unix=int(emulator.clock()) + 86400)
    client.create_api_key(sa_id, name="all", permissions="all")
    client.list_service_accounts()
    listed = client.list_api_keys(sa_id)
    client.update_api_key(sa_id, key["key_id"], name="deploy-2", permissions="all", character_limit="clear",
                          allowed_ips="clear", expires_at_unix="clear")
    client.disable_api_key(sa_id, key["key_id"])
    emulator.add_usage([{"hashed_xi_api_key": listed[0]["hashed_xi_api_key"], "time_ms": 1_767_225_600_000,
                         "credits": 5, "requests": 1}])
    client.usage_by_api_key(start_ms=1_767_225_600_000, end_ms=1_767_312_000_000, interval_seconds=3600)
    emulator.usage_answer_style = "labelled"
    client.usage_by_api_key(start_ms=1_767_225_600_000, end_ms=1_767_312_000_000, interval_seconds=3600)
    emulator.billing = "cost"  # refused on usage-by-product, answered on the cost endpoint
    client.usage_by_api_key(start_ms=1_767_225_600_000, end_ms=1_767_312_000_000, interval_seconds=3600)
    client.get_subscription()
    client.delete_api_key(sa_id, key["key_id"])
    client.delete_agent(agent_id)


def test_every_answer_keyward_reads_validates_against_the_sdks_response_types(client, emulator, exchanges):
    keyward_scenario(client, emulator)
    seen: set[tuple[str, str]] = set()
    for request, response in exchanges:
        template = _template(request.method, request.url.path)
        seen.add((request.method, template))
        if not response.is_success:
            # The one refusal of the scenario: a cost-billed workspace's, which the client recognises and answers.
            error = error_for_response(response.status_code, response.headers, response.content)
            assert template.endswith("usage-by-product-over-time") and is_cost_billing_refusal(error)
            continue
        name = RESPONSE_TYPES[(request.method, template)]
        if name is not None and response.content:
            validate(name, response.json())
    assert seen == set(RESPONSE_TYPES), sorted(set(RESPONSE_TYPES) - seen)


def test_the_harness_refuses_an_agent_summary_without_the_sdks_required_fields():
    # Guards the check itself: before issue 18 the emulator's summaries lacked voice_id and updated_at_unix_secs.
    summary = {"agent_id": "a", "name": "n", "tags": [], "created_at_unix_secs": 1,
               "access_info": {"is_creator": True, "creator_name": "x", "creator_email": "e", "role": "admin"}}
    with pytest.raises(pydantic.ValidationError, match="voice_id"):
        validate("GetAgentsPageResponseModel", {"agents": [summary], "has_more": False})


@pytest.fixture
def sdk(emulator: Emulator) -> Iterator[Any]:
    http = httpx.Client(transport=httpx.MockTransport(emulator.handle), base_url=BASE)
    yield elevenlabs.ElevenLabs(api_key=ADMIN_KEY, base_url=BASE, httpx_client=http)
    http.close()


def test_the_official_sdk_drives_every_operation_keyward_uses(sdk, emulator):
    convai = sdk.conversational_ai
    created = convai.agents.create(name="Support", conversation_config={"agent": {"first_message": "Hi"}},
                                   platform_settings={"auth": {"enable_auth": True}}, tags=["keyward-x"])
    agent_id = created.agent_id
    assert convai.agents.get(agent_id).agent_id == agent_id
    page = convai.agents.list(search="Supp", page_size=10)
    assert [a.agent_id for a in page.agents] == [agent_id] and page.agents[0].voice_id
    assert convai.agents.list(archived=True).agents == []
    updated = convai.agents.update(agent_id, platform_settings={"auth": {"enable_auth": False}})
    assert updated.platform_settings is not None
    signed = convai.conversations.get_signed_url(agent_id=agent_id, include_conversation_id=True)
    assert signed.signed_url.startswith("wss://")
    assert convai.conversations.get_webrtc_token(agent_id=agent_id).conversation_id
    assert convai.analytics.live_count.get(agent_id=agent_id).count == 0
    assert convai.settings.get() is not None

    secret = convai.secrets.create(name="crm_token", value="v-1")
    assert convai.secrets.get(secret.secret_id).name == "crm_token"
    convai.secrets.update(secret.secret_id, name="crm_token", value="v-2")
    assert [s.name for s in convai.secrets.list(search="crm", page_size=10).secrets] == ["crm_token"]
    tool = convai.tools.create(request={"tool_config": {
        "type": "webhook", "name": "crm", "description": "CRM lookup",
        "api_schema": {"url": "https://crm.example.com/x", "method": "GET",
                       "request_headers": {"Authorization": {"secret_id": secret.secret_id}}}}})
    assert convai.tools.get(tool.id).id == tool.id
    assert [t.id for t in convai.tools.list().tools] == [tool.id]
    convai.tools.update(tool.id, request={"tool_config": {"type": "client", "name": "card", "description": "UI"}})
    convai.tools.delete(tool.id)
    convai.secrets.delete(secret.secret_id)

    connection = sdk.workspace.auth_connections.create(request={"name": "conn", "auth_type": "bearer_auth",
                                                                "provider": "crm", "token": "t-1"})
    assert len(sdk.workspace.auth_connections.list().auth_connections) == 1
    sdk.workspace.auth_connections.update(connection.id, request={"auth_type": "bearer_auth", "token": "t-2"})
    sdk.workspace.auth_connections.delete(connection.id)

    sa_id = sdk.service_accounts.create(name="ci").service_account_user_id
    key = sdk.service_accounts.api_keys.create(sa_id, name="deploy", permissions=["convai_read"],
                                               expires_at_unix=int(emulator.clock()) + 86400)
    listed = sdk.service_accounts.api_keys.list(sa_id).api_keys
    assert [k.key_id for k in listed] == [key.key_id] and listed[0].expires_at_unix
    assert [a.service_account_user_id for a in sdk.service_accounts.list().service_accounts] == [sa_id]
    sdk.service_accounts.api_keys.update(sa_id, key.key_id, name="deploy-2", allowed_ips="clear")
    sdk.service_accounts.api_keys.disable(sa_id, key.key_id)
    assert sdk.service_accounts.api_keys.list(sa_id).api_keys[0].is_disabled is True
    emulator.add_usage([{"hashed_xi_api_key": listed[0].hashed_xi_api_key, "time_ms": 1_767_225_600_000,
                         "credits": 5, "requests": 1}])
    usage = sdk.workspace.usage.get_usage_by_product_over_time(
        start_time=1_767_225_600_000, end_time=1_767_312_000_000, interval_seconds=3600,
        group_by=["hashed_xi_api_key"])
    assert usage.rows and "credits" in usage.column_units
    emulator.billing = "cost"
    cost = sdk.workspace.usage.get_usage(start_time=1_767_225_600_000, end_time=1_767_312_000_000,
                                         interval_seconds=86400, group_by=["hashed_xi_api_key"])
    assert cost.rows and "usd" in cost.column_units
    assert sdk.user.subscription.get().tier
    sdk.service_accounts.api_keys.delete(sa_id, key.key_id)
    convai.agents.delete(agent_id)
    assert emulator.state_snapshot()["agents"] == []
