"""The emulator's copy of the platform contract, driven through PlatformClient."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from collections.abc import Iterator

import httpx
import pytest

from project.platform.client import PlatformClient
from project.platform.emulator import Emulator, hash_key
from project.platform.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    Unavailable,
    ValidationFailed,
)

ADMIN_KEY = "emulator-admin-key"
BASE = "http://platform.test"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=ADMIN_KEY, base_ws="wss://voice.test")


@pytest.fixture
def responses() -> list[httpx.Response]:
    return []


@pytest.fixture
def client(emulator: Emulator, responses: list[httpx.Response]) -> Iterator[PlatformClient]:
    def record(request: httpx.Request) -> httpx.Response:
        response = emulator.handle(request)
        responses.append(response)
        return response

    with PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(record)) as platform:
        yield platform


def client_for(emulator: Emulator, key: str, client_ip: str | None = None) -> PlatformClient:
    return PlatformClient(
        BASE, key, transport=httpx.MockTransport(lambda request: emulator.handle(request, client_ip=client_ip))
    )


def webhook(name: str, secret_id: str | None = None) -> dict:
    headers = {"Authorization": {"secret_id": secret_id}} if secret_id else {"X-Static": "1"}
    return {
        "type": "webhook",
        "name": name,
        "description": f"{name} lookup",
        "api_schema": {"url": "https://api.example.com/lookup", "method": "GET", "request_headers": headers},
    }


def hosts(count: int) -> list[dict[str, str]]:
    return [{"hostname": f"app{i}.example.com"} for i in range(count)]


# --- agents --------------------------------------------------------------------------------------


def test_agent_round_trip(client: PlatformClient) -> None:
    agent_id = client.create_agent(
        name="Support",
        conversation_config={"agent": {"first_message": "Hi"}},
        platform_settings={"auth": {"enable_auth": True}},
        tags=["prod"],
    )
    assert re.fullmatch(r"agent_[a-z0-9]{28}", agent_id)
    agent = client.get_agent(agent_id)
    assert agent["name"] == "Support"
    assert agent["tags"] == ["prod"]
    assert agent["platform_settings"]["auth"]["enable_auth"] is True
    assert agent["platform_settings"]["call_limits"]["agent_concurrency_limit"] == -1
    assert agent["conversation_config"]["conversation"]["max_duration_seconds"] == 600
    assert agent["conversation_config"]["agent"]["first_message"] == "Hi"

    updated = client.update_agent(agent_id, name="Support v2", tags=["prod", "eu"])
    assert (updated["name"], updated["tags"]) == ("Support v2", ["prod", "eu"])

    client.delete_agent(agent_id)
    with pytest.raises(NotFound):
        client.get_agent(agent_id)
    with pytest.raises(NotFound):
        client.delete_agent(agent_id)


def test_agent_list_searches_names_and_shows_tags(client: PlatformClient) -> None:
    client.create_agent(name="Billing bot", conversation_config={}, platform_settings=None, tags=["billing"])
    client.create_agent(name="Sales bot", conversation_config={}, platform_settings=None)
    page = client.list_agents(search="billing")
    assert [(a["name"], a["tags"]) for a in page["agents"]] == [("Billing bot", ["billing"])]
    assert page["has_more"] is False and page["next_cursor"] is None
    assert len(client.list_agents()["agents"]) == 2


def test_agent_list_pages_with_cursor(client: PlatformClient) -> None:
    for i in range(3):
        client.create_agent(name=f"a{i}", conversation_config={}, platform_settings=None)
    first = client.list_agents(page_size=2)
    assert len(first["agents"]) == 2 and first["has_more"] is True
    second = client.list_agents(page_size=2, cursor=first["next_cursor"])
    assert len(second["agents"]) == 1 and second["has_more"] is False
    names = [a["name"] for a in first["agents"] + second["agents"]]
    assert names == ["a2", "a1", "a0"]  # newest first, like the platform's default sort


def test_patch_deep_merges_dicts_and_replaces_lists(client: PlatformClient) -> None:
    agent_id = client.create_agent(
        name="a",
        conversation_config={},
        platform_settings={"auth": {"allowlist": hosts(3)}, "call_limits": {"daily_limit": 50}},
    )
    agent = client.update_agent(agent_id, platform_settings={"auth": {"allowlist": [{"hostname": "only.example"}]}})
    assert agent["platform_settings"]["auth"]["allowlist"] == [{"hostname": "only.example"}]
    assert agent["platform_settings"]["call_limits"]["daily_limit"] == 50
    assert agent["platform_settings"]["auth"]["enable_auth"] is False


def test_allowlist_refuses_eleventh_host(client: PlatformClient, emulator: Emulator) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.create_agent(name="a", conversation_config={}, platform_settings={"auth": {"allowlist": hosts(11)}})
    assert caught.value.status == 422
    assert emulator.state_snapshot()["agents"] == []
    agent_id = client.create_agent(
        name="a", conversation_config={}, platform_settings={"auth": {"allowlist": hosts(10)}}
    )
    with pytest.raises(ValidationFailed):
        client.update_agent(agent_id, platform_settings={"auth": {"allowlist": hosts(11)}})
    assert len(client.get_agent(agent_id)["platform_settings"]["auth"]["allowlist"]) == 10


def test_allowlist_error_body_has_the_documented_loc(emulator: Emulator) -> None:
    body = {"conversation_config": {}, "platform_settings": {"auth": {"allowlist": hosts(11)}}}
    response = emulator.handle(
        httpx.Request("POST", f"{BASE}/v1/convai/agents/create", headers={"xi-api-key": ADMIN_KEY}, json=body)
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "platform_settings", "auth", "allowlist"]


def test_platform_accepts_enable_auth_together_with_allowlist(client: PlatformClient) -> None:
    # Keyward refuses this combination; the platform itself does not, and the emulator must not either.
    agent_id = client.create_agent(
        name="a", conversation_config={}, platform_settings={"auth": {"enable_auth": True, "allowlist": hosts(2)}}
    )
    auth = client.get_agent(agent_id)["platform_settings"]["auth"]
    assert auth["enable_auth"] is True and len(auth["allowlist"]) == 2


def test_invalid_agent_body_is_422(emulator: Emulator) -> None:
    response = emulator.handle(
        httpx.Request("POST", f"{BASE}/v1/convai/agents/create", headers={"xi-api-key": ADMIN_KEY}, json={"x": 1})
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "conversation_config"]


# --- conversation credentials --------------------------------------------------------------------


def test_signed_url_and_token_for_a_known_agent(client: PlatformClient, emulator: Emulator) -> None:
    agent_id = client.create_agent(name="a", conversation_config={}, platform_settings=None)
    url = client.get_signed_url(agent_id, environment="staging")
    assert re.fullmatch(
        rf"wss://voice\.test/v1/convai/conversation\?agent_id={agent_id}&conversation_signature=[\w-]+", url
    )
    assert client.get_signed_url(agent_id) != url  # every signature is fresh
    emulator.signed_url_conversation_id = "query"
    with_id = client.get_signed_url(agent_id, include_conversation_id=True)
    assert "conversation_id=conv_" in with_id
    emulator.signed_url_conversation_id = "field"
    url, conversation_id = client.get_signed_url_with_conversation(agent_id)
    assert conversation_id.startswith("conv_") and "conversation_id" not in url
    emulator.signed_url_conversation_id = "none"
    assert client.get_signed_url_with_conversation(agent_id)[1] == ""
    token = client.get_conversation_token(agent_id, participant_name="alice")
    assert token["token"] and token["conversation_id"].startswith("conv_")


def test_signed_url_for_unknown_agent_is_agent_not_found(client: PlatformClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.get_signed_url("agent_nope")
    assert caught.value.code == "agent_not_found"
    with pytest.raises(NotFound):
        client.get_conversation_token("agent_nope")


def test_live_count_reports_what_the_test_sets(client: PlatformClient, emulator: Emulator) -> None:
    agent_id = client.create_agent(name="a", conversation_config={}, platform_settings=None)
    assert client.live_count(agent_id) == 0
    emulator.set_live_count(agent_id, 3)
    assert client.live_count(agent_id) == 3


# --- secrets and tools ---------------------------------------------------------------------------


def test_secret_round_trip_never_returns_the_value(
    client: PlatformClient, emulator: Emulator, responses: list[httpx.Response]
) -> None:
    created = client.create_secret(name="crm_token", value="v4lue-one")
    assert created["type"] == "stored" and created["name"] == "crm_token"
    secret_id = created["secret_id"]
    assert emulator.secret_value(secret_id) == "v4lue-one"

    fetched = client.get_secret(secret_id)
    assert fetched["used_by"]["tools"] == []
    assert [s["secret_id"] for s in client.list_secrets()] == [secret_id]

    client.update_secret(secret_id, name="crm_token", value="v4lue-two")
    assert emulator.secret_value(secret_id) == "v4lue-two"
    assert "v4lue" not in json.dumps(emulator.state_snapshot())

    client.delete_secret(secret_id)
    with pytest.raises(NotFound) as caught:
        client.get_secret(secret_id)
    assert caught.value.code == "secret_not_found"
    assert all(b"v4lue" not in response.content for response in responses)


def test_secret_update_requires_the_update_literal(emulator: Emulator) -> None:
    client = client_for(emulator, ADMIN_KEY)
    secret_id = client.create_secret(name="s", value="v")["secret_id"]
    response = emulator.handle(
        httpx.Request(
            "PATCH",
            f"{BASE}/v1/convai/secrets/{secret_id}",
            headers={"xi-api-key": ADMIN_KEY},
            json={"type": "new", "name": "s", "value": "w"},
        )
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "type"]
    assert emulator.secret_value(secret_id) == "v"


def test_secret_in_use_cannot_be_deleted_and_names_the_tools(client: PlatformClient) -> None:
    secret_id = client.create_secret(name="crm_token", value="v")["secret_id"]
    tool = client.create_tool(tool_config=webhook("crm_lookup", secret_id))
    client.create_tool(tool_config=webhook("crm_write", secret_id))
    used_by = client.get_secret(secret_id)["used_by"]
    assert [t["name"] for t in used_by["tools"]] == ["crm_lookup", "crm_write"]

    with pytest.raises(Conflict) as caught:
        client.delete_secret(secret_id)
    assert caught.value.status == 400
    assert caught.value.code == "secret_in_use"
    assert caught.value.message == "Secret is used by: crm_lookup, crm_write"

    client.delete_tool(tool["id"])
    remaining = client.list_tools()[0]["id"]
    client.update_tool(remaining, tool_config=webhook("crm_write"))  # drops the last reference
    client.delete_secret(secret_id)


def test_duplicate_secret_name_is_conflict(client: PlatformClient, emulator: Emulator) -> None:
    client.create_secret(name="dup", value="a")
    with pytest.raises(Conflict) as caught:
        client.create_secret(name="dup", value="b")
    assert (caught.value.status, caught.value.code) == (409, "already_exists")
    assert len(emulator.state_snapshot()["secrets"]) == 1


def test_tool_round_trip(client: PlatformClient) -> None:
    secret_id = client.create_secret(name="s", value="v")["secret_id"]
    created = client.create_tool(tool_config=webhook("lookup", secret_id))
    assert created["tool_config"]["api_schema"]["request_headers"] == {"Authorization": {"secret_id": secret_id}}
    assert client.get_tool(created["id"])["tool_config"]["name"] == "lookup"
    updated = client.update_tool(created["id"], tool_config=webhook("lookup_v2"))
    assert updated["tool_config"]["name"] == "lookup_v2"
    assert [t["id"] for t in client.list_tools()] == [created["id"]]
    client.delete_tool(created["id"])
    with pytest.raises(NotFound):
        client.get_tool(created["id"])


def test_tool_with_dangling_secret_reference_is_refused(client: PlatformClient) -> None:
    with pytest.raises(ValidationFailed):
        client.create_tool(tool_config=webhook("lookup", "no-such-secret"))


def test_tool_used_by_an_agent_needs_force(client: PlatformClient) -> None:
    tool_id = client.create_tool(tool_config=webhook("lookup"))["id"]
    agent_id = client.create_agent(
        name="Bot", conversation_config={"agent": {"prompt": {"tool_ids": [tool_id]}}}, platform_settings=None
    )
    with pytest.raises(Conflict) as caught:
        client.delete_tool(tool_id)
    assert caught.value.code == "tool_in_use"
    client.delete_tool(tool_id, force=True)
    assert client.get_agent(agent_id)["conversation_config"]["agent"]["prompt"]["tool_ids"] == []


# --- service accounts and keys -------------------------------------------------------------------


def test_service_account_and_key_round_trip(client: PlatformClient, responses: list[httpx.Response]) -> None:
    sa_id = client.create_service_account(name="ci-bot")
    assert [a["name"] for a in client.list_service_accounts()] == ["ci-bot"]

    created = client.create_api_key(
        sa_id,
        name="deploy",
        permissions=["convai_read", "convai_write"],
        character_limit=1000,
        allowed_ips=["10.0.0.1", "192.168.0.0/24"],
    )
    secret = created["xi-api-key"]
    assert re.fullmatch(r"sk_[0-9a-f]{48}", secret)
    responses.clear()

    [listed] = client.list_api_keys(sa_id)
    assert listed["key_id"] == created["key_id"]
    assert listed["hint"] == secret[-4:]
    # The platform's hash is its own: a keyed hash here, never sha256 of the secret (issue 18, item 1).
    assert listed["hashed_xi_api_key"] == hash_key(secret) != hashlib.sha256(secret.encode()).hexdigest()
    assert listed["permissions"] == ["convai_read", "convai_write"]
    assert listed["allowed_ips"] == ["10.0.0.1/32", "192.168.0.0/24"]
    assert (listed["character_limit"], listed["character_count"], listed["is_disabled"]) == (1000, 0, False)
    assert client.list_service_accounts()[0]["api-keys"][0]["key_id"] == created["key_id"]
    # After creation the secret never crosses the wire again.
    assert all(secret.encode() not in response.content for response in responses)

    client.update_api_key(sa_id, created["key_id"], name="deploy-2", character_limit="clear", allowed_ips="clear")
    [listed] = client.list_api_keys(sa_id)
    assert (listed["name"], listed["character_limit"], listed["allowed_ips"]) == ("deploy-2", None, None)
    assert listed["permissions"] == ["convai_read", "convai_write"]  # "no_update" by omission

    client.delete_api_key(sa_id, created["key_id"])
    assert client.list_api_keys(sa_id) == []
    with pytest.raises(NotFound):
        client.delete_api_key(sa_id, created["key_id"])


def test_unknown_service_account_is_not_found(client: PlatformClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.list_api_keys("nobody")
    assert caught.value.code == "service_account_not_found"


def test_issued_key_is_limited_to_its_scopes(client: PlatformClient, emulator: Emulator) -> None:
    sa_id = client.create_service_account(name="reader")
    agent_id = client.create_agent(name="a", conversation_config={}, platform_settings=None)
    reader = client_for(emulator, client.create_api_key(sa_id, name="r", permissions=["convai_read"])["xi-api-key"])

    assert reader.get_agent(agent_id)["agent_id"] == agent_id
    assert reader.get_signed_url(agent_id)
    for forbidden in (
        lambda: reader.update_agent(agent_id, name="hijacked"),
        lambda: reader.create_secret(name="s", value="v"),
        lambda: reader.list_service_accounts(),
        lambda: reader.usage_by_api_key(start_ms=1700000000000, end_ms=1700086400000),
    ):
        with pytest.raises(AuthenticationFailed) as caught:
            forbidden()
        assert caught.value.legacy_status == "missing_permissions"
    assert client.get_agent(agent_id)["name"] == "a"

    admin_like = client_for(emulator, client.create_api_key(sa_id, name="all", permissions="all")["xi-api-key"])
    admin_like.update_agent(agent_id, name="renamed")
    assert admin_like.list_service_accounts()[0]["api-keys"][1]["permissions"] is None  # "all" lists as null


def test_disabled_and_deleted_keys_stop_working(client: PlatformClient, emulator: Emulator) -> None:
    sa_id = client.create_service_account(name="sa")
    created = client.create_api_key(sa_id, name="k", permissions=["convai_read"])
    holder = client_for(emulator, created["xi-api-key"])
    holder.list_agents()
    client.update_api_key(sa_id, created["key_id"], is_enabled=False)
    with pytest.raises(AuthenticationFailed):
        holder.list_agents()
    client.update_api_key(sa_id, created["key_id"], is_enabled=True)
    holder.list_agents()
    client.delete_api_key(sa_id, created["key_id"])
    with pytest.raises(AuthenticationFailed) as caught:
        holder.list_agents()
    assert caught.value.code == "invalid_api_key"


def test_key_ip_allowlist_is_enforced(client: PlatformClient, emulator: Emulator) -> None:
    sa_id = client.create_service_account(name="sa")
    key = client.create_api_key(sa_id, name="k", permissions="all", allowed_ips=["203.0.113.0/24"])["xi-api-key"]
    client_for(emulator, key, client_ip="203.0.113.9").list_agents()
    with pytest.raises(AuthenticationFailed) as caught:
        client_for(emulator, key, client_ip="198.51.100.1").list_agents()
    assert caught.value.status == 403
    with pytest.raises(AuthenticationFailed):
        client_for(emulator, key).list_agents()  # MockTransport default: 127.0.0.1
    # Without an explicit client_ip, MockTransport calls use X-Forwarded-For when present.
    forwarded = httpx.Request(
        "GET", f"{BASE}/v1/convai/agents", headers={"xi-api-key": key, "X-Forwarded-For": "203.0.113.77"}
    )
    assert emulator.handle(forwarded).status_code == 200


def test_invalid_permission_is_422(client: PlatformClient) -> None:
    sa_id = client.create_service_account(name="sa")
    with pytest.raises(ValidationFailed) as caught:
        client.create_api_key(sa_id, name="k", permissions=["convai_everything"])
    assert "body.permissions.0" in caught.value.message


# --- usage ---------------------------------------------------------------------------------------


def test_usage_is_grouped_by_hashed_key_per_interval(client: PlatformClient, emulator: Emulator) -> None:
    day = 86_400_000
    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    emulator.add_usage(
        [
            {"hashed_xi_api_key": "aaa", "time_ms": start + 1000, "credits": 10, "requests": 2},
            {"hashed_xi_api_key": "aaa", "time_ms": start + 5000, "credits": 5, "requests": 1},
            {"hashed_xi_api_key": "bbb", "time_ms": start + day + 1, "credits": 7, "requests": 3},
            {"hashed_xi_api_key": "aaa", "time_ms": start + 3 * day, "credits": 99, "requests": 9},  # outside
        ]
    )
    table = client.usage_by_api_key(start_ms=start, end_ms=start + 2 * day)
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
    assert rows == [
        {"time": start, "hashed_xi_api_key": "aaa", "credits": 15.0, "requests": 3},
        {"time": start + day, "hashed_xi_api_key": "bbb", "credits": 7.0, "requests": 3},
    ]
    assert len(table["column_types"]) == len(table["column_units"]) == len(table["columns"])


# --- idempotency ---------------------------------------------------------------------------------


def test_idempotency_key_is_accepted_but_not_honoured_like_on_the_platform(client: PlatformClient,
                                                                           emulator: Emulator) -> None:
    # No platform endpoint Keyward uses honours Idempotency-Key (issue 18, item 4): a repeated create makes another
    # object (or, for a unique name, is refused), so only Keyward's lookup of an earlier attempt prevents duplicates.
    first = client.create_agent(name="a", conversation_config={}, platform_settings=None, idempotency_key="k1")
    again = client.create_agent(name="a", conversation_config={}, platform_settings=None, idempotency_key="k1")
    assert first != again and len(emulator.state_snapshot()["agents"]) == 2
    client.create_secret(name="s", value="v", idempotency_key="k1")
    with pytest.raises(Conflict):
        client.create_secret(name="s", value="v", idempotency_key="k1")
    sa_id = client.create_service_account(name="sa", idempotency_key="sa-1")
    assert client.create_service_account(name="sa", idempotency_key="sa-1") != sa_id
    key = client.create_api_key(sa_id, name="k", permissions="all", idempotency_key="key-1")
    assert client.create_api_key(sa_id, name="k", permissions="all", idempotency_key="key-1") != key
    snapshot = emulator.state_snapshot()
    assert (len(snapshot["secrets"]), len(snapshot["service_accounts"]), len(snapshot["api_keys"])) == (1, 2, 2)




def test_concurrent_creates_are_all_kept_whatever_their_idempotency_key(emulator: Emulator) -> None:
    platform = client_for(emulator, ADMIN_KEY)
    replies: list[str] = []

    def worker(n: int) -> None:
        for i in range(10):
            platform.create_agent(name=f"w{n}-{i}", conversation_config={}, platform_settings=None)
        replies.append(
            platform.create_agent(name="once", conversation_config={}, platform_settings=None, idempotency_key="same")
        )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(replies) == 8 and len(set(replies)) == 8  # the platform honours no Idempotency-Key
    assert len(emulator.state_snapshot()["agents"]) == 8 * 10 + 8


def test_max_concurrency_is_configurable_and_survives_reset() -> None:
    emulator = Emulator(api_key=ADMIN_KEY, max_concurrency=30)
    emulator.reset()
    response = emulator.handle(httpx.Request("GET", f"{BASE}/v1/convai/agents", headers={"xi-api-key": ADMIN_KEY}))
    assert response.headers["maximum-concurrent-requests"] == "30"


def test_service_account_limit_is_enforced() -> None:
    emulator = Emulator(api_key=ADMIN_KEY, max_service_accounts=2)
    platform = client_for(emulator, ADMIN_KEY)
    platform.create_service_account(name="a")
    platform.create_service_account(name="b")
    with pytest.raises(ValidationFailed) as caught:
        platform.create_service_account(name="c")
    assert caught.value.code == "service_account_limit_reached"


# --- loopback server -----------------------------------------------------------------------------


def test_loopback_server_serves_a_real_client_and_http_fault_controls(emulator: Emulator) -> None:
    with emulator.serve() as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        with PlatformClient(server.url, ADMIN_KEY) as platform:
            agent_id = platform.create_agent(name="live", conversation_config={}, platform_settings=None)
            assert platform.get_agent(agent_id)["name"] == "live"
            assert platform.last_concurrency == (1, 10)

            control = httpx.post(f"{server.url}/_emulator/faults", json={"fail_next": [503]})
            assert control.status_code == 200 and control.json()["fail_next"] == [503]
            with pytest.raises(Unavailable):
                platform.list_agents()
            assert platform.list_agents()["agents"][0]["agent_id"] == agent_id

            httpx.post(f"{server.url}/_emulator/concurrency", json={"current": 9, "maximum": 12})
            platform.list_agents()
            assert platform.last_concurrency == (9, 12)

            sa_id = platform.create_service_account(name="sa")
            key = platform.create_api_key(sa_id, name="k", permissions=["workspace_read"])["xi-api-key"]
            hashed = hash_key(key)
            rows = [{"hashed_xi_api_key": hashed, "time_ms": 1_767_225_600_000, "credits": 4, "requests": 1}]
            assert httpx.post(f"{server.url}/_emulator/usage", json={"rows": rows}).status_code == 200
            assert platform.list_api_keys(sa_id)[0]["character_count"] == 4

            state = httpx.get(f"{server.url}/_emulator/state").json()
            assert state["objects"]["agents"] == 1
            assert state["calls"]["GET /v1/convai/agents"] == 3
            assert httpx.post(f"{server.url}/_emulator/reset").status_code == 200
            assert platform.list_agents()["agents"] == []
            assert httpx.post(f"{server.url}/_emulator/faults", json={"bogus": 1}).status_code == 400


def test_loopback_server_honours_x_forwarded_for_for_key_allowlists(emulator: Emulator) -> None:
    with emulator.serve() as server:
        with PlatformClient(server.url, ADMIN_KEY) as platform:
            sa_id = platform.create_service_account(name="sa")
            key = platform.create_api_key(sa_id, name="k", permissions="all", allowed_ips=["10.1.0.0/16"])
        url = f"{server.url}/v1/convai/agents"
        assert httpx.get(url, headers={"xi-api-key": key["xi-api-key"]}).status_code == 403
        allowed = httpx.get(url, headers={"xi-api-key": key["xi-api-key"], "X-Forwarded-For": "10.1.2.3"})
        assert allowed.status_code == 200


def test_serve_refuses_a_non_loopback_host(emulator: Emulator) -> None:
    with pytest.raises(ValueError):
        emulator.serve(host="0.0.0.0")


def test_run_emulator_command_refuses_non_loopback_and_prints_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.management.base import CommandError

    from project.platform.management.commands.run_emulator import Command

    with pytest.raises(CommandError):
        Command().handle(host="0.0.0.0", port=0, api_key="k")

    monkeypatch.setattr(Command, "_wait", lambda self, stop: None)
    out = io.StringIO()
    Command(stdout=out).handle(host="127.0.0.1", port=0, api_key="dev-key")
    assert re.search(r"listening on http://127\.0\.0\.1:\d+", out.getvalue())
    assert "dev-key" not in out.getvalue()


def test_the_demo_oauth_token_endpoint_answers_the_refresh_grant_only():
    from project.platform.emulator import Emulator

    emulator = Emulator(api_key="k")
    with httpx.Client(transport=httpx.MockTransport(emulator.handle), base_url="http://127.0.0.1:8765") as http:
        url = "/_emulator/oauth/token"
        good = {"grant_type": "refresh_token", "refresh_token": "1//demo", "client_id": "app"}
        ok = http.post(url, data=good)
        assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
        assert ok.json()["access_token"].startswith("ya29.demo_") and ok.json()["expires_in"] == 3600
        assert http.post(url, data=good).json()["access_token"] != ok.json()["access_token"]
        assert http.post(url, data=good, auth=("app", "secret")).status_code == 200  # client auth by header
        assert http.get(url).status_code == 405
        assert http.post(url, data={**good, "grant_type": "password"}).json()["error"] == "unsupported_grant_type"
        assert http.post(url, data={k: v for k, v in good.items() if k != "client_id"}).status_code == 401
        refused = http.post(url, data={**good, "refresh_token": "revoked-1"})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_run_emulator_seeds_an_account_once_and_keeps_its_state_across_restarts(monkeypatch, tmp_path) -> None:
    import json

    from django.core.management.base import CommandError

    from project.platform.management.commands.run_emulator import Command

    monkeypatch.setattr(Command, "_wait", lambda self, stop: None)
    fixture = tmp_path / "seed.json"
    fixture.write_text(json.dumps({"agents": [{"name": "Built elsewhere", "auth": {"enable_auth": True}}],
                                   "secrets": [{"name": "crm_token"}]}))
    state = tmp_path / "state"
    options = {"host": "127.0.0.1", "port": 0, "account": ["main=k1", "other=k2"], "state_dir": str(state),
               "seed": [f"other={fixture}"]}
    first = io.StringIO()
    Command(stdout=first).handle(**options)
    assert "Account 'other': seeded with objects built elsewhere (1 secrets, 1 agents)" in first.getvalue()
    saved = json.loads((state / "other.json").read_text())
    assert [a["name"] for a in saved["_agents"].values()] == ["Built elsewhere"]
    assert not json.loads((state / "main.json").read_text())["_agents"]
    again = io.StringIO()
    Command(stdout=again).handle(**options)  # restarted: the saved state is loaded, the seed is not applied twice
    assert "seeded" not in again.getvalue() and "state loaded" in again.getvalue()
    assert len(json.loads((state / "other.json").read_text())["_agents"]) == 1
    with pytest.raises(CommandError, match="not one of main, other"):
        Command(stdout=io.StringIO()).handle(**{**options, "seed": [f"nope={fixture}"]})
