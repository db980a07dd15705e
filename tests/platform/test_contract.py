"""Contract: the client's requests and the emulator's answers validate against the platform's OpenAPI.

Every exchange of a scenario that calls each client method is captured by a MockTransport wrapper,
matched to its OpenAPI operation, and validated with a Draft 2020-12 validator whose registry holds
the whole document, so ``$ref: "#/components/schemas/X"`` resolves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import project.platform
from project.platform.client import PlatformClient
from project.platform.emulator import PERMISSION_TYPES, Emulator
from project.platform.emulator.accounts import USAGE_GROUP_BY
from project.platform.errors import NotFound, ValidationFailed

SPEC_PATH = Path(project.platform.__file__).parent / "openapi.json"
SPEC_URI = "urn:keyward:platform-openapi"
ADMIN_KEY = "contract-admin-key"
BASE = "http://platform.test"

# Every operation PlatformClient calls; the scenario below must reach each one.
CLIENT_OPERATIONS = {
    ("POST", "/v1/convai/agents/create"),
    ("GET", "/v1/convai/agents/{agent_id}"),
    ("GET", "/v1/convai/agents"),
    ("PATCH", "/v1/convai/agents/{agent_id}"),
    ("DELETE", "/v1/convai/agents/{agent_id}"),
    ("GET", "/v1/convai/conversation/get-signed-url"),
    ("GET", "/v1/convai/conversation/token"),
    ("POST", "/v1/single-use-token/{token_type}"),
    ("POST", "/v1/convai/secrets"),
    ("GET", "/v1/convai/secrets"),
    ("GET", "/v1/convai/secrets/{secret_id}"),
    ("PATCH", "/v1/convai/secrets/{secret_id}"),
    ("DELETE", "/v1/convai/secrets/{secret_id}"),
    ("POST", "/v1/convai/tools"),
    ("GET", "/v1/convai/tools"),
    ("GET", "/v1/convai/tools/{tool_id}"),
    ("PATCH", "/v1/convai/tools/{tool_id}"),
    ("DELETE", "/v1/convai/tools/{tool_id}"),
    ("GET", "/v1/service-accounts"),
    ("POST", "/v1/service-accounts"),
    ("GET", "/v1/service-accounts/{service_account_user_id}/api-keys"),
    ("POST", "/v1/service-accounts/{service_account_user_id}/api-keys"),
    ("PATCH", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"),
    ("DELETE", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"),
    ("POST", "/v1/workspace/analytics/query/usage-by-product-over-time"),
    ("GET", "/v1/convai/analytics/live-count"),
    ("GET", "/v1/user/subscription"),
}

Exchange = tuple[httpx.Request, httpx.Response]


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@cache
def registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec(), default_specification=DRAFT202012))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validator(*pointer: str) -> Draft202012Validator:
    """A validator for the schema at this JSON pointer inside the OpenAPI document."""
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/" + "/".join(_escape(p) for p in pointer)}, registry=registry())


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]]:
    for template, operations in spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path} is not an operation in the platform's OpenAPI")


def json_schema_of(container: dict[str, Any]) -> Any:
    return container.get("content", {}).get("application/json", {}).get("schema")


@pytest.fixture
def exchanges() -> list[Exchange]:
    return []


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=ADMIN_KEY)


@pytest.fixture
def client(emulator: Emulator, exchanges: list[Exchange]) -> Iterator[PlatformClient]:
    def capture(request: httpx.Request) -> httpx.Response:
        response = emulator.handle(request)
        exchanges.append((request, response))
        return response

    with PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(capture)) as platform:
        yield platform


def run_scenario(client: PlatformClient, emulator: Emulator) -> None:
    """Call every client method once or more, with realistic arguments."""
    agent_id = client.create_agent(
        name="Support",
        conversation_config={"agent": {"first_message": "Hello"}, "conversation": {"max_duration_seconds": 300}},
        platform_settings={
            "auth": {"enable_auth": False, "allowlist": [{"hostname": "app.example.com"}]},
            "call_limits": {"agent_concurrency_limit": 5, "daily_limit": 1000, "bursting_enabled": False},
        },
        tags=["prod"],
        idempotency_key="c-agent-1",
    )
    client.create_agent(name="Sales", conversation_config={}, platform_settings=None)
    client.get_agent(agent_id)
    client.list_agents(search="sup")
    list(client.iter_agents(page_size=1))
    client.update_agent(
        agent_id, name="Support v2", platform_settings={"auth": {"enable_auth": True, "allowlist": []}}, tags=["a"]
    )
    client.get_signed_url(agent_id, environment="production", include_conversation_id=True)
    client.get_conversation_token(agent_id, environment="staging", participant_name="alice")
    for token_type in ("tts_websocket", "realtime_scribe", "batch_scribe"):
        client.create_single_use_token(token_type)
    emulator.set_live_count(agent_id, 2)
    client.live_count(agent_id)

    secret = client.create_secret(name="crm_token", value="s3cret", idempotency_key="c-secret-1")
    client.get_secret(secret["secret_id"])
    client.update_secret(secret["secret_id"], name="crm_token", value="s3cret-2")
    tool = client.create_tool(
        tool_config={
            "type": "webhook",
            "name": "crm_lookup",
            "description": "Look a customer up in the CRM",
            "api_schema": {
                "url": "https://crm.example.com/customers/{id}",
                "method": "GET",
                "request_headers": {"Authorization": {"secret_id": secret["secret_id"]}, "X-Team": "support"},
            },
        },
        idempotency_key="c-tool-1",
    )
    client.list_secrets()  # now with a used_by.tools entry
    client.get_tool(tool["id"])
    client.update_tool(tool["id"], tool_config={"type": "client", "name": "show_card", "description": "UI card"})
    client.create_tool(tool_config={"type": "client", "name": "other", "description": "x"})
    client.list_tools()
    client.delete_tool(tool["id"], force=True)
    client.delete_secret(secret["secret_id"])

    sa_id = client.create_service_account(name="ci-bot", idempotency_key="c-sa-1")
    key = client.create_api_key(
        sa_id,
        name="deploy",
        permissions=["convai_read", "convai_write"],
        character_limit=5000,
        allowed_ips=["10.0.0.0/8"],
        idempotency_key="c-key-1",
    )
    client.create_api_key(sa_id, name="everything", permissions="all")
    client.list_service_accounts()
    client.update_api_key(
        sa_id,
        key["key_id"],
        is_enabled=False,
        name="deploy-old",
        permissions="all",
        character_limit=None,
        allowed_ips=["192.168.1.1"],
    )
    client.update_api_key(sa_id, key["key_id"], character_limit="clear", allowed_ips="clear")
    listed = client.list_api_keys(sa_id)
    emulator.add_usage(
        [
            {
                "hashed_xi_api_key": listed[0]["hashed_xi_api_key"],
                "time_ms": 1_767_225_600_000,
                "credits": 12.5,
                "requests": 3,
            },
        ]
    )
    client.usage_by_api_key(start_ms=1_767_225_600_000, end_ms=1_767_312_000_000, interval_seconds=3600)
    client.get_subscription()
    client.list_api_keys(sa_id)
    client.delete_api_key(sa_id, key["key_id"])
    client.delete_agent(agent_id)


def test_scenario_reaches_every_client_operation(
    client: PlatformClient, emulator: Emulator, exchanges: list[Exchange]
) -> None:
    run_scenario(client, emulator)
    reached = {(request.method, operation_for(request.method, request.url.path)[0]) for request, _ in exchanges}
    assert reached == CLIENT_OPERATIONS
    assert all(response.is_success for _, response in exchanges)


def test_client_request_bodies_match_the_request_schemas(
    client: PlatformClient, emulator: Emulator, exchanges: list[Exchange]
) -> None:
    run_scenario(client, emulator)
    checked = 0
    for request, _ in exchanges:
        template, operation = operation_for(request.method, request.url.path)
        body_schema = json_schema_of(operation.get("requestBody", {}))
        if not request.content:
            continue
        assert body_schema is not None, f"{request.method} {template} sends a body the spec does not declare"
        pointer = ("paths", template, request.method.lower(), "requestBody", "content", "application/json", "schema")
        errors = [e.message for e in validator(*pointer).iter_errors(json.loads(request.content))]
        assert not errors, f"{request.method} {template}: {errors[:3]}"
        checked += 1
    assert checked >= 12


def test_emulator_success_bodies_match_the_response_schemas(
    client: PlatformClient, emulator: Emulator, exchanges: list[Exchange]
) -> None:
    run_scenario(client, emulator)
    validated: set[tuple[str, str]] = set()
    untyped: set[tuple[str, str]] = set()
    for request, response in exchanges:
        template, operation = operation_for(request.method, request.url.path)
        declared = operation["responses"]
        assert str(response.status_code) in declared, (
            f"{request.method} {template} answered {response.status_code}; the spec declares {sorted(declared)}"
        )
        schema = json_schema_of(declared[str(response.status_code)])
        if not schema:
            # The spec leaves this body untyped ({} or no content): nothing to validate against.
            assert schema in (None, {})
            untyped.add((request.method, template))
            continue
        pointer = (
            "paths",
            template,
            request.method.lower(),
            "responses",
            str(response.status_code),
            "content",
            "application/json",
            "schema",
        )
        errors = [e.message for e in validator(*pointer).iter_errors(response.json())]
        assert not errors, f"{request.method} {template}: {errors[:3]}"
        validated.add((request.method, template))
    assert untyped == {
        ("DELETE", "/v1/convai/agents/{agent_id}"),
        ("DELETE", "/v1/convai/secrets/{secret_id}"),
        ("DELETE", "/v1/convai/tools/{tool_id}"),
        ("PATCH", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"),
        ("DELETE", "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}"),
    }
    assert validated | untyped == CLIENT_OPERATIONS


def test_emulator_422_bodies_match_http_validation_error(client: PlatformClient, exchanges: list[Exchange]) -> None:
    hosts = [{"hostname": f"h{i}.example.com"} for i in range(11)]
    sa_id = client.create_service_account(name="sa")
    for invalid_call in (
        lambda: client.create_agent(name="a", conversation_config={}, platform_settings={"auth": {"allowlist": hosts}}),
        lambda: client.create_api_key(sa_id, name="k", permissions=["not_a_scope"]),
        lambda: client.create_tool(tool_config={"type": "webhook", "name": "bad name!", "description": "d"}),
        lambda: client.create_secret(name="s", value=42),  # type: ignore[arg-type]
        lambda: client.usage_by_api_key(start_ms=5, end_ms=10),
    ):
        with pytest.raises(ValidationFailed):
            invalid_call()
    with pytest.raises(NotFound):
        client.get_secret("missing")
    checker = validator("components", "schemas", "HTTPValidationError")
    bodies = [response.json() for _, response in exchanges if response.status_code == 422]
    assert len(bodies) == 5
    for body in bodies:
        checker.validate(body)
        assert body["detail"], "a 422 names at least one field"


def test_validators_reject_what_the_spec_forbids() -> None:
    # Guards the harness itself: a registry that silently resolved nothing would pass everything.
    with pytest.raises(jsonschema.ValidationError):
        validator("components", "schemas", "PostWorkspaceSecretRequest").validate(
            {"type": "old", "name": "n", "value": "v"}
        )
    with pytest.raises(jsonschema.ValidationError):
        validator("components", "schemas", "GetAgentsPageResponseModel").validate(
            {"agents": [{"agent_id": "a", "name": "n"}], "has_more": False}
        )
    with pytest.raises(jsonschema.ValidationError):
        validator("components", "schemas", "WorkspaceApiKeyResponseModel").validate(
            {
                "name": "k",
                "hint": "abcd",
                "key_id": "k1",
                "service_account_user_id": "s",
                "hashed_xi_api_key": "h",
                "permissions": "all",
            }
        )


def test_emulator_enums_match_the_spec() -> None:
    schemas = spec()["components"]["schemas"]
    # The bundled document predates the SDK's three newer permissions (tests/platform/test_permissions.py pins the
    # catalogue to the SDK): every permission it knows is in the catalogue, in the same order.
    assert [p for p in PERMISSION_TYPES if p in schemas["PermissionType"]["enum"]] == schemas["PermissionType"]["enum"]
    usage_body = schemas["Body_Get_Workspace_Usage_v1_workspace_analytics_query_usage_by_product_over_time_post"]
    assert list(USAGE_GROUP_BY) == usage_body["properties"]["group_by"]["anyOf"][0]["items"]["enum"]


def test_bundled_openapi_is_the_trimmed_platform_document() -> None:
    document = spec()
    assert document["openapi"].startswith("3.1")
    assert len(document["components"]["schemas"]) == 558
    assert {template for _, template in CLIENT_OPERATIONS} <= set(document["paths"])
