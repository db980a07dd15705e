"""Discover and adopt every kind besides agents (issue 17) on the seeded globex account (demo_seed.json): workspace
secrets (values held by the platform only), tools with their secret headers, auth connections, service accounts
and API keys (usage joined on the platform's key hash; revoke, suspend, rotate)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from keys.models import ApiKey, KeyUsageHourly
from keys.selectors import allocated_quota
from keys.services import api_key_revoke, api_key_rotate, api_key_suspend, api_key_usage_ingest
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.platform import client as platform_client
from project.platform.emulator import Emulator
from project.sync.models import DiscoveryRun, Observation, SyncJob
from project.sync.services import discovery, job_enqueue, outbox_drain
from secrets_app.models import AuthConnection, Secret, Tool
from secrets_app.services import auth_connection_save, secret_delete, secret_update, tool_update, tools_using
from workspaces.models import ServiceAccount

pytestmark = pytest.mark.django_db

SEED = json.loads((Path(__file__).resolve().parents[2] / "project/platform/emulator/demo_seed.json").read_text())


@pytest.fixture
def seeded(globex):
    globex.emulator.seed(SEED)
    return globex


def _discover(tenant) -> DiscoveryRun:
    run = discovery.discovery_start(actor=SYSTEM, account_id=tenant.account.pk, enqueue=False)
    return discovery.discovery_run(run=run)


def _adopt_all(tenant):
    _discover(tenant)
    return discovery.adopt(actor=SYSTEM, account_id=tenant.account.pk, workspace_id=tenant.workspace.pk)


def _remote(emulator: Emulator, kind: str, name: str) -> dict:
    snapshot = emulator.state_snapshot()
    if kind == "tools":
        return next(t for t in snapshot["tools"] if t["tool_config"]["name"] == name)
    return next(o for o in snapshot[kind] if o["name"] == name)


def test_discovery_reads_every_kind_with_its_facts_and_never_a_value(seeded, admin_client):
    run = _discover(seeded)
    assert run.state == "done", run.error
    assert {k: run.counts[k] for k in ("secret", "tool", "auth_connection", "service_account", "api_key")} == {
        "secret": 3, "tool": 2, "auth_connection": 1, "service_account": 2, "api_key": 3}
    # Keyward's own key (in service account "keyward") is governed, not offered.
    assert run.unmanaged["api_key"] == 2 and run.unmanaged["secret"] == 3
    own = Observation.objects.get(kind="api_key", object_id__startswith="platform_account:")
    assert own.object_id == f"platform_account:{seeded.account.pk}"
    nightly = Observation.objects.get(kind="api_key", label="nightly reports")
    remote = _remote(seeded.emulator, "api_keys", "nightly reports")
    assert nightly.facts["permissions"] == ["convai_read"] and nightly.facts["allowed_ips"] == ["203.0.113.0/24"]
    assert nightly.facts["character_limit"] == 50000 and nightly.facts["platform_hash"] == remote["hashed_xi_api_key"]
    assert nightly.facts["hint"] == remote["hint"] and nightly.facts["is_disabled"] is False
    assert nightly.facts["service_account_id"] == remote["service_account_user_id"]
    assert {"expires_at_unix", "disable_reason", "created_at_unix", "name"} <= set(nightly.facts)
    assert Observation.objects.get(kind="api_key", label="deploy pipeline").facts["permissions"] == "all"
    ticket = Observation.objects.get(kind="tool", label="open_ticket")
    zendesk = Observation.objects.get(kind="secret", label="zendesk_api_token")
    assert ticket.facts["secret_ids"] == [zendesk.remote_id] and zendesk.facts["tools"] == [ticket.remote_id]
    assert ticket.facts["headers"]["Content-Type"] == {"text": "application/json"}
    assert Observation.objects.get(kind="auth_connection").facts["auth_type"] == "bearer_auth"
    everything = str(list(Observation.objects.values_list("facts", flat=True)))
    values = [seeded.emulator.secret_value(o.remote_id) for o in Observation.objects.filter(kind="secret")]
    assert "demo-erp-bearer-token-0000" not in everything and not any(v in everything for v in values)
    page = admin_client.get(reverse("admin:sync_observation_changelist") + "?kind=api_key").content.decode()
    assert "Keyward&#x27;s own" in page and "nightly reports" in page


def test_adopting_everything_links_each_kind_audits_each_object_and_changes_nothing_remotely(seeded):
    _discover(seeded)
    before = seeded.emulator.state_snapshot()
    report = discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk)
    assert seeded.emulator.state_snapshot() == before
    assert not report.refused
    assert {k: report.adopted[k] for k in ("secret", "tool", "auth_connection", "service_account", "api_key")} == {
        "secret": 3, "tool": 2, "auth_connection": 1, "service_account": 2, "api_key": 2}
    assert AuditEvent.objects.filter(action="platform.adopt").count() == report.total
    assert not Observation.objects.filter(object_id="").exclude(kind="convai_settings").exists()
    # Secrets: Keyward's names, the platform's kept, no value.
    names = dict(Secret.objects.values_list("name", "platform_name"))
    assert names == {"zendesk_api_token": "zendesk_api_token", "salesforce_refresh": "Salesforce-Refresh",
                     "legacy_unused_password": "legacy_unused_password"}
    assert not Secret.objects.filter(value_known=True).exists()
    refresh = Secret.objects.get(name="salesforce_refresh")
    assert refresh.remote_name == "Salesforce-Refresh" and refresh.value == ""
    # Tools reference the adopted secrets: who uses a secret, and no deleting it while used.
    ticket = Tool.objects.get(name="open_ticket")
    assert ticket.headers == {"Authorization": "{{ secret__zendesk_api_token }}", "Content-Type": "application/json"}
    assert ticket.remote_id == _remote(seeded.emulator, "tools", "open_ticket")["id"] and ticket.method == "POST"
    assert tools_using(refresh) == ["crm_lookup"]
    with pytest.raises(ValidationError, match="used by the tool crm_lookup"):
        secret_delete(actor=SYSTEM, secret=refresh)
    secret_delete(actor=SYSTEM, secret=Secret.objects.get(name="legacy_unused_password"))  # unused: it may go
    # The auth connection: its kind and plain fields, credentials unknown.
    conn = AuthConnection.objects.get()
    assert (conn.name, conn.kind, conn.secrets_known, conn.token) == ("globex-erp", "bearer_auth", False, "")
    # Keys: the platform's hash kept, no digest, in the production environment of their service account.
    ci = ServiceAccount.objects.get(name="globex-ci")
    nightly = ApiKey.objects.get(name="nightly reports")
    remote = _remote(seeded.emulator, "api_keys", "nightly reports")
    assert (nightly.origin, nightly.state, nightly.digest) == ("adopted", "active", "")
    assert nightly.platform_hash == remote["hashed_xi_api_key"] and nightly.hint == remote["hint"]
    assert nightly.service_account == ci and ci.remote_id == remote["service_account_user_id"]
    assert nightly.environment.is_production and nightly.environment.workspace == seeded.workspace
    assert (nightly.scopes, nightly.allowed_ips, nightly.credit_quota) == (["convai_read"], ["203.0.113.0/24"], 50000)
    assert ApiKey.objects.get(name="deploy pipeline").scopes == "all"
    assert ApiKey.objects.count() == 2  # Keyward's own key is not among them
    assert allocated_quota(nightly.environment_id) == 50000  # counted against the environment's budget


def test_adopting_one_object_pulls_in_what_it_needs(seeded):
    _discover(seeded)
    tool = Observation.objects.get(kind="tool", label="crm_lookup")
    key = Observation.objects.get(kind="api_key", label="deploy pipeline")
    report = discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk,
                             observation_ids=[tool.pk, key.pk])
    assert report.adopted == {"secret": 1, "tool": 1, "service_account": 1, "api_key": 1}
    assert list(Secret.objects.values_list("platform_name", flat=True)) == ["Salesforce-Refresh"]
    assert ApiKey.objects.get().service_account.name == "globex-ci"


def test_rerunning_is_idempotent_and_reports_objects_deleted_on_the_platform(seeded):
    _adopt_all(seeded)
    emulator = seeded.emulator
    legacy = Observation.objects.get(kind="secret", label="legacy_unused_password")
    nightly = _remote(emulator, "api_keys", "nightly reports")
    with emulator._lock:
        del emulator._secrets[legacy.remote_id]
        del emulator._keys[nightly["key_id"]]
    emulator.seed({"secrets": [{"name": "new_one"}]})
    run = _discover(seeded)
    assert run.gone_count == 2 and sorted(run.gone) == ["api_key nightly reports", "secret legacy_unused_password"]
    assert run.unmanaged["secret"] == 1 and run.unmanaged["api_key"] == 0 and run.unmanaged["tool"] == 0
    report = discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk)
    assert report.adopted == {"secret": 1} and not report.refused
    again = discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk)
    assert again.total == 0 and Secret.objects.count() == 4


def test_an_adopted_secret_sends_nothing_until_a_new_value_makes_it_fully_managed(seeded, admin_client):
    _adopt_all(seeded)
    refresh = Secret.objects.get(name="salesforce_refresh")
    old_value = seeded.emulator.secret_value(refresh.remote_id)
    page = admin_client.get(reverse("admin:secrets_app_secret_change", args=[refresh.pk])).content.decode()
    assert "value held by the platform only" in page
    secret_update(actor=SYSTEM, secret=refresh, description="CRM refresh token")
    outbox_drain()
    assert seeded.emulator.secret_value(refresh.remote_id) == old_value  # nothing of a value was sent
    assert SyncJob.objects.get(kind="secret").state == "done"
    with pytest.raises(ValidationError, match="renames a secret only with its value"):
        secret_update(actor=SYSTEM, secret=Secret.objects.get(name="legacy_unused_password"), name="old_password")
    secret_update(actor=SYSTEM, secret=refresh, value="new-refresh-value-1234")
    outbox_drain()
    refresh.refresh_from_db()
    assert refresh.value_known and refresh.value == "new-refresh-value-1234"
    assert seeded.emulator.secret_value(refresh.remote_id) == "new-refresh-value-1234"
    assert _remote(seeded.emulator, "secrets", "Salesforce-Refresh")["secret_id"] == refresh.remote_id
    page = admin_client.get(reverse("admin:secrets_app_secret_change", args=[refresh.pk])).content.decode()
    assert "value held by the platform only" not in page and "new-refresh-value-1234" not in page


def test_a_tool_push_changes_only_what_keyward_governs(seeded):
    _adopt_all(seeded)
    tool = Tool.objects.get(name="open_ticket")
    emulator = seeded.emulator
    body_schema = {"type": "object", "properties": {"subject": {"type": "string", "description": "Ticket subject"}}}
    with emulator._lock:  # set on the platform, not governed by Keyward
        emulator._tools[tool.remote_id]["tool_config"]["api_schema"]["request_body_schema"] = body_schema
        emulator._tools[tool.remote_id]["tool_config"]["dynamic_variables"] = {"dynamic_variable_placeholders": {}}
    tool_update(actor=SYSTEM, tool=tool, description="Open a ticket for the caller (adopted).")
    outbox_drain()
    config = _remote(emulator, "tools", "open_ticket")["tool_config"]
    assert config["description"] == "Open a ticket for the caller (adopted)."
    assert config["api_schema"]["request_body_schema"] == body_schema
    assert config["dynamic_variables"] == {"dynamic_variable_placeholders": {}}
    zendesk = Secret.objects.get(name="zendesk_api_token")
    assert config["api_schema"]["request_headers"] == {"Authorization": {"secret_id": zendesk.remote_id},
                                                       "Content-Type": "application/json"}


def test_an_adopted_auth_connection_never_sends_an_empty_credential(seeded, admin_client):
    _adopt_all(seeded)
    conn = AuthConnection.objects.get()
    page = admin_client.get(reverse("admin:secrets_app_authconnection_change", args=[conn.pk])).content.decode()
    assert "value held by the platform only" in page
    job_enqueue(kind="auth_connection", object_id=conn.pk, workspace_id=conn.workspace_id)  # a bulk re-sync
    outbox_drain()
    assert SyncJob.objects.get(kind="auth_connection").state == "done"
    assert seeded.emulator.auth_connection_secret(conn.remote_id) == {"token": "demo-erp-bearer-token-0000"}
    with pytest.raises(ValidationError):  # changing it needs its credential
        auth_connection_save(actor=SYSTEM, workspace=seeded.workspace, connection=conn, provider="erp")
    auth_connection_save(actor=SYSTEM, workspace=seeded.workspace, connection=conn, provider="custom",
                         secrets={"token": "new-erp-token-5678"})
    outbox_drain()
    conn = AuthConnection.objects.get()
    assert conn.secrets_known and conn.remote_name == "globex-erp"
    assert seeded.emulator.auth_connection_secret(conn.remote_id) == {"token": "new-erp-token-5678"}


def test_an_adopted_keys_usage_reaches_detection_through_the_platforms_hash(seeded):
    _adopt_all(seeded)
    nightly = ApiKey.objects.get(name="nightly reports")
    seeded.emulator.add_usage([{"hashed_xi_api_key": nightly.platform_hash, "time_ms": int(time.time() * 1000) - 60_000,
                                "credits": 42, "requests": 3}])
    client = platform_client.client_for_account(seeded.account.pk)
    result = api_key_usage_ingest(client=client)  # the ingest joins on ApiKey.platform_hash
    assert result["keys"] == 1 and result["unknown_hashes"] == 0, result
    hour = KeyUsageHourly.objects.get(key=nightly)
    assert (hour.credits, hour.requests, hour.awaiting_rules) == (42, 3, True)  # detection's rules take it
    nightly.refresh_from_db()
    assert nightly.last_used_at is not None


def test_an_adopted_key_can_be_suspended_revoked_and_rotated_on_the_platform(seeded):
    _adopt_all(seeded)
    emulator = seeded.emulator
    nightly = ApiKey.objects.get(name="nightly reports")
    api_key_suspend(actor=SYSTEM, key=nightly, reason="investigating")
    outbox_drain()
    remote = _remote(emulator, "api_keys", "nightly reports")  # its name kept: no Keyward tag added
    assert remote["is_disabled"] is True and remote["permissions"] == ["convai_read"]
    api_key_revoke(actor=SYSTEM, key=nightly, reason="not ours any more")
    outbox_drain()
    assert not any(k["key_id"] == nightly.remote_key_id for k in emulator.state_snapshot()["api_keys"])
    deploy = ApiKey.objects.get(name="deploy pipeline")
    issued = api_key_rotate(actor=SYSTEM, key=deploy)  # the successor is a Keyward key, in the same account
    successor = ApiKey.objects.get(pk=issued.key.pk)
    assert (successor.origin, successor.service_account_id, successor.scopes, successor.state) == (
        "keyward", deploy.service_account_id, "all", "active")
    listed = {k["key_id"]: k for k in emulator.state_snapshot()["api_keys"]}
    assert listed[successor.remote_key_id]["service_account_user_id"] == deploy.service_account.remote_id
    deploy.refresh_from_db()
    assert deploy.state == "superseded" and deploy.remote_key_id in listed


def test_adoption_refusals_are_clear_and_change_nothing(seeded, acme):
    _discover(seeded)
    key = Observation.objects.get(kind="api_key", label="nightly reports")
    with pytest.raises(ValidationError, match="bound to another platform account"):
        discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=acme.workspace.pk,
                        observation_ids=[key.pk])
    discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk,
                    observation_ids=[key.pk])
    with pytest.raises(ValidationError, match="Already adopted"):
        discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk,
                        observation_ids=[key.pk])
    DiscoveryRun.objects.create(account_id=seeded.account.pk, state="running")
    tool = Observation.objects.get(kind="tool", label="open_ticket")
    with pytest.raises(ValidationError, match="discovery of this platform account is running"):
        discovery.adopt(actor=SYSTEM, account_id=seeded.account.pk, workspace_id=seeded.workspace.pk,
                        observation_ids=[tool.pk])
    assert (ApiKey.objects.count(), ServiceAccount.objects.count(), Tool.objects.count(), Secret.objects.count()) == (
        1, 1, 0, 0)
    assert AuditEvent.objects.filter(action="platform.adopt").count() == 2  # the key and its service account


def test_a_tool_keyward_cannot_express_is_refused_with_the_reason(globex):
    globex.emulator.seed({"tools": [{"name": "inline", "description": "Sends a key in clear.",
                                     "url": "https://api.example/x",
                                     "headers": {"Authorization": "Bearer sk_live_0123456789abcdef0123456789"}}]})
    _discover(globex)
    report = discovery.adopt(actor=SYSTEM, account_id=globex.account.pk, workspace_id=globex.workspace.pk,
                             kinds=["tool"])
    assert report.adopted.get("tool", 0) == 0 and "credential in plain text" in report.refused[0][1]
    observation = Observation.objects.get(kind="tool")
    assert "sk_live" not in str(observation.facts) and "credential in plain text" in observation.note
    assert not Tool.objects.exists()


def test_the_guardrails_judge_a_platform_key_from_the_facts_discovery_records(seeded):
    nightly = _remote(seeded.emulator, "api_keys", "nightly reports")
    with seeded.emulator._lock:  # made long ago on the platform
        seeded.emulator._keys[nightly["key_id"]]["created_at_unix"] = int(time.time()) - 90 * 86400
    _discover(seeded)  # the guardrails run after every discovery
    findings = dict(Observation.objects.filter(kind="api_key").values_list("label", "findings"))
    # No expiry; IP-limited, few permissions. Not idle: the key list says nothing of its last use, so a key Keyward
    # does not manage is never judged idle (detection.guardrails) until adopted and its usage read.
    assert findings["nightly reports"] == ["key_unbounded"]
    assert findings["deploy pipeline"] == ["key_all_permissions", "key_unbounded"]
    assert findings["admin key"] == []  # Keyward's own platform key: not judged as a team's key
