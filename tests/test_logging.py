import logging

from project.logging import redact, register_secret_value


def test_headers_and_key_shapes_are_redacted():
    text = ("xi-api-key: sk_0123456789abcdef0123456789abcdef0123456789abcdef Authorization: Bearer eyJhbGciOi.abc "
            "url wss://x/v1/convai/conversation?agent_id=a&conversation_signature=SIGNATURE123")
    out = redact(text)
    assert "sk_0123456789abcdef" not in out and "eyJhbGciOi" not in out and "SIGNATURE123" not in out
    assert out.count("[redacted]") >= 3


def test_log_records_are_redacted_for_every_handler(caplog):
    register_secret_value("canary-Zq81-xv0P-secret")
    logging.getLogger("keyward.test").warning("calling with %s and %s", "canary-Zq81-xv0P-secret",
                                              {"xi-api-key": "sk_" + "a" * 48})
    assert "canary-Zq81-xv0P-secret" not in caplog.text
    assert "a" * 48 not in caplog.text


def test_exception_text_is_redacted(caplog):
    try:
        raise RuntimeError("Authorization: Bearer topsecrettokenvalue123")
    except RuntimeError:
        logging.getLogger("keyward.test").exception("failed")
    assert "topsecrettokenvalue123" not in caplog.text


def test_json_formatter_emits_one_object_with_request_id():
    import json

    from project import context
    from project.logging import JsonFormatter, RequestIdFilter

    token = context.activate(context.RequestContext(request_id="req-123", ip="127.0.0.1"))
    try:
        record = logging.getLogger("keyward.test").makeRecord("keyward.test", logging.INFO, __file__, 1,
                                                              "hello %s", ("world",), None, extra={"status": 200})
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        context.deactivate(token)
    assert line["message"] == "hello world" and line["request_id"] == "req-123" and line["status"] == 200


def test_each_request_is_logged_without_its_query_string(client, caplog, db):
    caplog.set_level(logging.INFO, logger="keyward.request")
    response = client.get("/admin/login/?next=/admin/&token=abcdef-secret-in-query")
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "keyward.request"]
    assert lines and lines[-1].status == 200 and lines[-1].path == "/admin/login/"
    assert "abcdef-secret-in-query" not in caplog.text
