"""Canary: an end user's vault tokens, the platform key, broker keys and minted credentials appear in no log line,
audit row, error body or database column on any of the broker's paths."""

import json
import logging

import pytest
from django.db import OperationalError, connection

from agents import webhook
from broker import limits, services
from project.audit.models import AuditEvent
from tests.conftest import EMULATOR_KEY, login
from tests.factories import make_agent, make_vault_credential

pytestmark = pytest.mark.django_db

STALE = "stale-vault-token-canary-4Jq9"


def _raw_database_text() -> str:
    """Every row of every table, as stored (encrypted columns stay ciphertext)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from the schema itself
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


def test_no_secret_reaches_logs_audit_error_bodies_or_the_database(
        api, issue, owner, workspace, webhook_agent, second_agent, google, token_endpoint, emulator, caplog,
        monkeypatch, platform):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "django.request", "broker", "secrets_app", "project", "keyward.request"):
        caplog.set_level(logging.DEBUG, logger=name)
    issued = issue(rate_limit_per_minute=40, session_quota=6, allowed_networks=["127.0.0.0/8"])
    make_vault_credential(workspace, google, "user-42", STALE, refresh_token="refresh-user-42-Lp02", expires_in=60)
    error_bodies: list[bytes] = []
    minted: list[str] = []

    def call(agent_ref, key, body=None, **kw):
        response = api.session(agent_ref, key, body, **kw)
        (minted.append(response.content.decode()) if response.status_code == 200
         else error_bodies.append(response.content))
        return response

    # Sessions: both modes, then every refusal.
    conversation = call(webhook_agent.remote_id, issued.secret,
                        {"end_user_id": "user-42", "mode": "conversation_token"})
    conversation_id = conversation.json()["conversation_id"]
    call(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-42"})
    call(webhook_agent.remote_id, None)
    call(webhook_agent.remote_id, issued.secret[:-1] + "0")
    call(second_agent.remote_id, issued.secret)
    call(webhook_agent.remote_id, issued.secret, remote_addr="198.51.100.1")
    call("agent_nope", issued.secret)
    call(webhook_agent.remote_id, issued.secret, raw=b"[1]")
    emulator.set_faults(fail_next=[401])
    call(webhook_agent.remote_id, issued.secret)
    emulator.set_faults(fail_next=[503])
    call(webhook_agent.remote_id, issued.secret)
    for _ in range(6):
        call(webhook_agent.remote_id, issued.secret)  # the quota of 6 runs out
    with monkeypatch.context() as patched:
        patched.setattr(limits, "admit", lambda *a, **k: (_ for _ in ()).throw(OperationalError("down")))
        call(webhook_agent.remote_id, issued.secret)
    unsigned = make_agent(workspace, "Web", synced=True, auth_mode="allowlist", allowlist=["app.example.com"])
    services.broker_key_update(actor=owner, key=issued.key, agents=[webhook_agent])
    call(unsigned.remote_id, issued.secret)

    # The webhook: the answer (refreshing the stale token), then every refusal.
    secret = webhook.agent_secret(webhook_agent)
    answer = api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id}, secret)
    fresh = answer.json()["dynamic_variables"]["secret__user_google_token"]
    assert fresh.startswith("fresh-google-token-")
    for body, presented in (({}, None), ({}, secret[:-1] + "0"), ({"agent_id": second_agent.remote_id}, secret),
                            ({}, webhook.agent_secret(second_agent))):
        error_bodies.append(api.webhook(body, presented).content)
    with monkeypatch.context() as patched:
        import secrets_app.services as vault

        patched.setattr(vault, "credential_fresh_tokens",
                        lambda **kw: (_ for _ in ()).throw(OperationalError(f"down {kw['end_user_id']}")))
        error_bodies.append(api.webhook({"conversation_id": conversation_id}, secret).content)  # no agent_id
        error_bodies.append(api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                                        secret).content)  # already answered
        patched.setattr("django.conf.settings.BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS", 900)
        error_bodies.append(api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                                        secret).content)  # answered again within the window: the vault is down

    # Single-use speech tokens: a mint, then refusals.
    speech = issue(name="speech", token_types=["tts_websocket"], agents=[])
    speech_token = api.token("tts_websocket", speech.secret, {"end_user_id": "user-42"}).json()["token"]
    for token_type, key in (("batch_scribe", speech.secret), ("nope", speech.secret), ("tts_websocket", None)):
        error_bodies.append(api.token(token_type, key).content)
    emulator.set_faults(fail_next=[503])
    error_bodies.append(api.token("tts_websocket", speech.secret).content)

    # The token-refresh tool: a refresh (the vault renews the token), then refusals.
    from django.utils import timezone

    from secrets_app.models import UserCredential

    UserCredential.objects.update(expires_at=timezone.now())
    refresh_body = {"conversation_id": conversation_id, "agent_id": webhook_agent.remote_id, "provider": "google"}
    refreshed = api.refresh(refresh_body, secret).json()["access_token"]
    assert refreshed.startswith("fresh-google-token-") and refreshed != fresh
    for body, presented in (({**refresh_body, "conversation_id": "conv_other"}, secret),
                            ({**refresh_body, "agent_id": second_agent.remote_id}, secret),
                            ({**refresh_body, "provider": "slack"}, secret), (refresh_body, secret[:-1] + "0")):
        error_bodies.append(api.refresh(body, presented).content)

    # The admin: issue (the one page that shows a key) and list.
    client = login(owner)
    client.get("/admin/broker/brokerkey/")
    services.broker_key_revoke(actor=owner, key=issued.key)
    error_bodies.append(api.session(webhook_agent.remote_id, issued.secret).content)

    credentials = [json.loads(m).get("signed_url") or json.loads(m).get("conversation_token") for m in minted]
    signatures = [c.split("conversation_signature=")[1].split("&")[0] if "signature=" in c else c for c in credentials]
    assert len(signatures) >= 3
    canaries = {"platform key": EMULATOR_KEY, "stale vault token": STALE, "fresh vault token": fresh,
                "refresh token": "refresh-user-42-Lp02", "provider client secret": "google-client-secret-Q7w",
                "broker key": issued.secret, "webhook secret": secret, "speech broker key": speech.secret,
                "single-use token": speech_token, "refreshed vault token": refreshed,
                **{f"credential {i}": s for i, s in enumerate(signatures)}}
    logs = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    audit = repr(list(AuditEvent.objects.values()))
    errors = b"\n".join(error_bodies).decode()
    database = _raw_database_text()
    assert len(error_bodies) >= 26
    for name, value in canaries.items():
        assert value not in logs, f"{name} in a log line"
        assert value not in audit, f"{name} in an audit row"
        assert value not in errors, f"{name} in an error body"
        assert value not in database, f"{name} in the database"
