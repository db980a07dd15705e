"""Show-once pages (an API key's secret, a broker key, a minted signed URL or token, an incident's replacement key,
recovery codes) answer with Cache-Control: no-store: the admin site's never_cache, no header written by hand."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from detection import incidents
from detection.models import Incident
from tests.accounts.conftest import VERIFY_URL, code_for
from tests.admin_pages.conftest import assert_never_cached
from tests.conftest import login
from tests.factories import environment, make_api_key

pytestmark = pytest.mark.django_db


# --- show-once pages: never cached (the admin site's never_cache) -------------------------------------------
def test_api_key_secret_page_is_never_cached(owner_client, account, django_capture_on_commit_callbacks):
    data = {"request_uuid": str(uuid.uuid4()), "service_account": account.pk,
            "environment": environment(account.workspace).pk,
            "name": "billing", "scopes": ["workspace_read"], "credit_quota": "1000", "allowed_ips": "",
            "expires_at": ""}
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("admin:keys_apikey_add"), data)
    assert 'id="api-key-secret"' in response.content.decode()
    assert_never_cached(response)


def test_broker_key_secret_page_is_never_cached(owner, key_fields):
    data = {"workspace": key_fields["workspace"].pk, "service_account": key_fields["service_account"].pk,
            "environment": key_fields["environment"].pk, "name": "from the admin",
            "agents": [a.pk for a in key_fields["agents"]], "allowed_networks": "", "rate_limit_per_minute": 120,
            "session_quota": 5000, "quota_period": "month", "issue_nonce": "nonce-1"}
    response = login(owner).post(reverse("admin:broker_brokerkey_add"), data)
    assert 'id="issued-key"' in response.content.decode()
    assert_never_cached(response)


@pytest.mark.parametrize("kind", ["signed_url", "conversation_token"])
def test_minted_credential_page_is_never_cached(owner_client, signed_agent, workspace, kind):
    response = owner_client.post(reverse("admin:agents_agent_mint", args=[signed_agent.pk]),
                                 {"environment": workspace.environments.get(name="prod").pk, "kind": kind})
    assert 'id="minted-value"' in response.content.decode()
    assert_never_cached(response)


def test_incident_replacement_key_page_is_never_cached(owner, owner_client, account,
                                                       django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    incident, _ = incidents.incident_open(actor=owner, api_key=issued.key, source=Incident.Source.LEAK_CHECK)
    incidents.incident_revoke(actor=owner, incident=incident, reason="leaked")
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("admin:detection_incident_replace", args=[incident.pk]),
                                     {"request_uuid": str(uuid.uuid4())})
    assert 'id="api-key-secret"' in response.content.decode()
    assert_never_cached(response)


def test_recovery_codes_page_is_never_cached(enrolled):
    client = Client()
    client.force_login(enrolled.user)
    assert client.post(VERIFY_URL, {"code": code_for(enrolled.device, 1), "next": "/admin/"}).status_code == 302
    response = client.post(reverse("admin:accounts_recovery_codes"))
    assert "keyward-recovery-codes" in response.content.decode()
    assert_never_cached(response)
