"""The conversation-initiation webhook: configuring it on the platform, its shared secret, and the answer."""

import uuid

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import OperationalError

from agents import services as agent_services
from agents import webhook
from agents.sync import agent_payload
from broker import services
from broker.models import BrokerSession
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from tests.factories import make_agent, make_vault_credential

pytestmark = pytest.mark.django_db

VARIABLE = "secret__user_google_token"


def _conversation_for(api, issued, agent, end_user_id="user-42", mode="conversation_token"):
    response = api.session(agent.remote_id, issued.secret, {"end_user_id": end_user_id, "mode": mode})
    assert response.status_code == 200, response.content
    return response.json()["conversation_id"]


# --- turning it on and off --------------------------------------------------------------------------------
def test_turning_the_webhook_on_configures_the_agent_on_the_platform_through_the_outbox(
        webhook_agent, owner, platform, emulator, django_capture_on_commit_callbacks):
    remote = platform.get_agent(webhook_agent.remote_id)["platform_settings"]
    hook = remote["workspace_overrides"]["conversation_initiation_client_data_webhook"]
    # The header references a platform workspace secret: the value is in no agent config.
    secret_id = webhook_agent.webhook_secret_remote_id
    assert hook == {"url": "http://127.0.0.1:8000/api/v1/platform/conversation-initiation",
                    "request_headers": {webhook.HEADER: {"secret_id": secret_id}}}
    assert emulator.secret_value(secret_id) == webhook.agent_secret(webhook_agent)
    assert platform.get_secret(secret_id)["name"] == f"keyward-webhook-{webhook_agent.uuid.hex}"
    assert platform.get_secret(secret_id)["used_by"]["others"] == ["conversation_initiation_webhook"]
    assert webhook_agent.webhook_secret_key_id == webhook.key_id()
    assert remote["overrides"]["enable_conversation_initiation_client_data_from_webhook"] is True
    assert SyncJob.objects.filter(kind="agent", object_id=str(webhook_agent.pk), state="done").count() >= 2
    event = AuditEvent.objects.get(action="agent.credential_webhook")
    assert event.changes == {"credential_webhook": [False, True]}
    assert webhook.agent_secret(webhook_agent) not in str(SyncJob.objects.values_list("payload", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_credential_webhook_set(actor=owner, agent=webhook_agent, enabled=False)
    remote = platform.get_agent(webhook_agent.remote_id)["platform_settings"]
    assert remote["workspace_overrides"]["conversation_initiation_client_data_webhook"] is None
    assert remote["overrides"]["enable_conversation_initiation_client_data_from_webhook"] is False
    # Off: the secret is deleted once no agent references it.
    assert secret_id not in {s["secret_id"] for s in platform.list_secrets()}
    webhook_agent.refresh_from_db()
    assert (webhook_agent.webhook_secret_remote_id, webhook_agent.webhook_secret_key_id) == ("", "")


def test_reconcile_reports_a_webhook_changed_on_the_platform_without_a_secret_and_resync_repairs_it(
        webhook_agent, owner, platform, settings):
    from agents import sync as agent_sync
    from project.sync import services as sync_services
    from project.sync.models import Drift

    def reconcile(kind="agent"):
        run = sync_services.reconcile_start(actor=owner, kinds=[kind], enqueue=False)
        sync_services.reconcile_run(run=run)
        return {d.object_id: d for d in Drift.objects.filter(kind=kind)}

    def repair():
        sync_services.resync_run(run=sync_services.resync_start(actor=owner, kind="agent", enqueue=False))
        sync_services.outbox_drain()
        webhook_agent.refresh_from_db()

    def set_hook(url, header_value, enabled=True):
        platform.update_agent(webhook_agent.remote_id, platform_settings={
            "workspace_overrides": {"conversation_initiation_client_data_webhook": {
                "url": url, "request_headers": {webhook.HEADER: header_value}}},
            "overrides": {"enable_conversation_initiation_client_data_from_webhook": enabled}})

    assert str(webhook_agent.pk) not in reconcile()
    assert not reconcile("secret")  # the agent's webhook secret is Keyward's, not unknown
    secret_id = webhook_agent.webhook_secret_remote_id

    # Pointed elsewhere by hand, with the secret pasted in plain text: reported with labels, never values.
    stolen = webhook.agent_secret(webhook_agent)
    set_hook("https://attacker.example/hook", stolen, enabled=False)
    drift = reconcile()[str(webhook_agent.pk)]
    assert drift.problem == "differs"
    assert drift.fields == {
        agent_sync.WEBHOOK_ENABLED: [True, False],
        agent_sync.WEBHOOK_URL: ["http://127.0.0.1:8000/api/v1/platform/conversation-initiation",
                                 "https://attacker.example/hook"],
        agent_sync.WEBHOOK_SECRET: ["Keyward's secret, current key", "a plain-text value"],
    }
    assert stolen not in str(drift.fields)
    repair()
    assert str(webhook_agent.pk) not in reconcile()

    # BROKER_WEBHOOK_KEY changed: the agent is reported (an older key may still verify) until re-pushed.
    settings.BROKER_WEBHOOK_KEY = ["n" * 40]
    assert reconcile()[str(webhook_agent.pk)].fields == {
        agent_sync.WEBHOOK_SECRET: ["Keyward's secret, current key", "Keyward's secret, older key"]}
    repair()
    assert str(webhook_agent.pk) not in reconcile()
    assert webhook_agent.webhook_secret_remote_id == secret_id  # rewritten in place, same reference

    # The secret deleted on the platform (the agent first pointed at another one, so the delete is allowed).
    other = platform.create_secret(name="someone-else", value="x" * 20)["secret_id"]
    set_hook(webhook.webhook_url(), {"secret_id": other})
    assert reconcile()[str(webhook_agent.pk)].fields == {
        agent_sync.WEBHOOK_SECRET: ["Keyward's secret, current key", "another secret"]}
    platform.delete_secret(secret_id)
    set_hook(webhook.webhook_url(), {"secret_id": other})
    repair()
    new_id = webhook_agent.webhook_secret_remote_id
    assert new_id != secret_id and str(webhook_agent.pk) not in reconcile()
    hook = platform.get_agent(webhook_agent.remote_id)["platform_settings"]["workspace_overrides"][
        "conversation_initiation_client_data_webhook"]
    assert hook["request_headers"] == {webhook.HEADER: {"secret_id": new_id}}


def test_a_webhook_secret_in_use_cannot_be_deleted_and_deleting_the_agent_deletes_it(
        webhook_agent, owner, platform, django_capture_on_commit_callbacks):
    from agents import services as agent_services
    from project.platform import errors

    secret_id = webhook_agent.webhook_secret_remote_id
    with pytest.raises(errors.PlatformError) as refused:
        platform.delete_secret(secret_id)
    assert refused.value.has_code("secret_in_use") and "conversation initiation webhook" in refused.value.message
    with django_capture_on_commit_callbacks(execute=True):
        agent_services.agent_delete(actor=owner, agent=webhook_agent)
    assert secret_id not in {s["secret_id"] for s in platform.list_secrets()}


def test_upgrade_moves_a_plain_header_secret_into_a_platform_secret(webhook_agent, platform):
    """Before the secret moved into a platform secret, it was a plain header: the migration queues the agents
    that still have one, and the drain fixes them."""
    import importlib

    from django.apps import apps

    from agents.models import Agent
    from project.sync import services as sync_services

    migration = importlib.import_module("agents.migrations.0004_push_webhook_secrets")
    secret_id = webhook_agent.webhook_secret_remote_id
    # The state an older release left: the secret in plain text in the agent's config, no platform secret.
    platform.update_agent(webhook_agent.remote_id, platform_settings={"workspace_overrides": {
        "conversation_initiation_client_data_webhook": {
            "url": webhook.webhook_url(), "request_headers": {webhook.HEADER: webhook.agent_secret(webhook_agent)}}}})
    platform.delete_secret(secret_id)
    Agent.objects.filter(pk=webhook_agent.pk).update(webhook_secret_remote_id="", webhook_secret_key_id="")

    migration.forwards(apps, None)
    migration.forwards(apps, None)  # run twice (or with a job already pending): still one job
    assert SyncJob.objects.filter(kind="agent", object_id=str(webhook_agent.pk), state="pending").count() == 1
    sync_services.outbox_drain()
    webhook_agent.refresh_from_db()
    hook = platform.get_agent(webhook_agent.remote_id)["platform_settings"]["workspace_overrides"][
        "conversation_initiation_client_data_webhook"]
    assert hook["request_headers"] == {webhook.HEADER: {"secret_id": webhook_agent.webhook_secret_remote_id}}
    assert webhook_agent.webhook_secret_remote_id
    migration.forwards(apps, None)  # nothing left to move
    assert not SyncJob.objects.filter(kind="agent", state="pending").exists()


def test_an_agent_keyward_never_managed_keeps_its_own_platform_webhook(signed_agent):
    assert set(agent_payload(signed_agent)["platform_settings"]) == {"auth"}


def test_turning_it_on_needs_agents_manage(signed_agent, viewer, outsider):
    for person in (viewer, outsider):
        with pytest.raises(PermissionDenied):
            agent_services.agent_credential_webhook_set(actor=person, agent=signed_agent, enabled=True)


def test_a_public_agent_needs_caller_ids_to_identify_anyone(workspace, owner, platform):
    agent = make_agent(workspace, "Phone line", synced=True, auth_mode="public", max_duration_seconds=300)
    with pytest.raises(ValidationError, match="identify no end user"):
        agent_services.agent_credential_webhook_set(actor=owner, agent=agent, enabled=True)
    agent_services.agent_credential_webhook_set(actor=owner, agent=agent, enabled=True, trust_caller_id=True)


def test_production_refuses_a_plain_http_webhook_url(signed_agent, owner, settings):
    settings.PRODUCTION = True
    settings.BROKER_PUBLIC_URL = "http://keyward.example.com"
    with pytest.raises(ValidationError, match="https"):
        agent_services.agent_credential_webhook_set(actor=owner, agent=signed_agent, enabled=True)


def test_admin_page_turns_it_on_for_managers_only(signed_agent, owner, member, viewer, platform,
                                                  django_capture_on_commit_callbacks):
    from tests.conftest import login

    url = f"/admin/broker/webhookagent/{signed_agent.pk}/change/"
    assert login(viewer).post(url, {"credential_webhook": "on"}).status_code == 403
    page = login(owner).get(url).content.decode()
    assert webhook.agent_secret(signed_agent) not in page and "conversation-initiation" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert login(member).post(url, {"credential_webhook": "on"}).status_code == 302
    signed_agent.refresh_from_db()
    assert signed_agent.credential_webhook


# --- the shared secret --------------------------------------------------------------------------------------
def test_a_missing_or_wrong_secret_is_refused(api, webhook_agent, settings):
    genuine = webhook.agent_secret(webhook_agent)
    forged = genuine[:-4] + ("0000" if not genuine.endswith("0000") else "1111")
    other_key = genuine  # the same agent's secret under another BROKER_WEBHOOK_KEY
    settings.BROKER_WEBHOOK_KEY = ["another-webhook-signing-key-0123456789abcdef"]
    bodies = set()
    for secret in (None, "", "Bearer x", forged, other_key, f"kw_hook_{uuid.uuid4().hex}_{'a' * 64}"):
        response = api.webhook({"agent_id": webhook_agent.remote_id}, secret)
        assert response.status_code == 401, secret
        bodies.add(response.content)
    assert len(bodies) == 1 and b"invalid_webhook_secret" in bodies.pop()
    assert not AuditEvent.objects.filter(action="broker.webhook_answer").exists()


def test_one_agents_secret_cannot_speak_for_another(api, webhook_agent, second_agent):
    response = api.webhook({"agent_id": second_agent.remote_id}, webhook.agent_secret(webhook_agent))
    assert response.status_code == 403 and response.json()["error"] == "agent_mismatch"


def test_a_rotated_signing_key_still_verifies_until_it_is_dropped(api, webhook_agent, settings):
    old, new = "old-webhook-signing-key-0123456789abcdefgh", "new-webhook-signing-key-0123456789abcdefgh"
    settings.BROKER_WEBHOOK_KEY = [old]
    old_secret = webhook.agent_secret(webhook_agent)
    settings.BROKER_WEBHOOK_KEY = [new, old]
    assert webhook.agent_secret(webhook_agent) != old_secret
    assert api.webhook({"agent_id": webhook_agent.remote_id}, old_secret).status_code == 200
    settings.BROKER_WEBHOOK_KEY = [new]
    assert api.webhook({"agent_id": webhook_agent.remote_id}, old_secret).status_code == 401


def test_an_agent_with_the_webhook_off_gets_404(api, signed_agent):
    response = api.webhook({}, webhook.agent_secret(signed_agent))
    assert response.status_code == 404 and response.json()["error"] == "webhook_not_enabled"


# --- the answer ---------------------------------------------------------------------------------------------
def test_the_answer_carries_a_refreshed_token_and_never_the_stale_one(api, issue, webhook_agent, workspace, google,
                                                                     token_endpoint):
    issued = issue()
    stale = "stale-google-token-expiring-Kk20"
    make_vault_credential(workspace, google, "user-42", stale, expires_in=60)  # inside the refresh window
    conversation_id = _conversation_for(api, issued, webhook_agent)
    response = api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                           webhook.agent_secret(webhook_agent))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "conversation_initiation_client_data"
    assert body["dynamic_variables"] == {VARIABLE: "fresh-google-token-0001-Zx81q"}
    assert stale not in response.content.decode() and token_endpoint.refreshes == 1
    assert response["Cache-Control"] == "no-store"
    event = AuditEvent.objects.get(action="broker.webhook_answer")
    assert event.changes["end_user_id"] == "user-42" and event.changes["identified_by"] == "session"
    assert event.changes["variables"] == [VARIABLE] and "fresh-google" not in str(event.changes)


def test_an_expired_token_whose_refresh_fails_is_not_sent(api, issue, webhook_agent, workspace, google,
                                                          token_endpoint):
    issued = issue()
    token_endpoint.fail = True
    make_vault_credential(workspace, google, "user-42", "stale-google-token-expired-Kk20", expires_in=-10)
    conversation_id = _conversation_for(api, issued, webhook_agent)
    response = api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                           webhook.agent_secret(webhook_agent))
    assert response.status_code == 200 and response.json()["dynamic_variables"] == {}
    assert token_endpoint.refreshes == 1 and "stale-google" not in response.content.decode()


@pytest.mark.parametrize("placement", ["field", "query"])
def test_a_signed_url_session_binds_its_conversation_too(api, issue, webhook_agent, workspace, google,
                                                        token_endpoint, emulator, placement):
    # The platform's placement of the id is undocumented: a top-level conversation_id, or one in the URL's query.
    emulator.signed_url_conversation_id = placement
    issued = issue()
    make_vault_credential(workspace, google, "user-7", "valid-google-token-user7-Mm31", expires_in=3600)
    conversation_id = _conversation_for(api, issued, webhook_agent, end_user_id="user-7", mode="signed_url")
    response = api.webhook({"agent_id": webhook_agent.remote_id,
                            "dynamic_variables": {"system__conversation_id": conversation_id}},
                           webhook.agent_secret(webhook_agent))
    assert response.json()["dynamic_variables"] == {VARIABLE: "valid-google-token-user7-Mm31"}
    assert token_endpoint.refreshes == 0


def test_a_signed_url_without_a_conversation_id_says_the_webhook_cannot_serve_it(api, issue, webhook_agent,
                                                                                 emulator):
    emulator.signed_url_conversation_id = "none"
    issued = issue()
    response = api.session(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-7", "mode": "signed_url"})
    assert response.status_code == 200
    body = response.json()
    assert "conversation_id" not in body
    assert body["credential_webhook"]["available"] is False and "mode=token" in body["credential_webhook"]["reason"]
    assert not BrokerSession.objects.exists()  # never a binding with an empty id


def test_the_agent_page_says_whether_signed_url_sessions_can_be_served(api, issue, webhook_agent, emulator, owner):
    from tests.conftest import login

    url = f"/admin/broker/webhookagent/{webhook_agent.pk}/change/"
    assert "no signed-URL session has been opened yet" in login(owner).get(url).content.decode()
    issued = issue()
    emulator.signed_url_conversation_id = "none"
    api.session(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-7", "mode": "signed_url"})
    assert "Not served: the latest signed URL came without a conversation id" in login(owner).get(url).content.decode()
    emulator.signed_url_conversation_id = "field"
    api.session(webhook_agent.remote_id, issued.secret, {"end_user_id": "user-7", "mode": "signed_url"})
    assert "Served: the latest signed-URL session came with a conversation id" in \
        login(owner).get(url).content.decode()


def test_a_user_id_the_browser_could_set_is_not_trusted(api, webhook_agent, workspace, google, token_endpoint):
    make_vault_credential(workspace, google, "victim", "victims-google-token-Pq55", expires_in=3600)
    response = api.webhook({"agent_id": webhook_agent.remote_id, "dynamic_variables": {"user_id": "victim"},
                            "conversation_id": "conv_unknown"},
                           webhook.agent_secret(webhook_agent))
    assert response.status_code == 200 and response.json()["dynamic_variables"] == {}


def test_an_expired_session_binding_is_not_used(api, issue, webhook_agent, workspace, google, token_endpoint):
    from django.utils import timezone

    issued = issue()
    make_vault_credential(workspace, google, "user-42", "valid-google-token-Ab12", expires_in=3600)
    conversation_id = _conversation_for(api, issued, webhook_agent)
    BrokerSession.objects.update(expires_at=timezone.now())
    response = api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                           webhook.agent_secret(webhook_agent))
    assert response.json()["dynamic_variables"] == {}


def test_phone_callers_are_identified_by_caller_id_only_when_trusted(api, webhook_agent, owner, workspace, google,
                                                                    token_endpoint):
    make_vault_credential(workspace, google, "+14155550123", "phone-user-token-Hh72", expires_in=3600)
    call = {"caller_id": "+14155550123", "agent_id": webhook_agent.remote_id, "called_number": "+1800",
            "call_sid": "CA123"}
    assert api.webhook(call, webhook.agent_secret(webhook_agent)).json()["dynamic_variables"] == {}
    agent_services.agent_credential_webhook_set(actor=owner, agent=webhook_agent, enabled=True, trust_caller_id=True)
    answer = api.webhook(call, webhook.agent_secret(webhook_agent)).json()
    assert answer["dynamic_variables"] == {VARIABLE: "phone-user-token-Hh72"}


def test_the_vault_being_down_is_a_503(api, webhook_agent, issue, monkeypatch):
    import secrets_app.services as vault

    issued = issue()
    conversation_id = _conversation_for(api, issued, webhook_agent)

    def down(**kwargs):
        raise OperationalError("vault database unreachable")

    monkeypatch.setattr(vault, "credential_fresh_tokens", down)
    response = api.webhook({"agent_id": webhook_agent.remote_id, "conversation_id": conversation_id},
                           webhook.agent_secret(webhook_agent))
    assert response.status_code == 503 and response.json()["error"] == "vault_unavailable"


def test_a_bad_body_is_a_400_after_the_secret_checked_out(api, webhook_agent):
    response = api.client.post("/api/v1/platform/conversation-initiation", data=b"[1, 2]",
                               content_type="application/json",
                               HTTP_X_KEYWARD_WEBHOOK_SECRET=webhook.agent_secret(webhook_agent))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_webhook_list_shows_each_agents_state_to_viewers_of_its_workspace(webhook_agent, second_agent, member,
                                                                          outsider):
    from tests.conftest import login

    listing = login(member).get("/admin/broker/webhookagent/").content.decode()
    assert webhook_agent.name in listing and second_agent.name in listing
    assert webhook_agent.name not in login(outsider).get("/admin/broker/webhookagent/").content.decode()
    assert login(outsider).get(f"/admin/broker/webhookagent/{webhook_agent.pk}/change/").status_code == 404
    page = login(member).get(f"/admin/broker/webhookagent/{webhook_agent.pk}/change/").content.decode()
    assert f"keyward-webhook-{webhook_agent.uuid.hex} ({webhook_agent.webhook_secret_remote_id}; current signing key)" \
        in page
    assert webhook.agent_secret(webhook_agent) not in page
    other = login(member).get(f"/admin/broker/webhookagent/{second_agent.pk}/change/").content.decode()
    assert '<div class="readonly">none</div>' in other


def test_expired_session_bindings_are_pruned_and_the_prune_audited(api, issue, webhook_agent):
    from datetime import timedelta

    from django.utils import timezone

    issued = issue()
    _conversation_for(api, issued, webhook_agent)
    fresh = _conversation_for(api, issued, webhook_agent, end_user_id="user-9")
    BrokerSession.objects.exclude(conversation_id=fresh).update(expires_at=timezone.now() - timedelta(days=2))
    assert services.broker_sessions_prune(actor=SYSTEM) == 1
    assert list(BrokerSession.objects.values_list("conversation_id", flat=True)) == [fresh]
    assert AuditEvent.objects.get(action="broker.sessions_prune").changes["deleted"] == 1


def test_the_prune_deletes_in_batches_keeps_what_is_within_retention_and_is_scheduled(api, issue, webhook_agent,
                                                                                   settings):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from broker import tasks
    from project.celery import app

    issued = issue()
    conversations = [_conversation_for(api, issued, webhook_agent, end_user_id=f"user-{n}") for n in range(5)]
    now = timezone.now()
    # Two expired long ago, one expired within the retention, two still live.
    BrokerSession.objects.filter(conversation_id__in=conversations[:2]).update(expires_at=now - timedelta(hours=30))
    BrokerSession.objects.filter(conversation_id=conversations[2]).update(expires_at=now - timedelta(hours=2))
    settings.BROKER_SESSION_RETENTION_HOURS = 24
    assert services.broker_sessions_prune(actor=SYSTEM, batch=1) == 2  # three batches: 1, 1, then none
    assert set(BrokerSession.objects.values_list("conversation_id", flat=True)) == set(conversations[2:])
    assert AuditEvent.objects.filter(action="broker.sessions_prune").count() == 1
    assert services.broker_sessions_prune(actor=SYSTEM) == 0  # nothing to do: no audit line for nothing
    assert AuditEvent.objects.filter(action="broker.sessions_prune").count() == 1

    settings.BROKER_SESSION_RETENTION_HOURS = 1
    assert tasks.prune_sessions.apply().get() == 1
    assert set(BrokerSession.objects.values_list("conversation_id", flat=True)) == set(conversations[3:])
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="negative"):
        call_command("broker_prune_sessions", "--days", "-1")
    assert BrokerSession.objects.count() == 2

    app.loader.import_default_modules()
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled["broker.prune_sessions"] == settings.BROKER_PRUNE_INTERVAL_SECONDS
