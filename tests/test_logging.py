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
