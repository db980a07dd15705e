"""PlatformClient: error mapping, transport failures, pooling, key hygiene and request shapes."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate

import httpx
import pytest

from project.platform import client as client_module
from project.platform.client import PlatformClient, get_client, set_client
from project.platform.emulator import Emulator
from project.platform.errors import (
    TRANSIENT,
    AuthenticationFailed,
    Conflict,
    NotFound,
    PlatformError,
    RateLimited,
    Unavailable,
    ValidationFailed,
    error_for_response,
)

ADMIN_KEY = "admin-key-0123456789abcdef"
BASE = "http://platform.test"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=ADMIN_KEY)


@pytest.fixture
def sent() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(emulator: Emulator, sent: list[httpx.Request]) -> Iterator[PlatformClient]:
    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return emulator.handle(request)

    with PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(record)) as platform:
        yield platform


def replying(status: int, body: object = None, headers: dict[str, str] | None = None) -> PlatformClient:
    """A client whose every call gets this canned response."""
    content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers or {}, content=content)

    return PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(reply))


def raising(exc_factory: Callable[[httpx.Request], Exception]) -> PlatformClient:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_factory(request)

    return PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(fail))


# --- error mapping -------------------------------------------------------------------------------


def test_unknown_key_maps_to_authentication_failed(emulator: Emulator) -> None:
    bad = PlatformClient(BASE, "not-a-key", transport=httpx.MockTransport(emulator.handle))
    with pytest.raises(AuthenticationFailed) as caught:
        bad.list_agents()
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"
    assert str(caught.value) == "invalid_api_key: Invalid API key (HTTP 401)"


def test_missing_scope_maps_to_authentication_failed_with_missing_permissions(
    client: PlatformClient, emulator: Emulator
) -> None:
    sa_id = client.create_service_account(name="reader")
    key = client.create_api_key(sa_id, name="r", permissions=["convai_read"])["xi-api-key"]
    reader = PlatformClient(BASE, key, transport=httpx.MockTransport(emulator.handle))
    with pytest.raises(AuthenticationFailed) as caught:
        reader.create_secret(name="s", value="v")
    assert caught.value.status == 401
    assert caught.value.has_code("missing_permissions")
    assert "convai_write" in caught.value.message


def test_403_maps_to_authentication_failed() -> None:
    body = {"detail": {"type": "authorization_error", "code": "ip_not_allowed", "message": "Not from there"}}
    with pytest.raises(AuthenticationFailed) as caught:
        replying(403, body).get_agent("a")
    assert (caught.value.status, caught.value.code, caught.value.message) == (403, "ip_not_allowed", "Not from there")


def test_unknown_agent_maps_to_not_found_with_platform_code(client: PlatformClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.get_agent("agent_doesnotexist")
    assert caught.value.status == 404
    assert caught.value.code == "agent_not_found"
    assert caught.value.message == "Agent not found"


def test_409_maps_to_conflict(client: PlatformClient) -> None:
    client.create_secret(name="dup", value="one")
    with pytest.raises(Conflict) as caught:
        client.create_secret(name="dup", value="two")
    assert caught.value.status == 409
    assert caught.value.code == "already_exists"


def test_400_in_use_maps_to_conflict_and_keeps_the_platform_text() -> None:
    body = {"detail": {"status": "secret_in_use", "message": "Secret is used by: lookup, crm"}}
    with pytest.raises(Conflict) as caught:
        replying(400, body).delete_secret("s1")
    assert caught.value.code == "secret_in_use"
    assert caught.value.message == "Secret is used by: lookup, crm"


def test_plain_400_maps_to_validation_failed() -> None:
    body = {"detail": {"type": "validation_error", "code": "invalid_parameters", "message": "bad keyterms"}}
    with pytest.raises(ValidationFailed) as caught:
        replying(400, body).list_tools()
    assert caught.value.code == "invalid_parameters"


def test_422_message_joins_loc_and_msg_and_drops_the_echoed_input() -> None:
    body = {
        "detail": [
            {
                "loc": ["body", "value"],
                "msg": "Input should be a valid string",
                "type": "string_type",
                "input": "super-secret-value",
            },
            {"loc": ["body", "name"], "msg": "Field required", "type": "missing"},
        ]
    }
    with pytest.raises(ValidationFailed) as caught:
        replying(422, body).create_secret(name="n", value="super-secret-value")
    assert caught.value.message == "body.value: Input should be a valid string; body.name: Field required"
    assert "super-secret-value" not in str(caught.value)
    assert "super-secret-value" not in repr(caught.value)


def test_emulator_422_for_too_many_hosts_reaches_the_message(client: PlatformClient) -> None:
    hosts = [{"hostname": f"h{i}.example.com"} for i in range(11)]
    with pytest.raises(ValidationFailed) as caught:
        client.create_agent(name="a", conversation_config={}, platform_settings={"auth": {"allowlist": hosts}})
    assert caught.value.status == 422
    assert "body.platform_settings.auth.allowlist: List should have at most 10 items" in caught.value.message


def test_429_with_retry_after_seconds() -> None:
    body = {"detail": {"type": "rate_limit_error", "code": "concurrent_limit_exceeded", "message": "slow down"}}
    with pytest.raises(RateLimited) as caught:
        replying(429, body, {"Retry-After": "7"}).list_agents()
    assert caught.value.retry_after == 7.0
    assert caught.value.code == "concurrent_limit_exceeded"


def test_429_with_retry_after_http_date() -> None:
    later = formatdate(time.time() + 120, usegmt=True)
    with pytest.raises(RateLimited) as caught:
        replying(
            429, {"detail": {"status": "too_many_concurrent_requests", "message": "busy"}}, {"Retry-After": later}
        ).list_agents()
    assert caught.value.retry_after is not None
    assert 110 <= caught.value.retry_after <= 121
    assert caught.value.code == "too_many_concurrent_requests"


def test_429_prefers_retry_after_ms_and_tolerates_no_header() -> None:
    with pytest.raises(RateLimited) as caught:
        replying(429, {}, {"retry-after-ms": "1500", "Retry-After": "9"}).list_agents()
    assert caught.value.retry_after == 1.5
    with pytest.raises(RateLimited) as caught:
        replying(429, {}).list_agents()
    assert caught.value.retry_after is None


def test_503_maps_to_unavailable_and_is_transient() -> None:
    with pytest.raises(Unavailable) as caught:
        replying(503, b"<html>upstream down</html>").get_agent("a")
    assert caught.value.status == 503
    assert caught.value.message == "Service Unavailable"  # the HTML page is not echoed
    assert isinstance(caught.value, TRANSIENT)
    assert not isinstance(NotFound("x"), TRANSIENT)


def test_read_timeout_maps_to_unavailable_without_status() -> None:
    platform = raising(lambda request: httpx.ReadTimeout("timed out", request=request))
    with pytest.raises(Unavailable) as caught:
        platform.get_agent("a")
    assert caught.value.status is None
    assert caught.value.code == "timeout"
    # The httpx exception (which holds the request and its headers) is not chained.
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_slow_emulator_beyond_read_timeout_maps_to_unavailable(emulator: Emulator) -> None:
    emulator.set_faults(latency=0.5)
    with emulator.serve() as server:
        slow = PlatformClient(server.url, ADMIN_KEY, timeout=httpx.Timeout(0.1, connect=1.0))
        with pytest.raises(Unavailable) as caught:
            slow.list_agents()
        slow.close()
    assert caught.value.code == "timeout"


def test_connection_refused_maps_to_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    platform = PlatformClient(f"http://127.0.0.1:{port}", ADMIN_KEY)
    with pytest.raises(Unavailable) as caught:
        platform.list_secrets()
    assert caught.value.status is None
    assert caught.value.code == "connection_error"
    assert caught.value.__context__ is None


def test_error_parsing_handles_legacy_and_string_details() -> None:
    legacy = error_for_response(401, {}, b'{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}')
    assert isinstance(legacy, AuthenticationFailed) and legacy.code == "invalid_api_key"
    legacy_400 = error_for_response(400, {}, b'{"detail":{"status":"invalid_api_key","message":"bad"}}')
    assert isinstance(legacy_400, AuthenticationFailed)
    text = error_for_response(404, {}, b'{"detail":"Not Found"}')
    assert isinstance(text, NotFound) and text.message == "Not Found" and text.code == "http_404"
    exists = error_for_response(400, {}, b'{"detail":{"code":"name_already_exists","message":"taken"}}')
    assert isinstance(exists, Conflict)
    other = error_for_response(418, {}, b"")
    assert type(other) is PlatformError and str(other) == "http_418: I'm a Teapot (HTTP 418)"


# --- pooling, headers and key hygiene ------------------------------------------------------------


def test_one_pooled_httpx_client_serves_every_call(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    built: list[httpx.Client] = []
    real_client = httpx.Client

    def counting_client(*args: object, **kwargs: object) -> httpx.Client:
        instance = real_client(*args, **kwargs)  # type: ignore[arg-type]
        built.append(instance)
        return instance

    monkeypatch.setattr(client_module.httpx, "Client", counting_client)
    platform = PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(emulator.handle))
    pooled = platform._http
    agent_id = platform.create_agent(name="a", conversation_config={}, platform_settings=None)
    platform.get_agent(agent_id)
    platform.list_agents()
    platform.list_secrets()
    assert len(built) == 1
    assert platform._http is pooled


def test_default_timeouts_are_short_and_overridable() -> None:
    platform = PlatformClient(BASE, ADMIN_KEY)
    assert platform._http.timeout == httpx.Timeout(connect=3, read=10, write=10, pool=5)
    assert PlatformClient(BASE, ADMIN_KEY, timeout=2.5)._http.timeout.read == 2.5


def test_key_header_is_sent_on_every_call(client: PlatformClient, sent: list[httpx.Request]) -> None:
    agent_id = client.create_agent(name="a", conversation_config={}, platform_settings=None)
    client.update_agent(agent_id, name="b")
    client.get_signed_url(agent_id)
    client.list_tools()
    client.list_service_accounts()
    client.delete_agent(agent_id)
    assert len(sent) == 6
    assert all(request.headers["xi-api-key"] == ADMIN_KEY for request in sent)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Format now: handlers further up may rewrite the same record object in place afterwards.
        self.records.append((record.name, record.getMessage()))


@pytest.fixture
def platform_logs() -> Iterator[list[tuple[str, str]]]:
    """Records as project.platform emits them, before any project-wide redaction can rewrite them.

    The project installs a redacting LogRecord factory and handler filter; both are a safety net, so
    these tests take them out of the way (plain factory, a handler on the emitting logger itself) to
    check the client's own hygiene.
    """
    previous_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    target = logging.getLogger("project.platform")
    handler, previous_level = _Collect(), target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    yield handler.records
    target.removeHandler(handler)
    target.setLevel(previous_level)
    logging.setLogRecordFactory(previous_factory)


def test_key_never_appears_in_logs_or_errors(
    client: PlatformClient, emulator: Emulator, platform_logs: list[tuple[str, str]]
) -> None:
    errors: list[Exception] = []
    client.create_agent(name="a", conversation_config={}, platform_settings=None)
    for call in (
        lambda: client.get_agent("missing"),
        lambda: client.create_secret(name="x", value=123),  # type: ignore[arg-type]
        lambda: raising(lambda r: httpx.ConnectError("refused", request=r)).list_agents(),
        lambda: PlatformClient(BASE, ADMIN_KEY + "x", transport=httpx.MockTransport(emulator.handle)).list_agents(),
    ):
        with pytest.raises(PlatformError) as caught:
            call()
        errors.append(caught.value)
    messages = [message for name, message in platform_logs if name == "project.platform.client"]
    assert len(messages) == 5
    for message in messages:
        assert ADMIN_KEY not in message
    for error in errors:
        assert ADMIN_KEY not in str(error) and ADMIN_KEY not in repr(error)
    assert ADMIN_KEY not in repr(client)


def test_debug_log_line_is_method_path_status_and_time(
    client: PlatformClient, platform_logs: list[tuple[str, str]]
) -> None:
    client.create_secret(name="token", value="do-not-log-me")
    [message] = [message for name, message in platform_logs if name == "project.platform.client"]
    assert re.fullmatch(r"platform POST /v1/convai/secrets -> 200 in \d+ ms", message)
    assert "do-not-log-me" not in message


def test_idempotency_key_header_is_sent_on_creates(client: PlatformClient, sent: list[httpx.Request]) -> None:
    client.create_agent(name="a", conversation_config={}, platform_settings=None, idempotency_key="job-1")
    client.create_secret(name="s", value="v", idempotency_key="job-2")
    client.create_tool(tool_config={"type": "client", "name": "t", "description": "d"}, idempotency_key="job-3")
    sa_id = client.create_service_account(name="sa", idempotency_key="job-4")
    client.create_api_key(sa_id, name="k", permissions="all", idempotency_key="job-5")
    client.list_agents()
    assert [r.headers.get("idempotency-key") for r in sent] == ["job-1", "job-2", "job-3", "job-4", "job-5", None]


def test_update_agent_sends_only_given_fields(client: PlatformClient, sent: list[httpx.Request]) -> None:
    agent_id = client.create_agent(name="a", conversation_config={}, platform_settings=None)
    client.update_agent(agent_id, platform_settings={"auth": {"enable_auth": True}})
    assert json.loads(sent[-1].content) == {"platform_settings": {"auth": {"enable_auth": True}}}


def test_update_api_key_sends_only_given_fields(client: PlatformClient, sent: list[httpx.Request]) -> None:
    sa_id = client.create_service_account(name="sa")
    key_id = client.create_api_key(sa_id, name="k", permissions=["convai_read"])["key_id"]
    client.update_api_key(sa_id, key_id, is_enabled=False, character_limit="clear")
    assert json.loads(sent[-1].content) == {"is_enabled": False, "character_limit": "clear"}
    assert sent[-1].method == "PATCH"


def test_ids_are_quoted_into_one_path_segment(client: PlatformClient, sent: list[httpx.Request]) -> None:
    with pytest.raises(NotFound) as caught:
        client.get_agent("../secrets")
    assert sent[-1].url.raw_path == b"/v1/convai/agents/..%2Fsecrets"
    assert caught.value.code == "agent_not_found"  # reached the agent route with the whole id


def test_iter_agents_follows_cursors(client: PlatformClient, sent: list[httpx.Request]) -> None:
    created = {client.create_agent(name=f"a{i}", conversation_config={}, platform_settings=None) for i in range(5)}
    sent.clear()
    seen = [a["agent_id"] for a in client.iter_agents(page_size=2)]
    assert sorted(seen) == sorted(created)
    assert len(sent) == 3


def test_last_concurrency_comes_from_response_headers(client: PlatformClient, emulator: Emulator) -> None:
    assert client.last_concurrency is None
    emulator.set_concurrency(current=4, maximum=15)
    client.list_agents()
    assert client.last_concurrency == (4, 15)
    with pytest.raises(Unavailable):
        replying(503).list_agents()


# --- process-wide client -------------------------------------------------------------------------


@pytest.fixture
def fresh_singleton() -> Iterator[None]:
    """No account directory (as before Django's apps are ready): clients are built from settings."""
    directory = client_module._directory
    set_client(None)
    client_module.install_accounts(None)
    yield
    set_client(None)
    client_module.install_accounts(directory)


def test_get_client_builds_one_client_lazily_from_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_singleton: None
) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    monkeypatch.setattr(settings, "PLATFORM_API_URL", "http://127.0.0.1:9", raising=False)
    monkeypatch.setattr(settings, "PLATFORM_API_KEY", ADMIN_KEY, raising=False)
    monkeypatch.setattr(settings, "PLATFORM_TIMEOUT", 4.0, raising=False)
    first = get_client()
    assert first is get_client()
    assert first.base_url == "http://127.0.0.1:9"
    assert first._http.timeout.read == 4.0
    assert first._http.headers["xi-api-key"] == ADMIN_KEY


def test_set_client_installs_a_client_and_fork_drops_the_pooled_ones(
    emulator: Emulator, fresh_singleton: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    installed = PlatformClient(BASE, ADMIN_KEY, transport=httpx.MockTransport(emulator.handle))
    set_client(installed)
    assert get_client() is installed
    set_client(None)
    monkeypatch.setattr(settings, "PLATFORM_API_URL", "http://127.0.0.1:9", raising=False)
    built = get_client()
    client_module._reset_after_fork()
    assert client_module._clients == {}
    assert get_client() is not built
