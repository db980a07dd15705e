"""Buttons a person cannot use are not shown; a refused request explains itself; confirmations say what they did."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from keys.models import ApiKey
from project.logging import RedactingFilter
from secrets_app.models import UserCredential
from tests.conftest import login
from tests.factories import (
    ServiceAccountFactory,
    make_agent,
    make_api_key_row,
    make_broker_key,
    make_oauth_provider,
    make_person,
    make_vault_credential,
)
from workspaces.models import ServiceAccount

pytestmark = pytest.mark.django_db


def test_viewer_sees_no_mint_button_and_a_developer_does(workspace, viewer, member):
    agent = make_agent(workspace, auth_mode="signed")
    url = f"/admin/agents/agent/{agent.pk}/change/"
    assert 'id="mint-link"' not in login(viewer).get(url).content.decode()
    assert 'id="mint-link"' in login(member).get(url).content.decode()


def test_refusal_page_names_the_permission_and_workspace_with_a_way_back(workspace, viewer):
    agent = make_agent(workspace, auth_mode="signed")
    response = login(viewer).get(f"/admin/agents/agent/{agent.pk}/mint/",
                                 HTTP_REFERER=f"http://testserver/admin/agents/agent/{agent.pk}/change/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "sessions.mint" in page and "Acme" in page
    assert 'id="refusal-back"' in page and f"/admin/agents/agent/{agent.pk}/change/" in page
    assert "403 Forbidden" not in page


def test_refusal_from_another_site_goes_back_home(workspace, viewer):
    agent = make_agent(workspace, auth_mode="signed")
    response = login(viewer).get(f"/admin/agents/agent/{agent.pk}/mint/", HTTP_REFERER="https://evil.example/x")
    assert response.status_code == 403
    assert "evil.example" not in response.content.decode()


def test_permission_denied_is_logged_as_one_line():
    from workspaces.access import MissingPermission

    try:
        raise MissingPermission("keys.revoke", None)
    except MissingPermission:
        import sys

        record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden (Permission denied): %s",
                                   ("/admin/x/",), sys.exc_info())
    assert RedactingFilter().filter(record)
    assert record.exc_info is None and not record.exc_text
    assert record.getMessage() == ("Forbidden (Permission denied): /admin/x/: You do not have the “keys.revoke” "
                                   "permission in Keyward as a whole (superusers only).")


def test_team_lead_sees_no_revoke_and_a_revoked_key_offers_no_rotate_now(workspace, security_admin):
    lead = make_person("lead", "Team lead", workspace)
    key = make_api_key_row(workspace)
    url = f"/admin/keys/apikey/{key.pk}/change/"
    page = login(lead).get(url).content.decode()
    assert 'id="revoke-link"' not in page and 'id="rotate-link"' in page
    admin_page = login(security_admin).get(url).content.decode()
    assert 'id="revoke-link"' in admin_page and 'id="rotate-now-link"' in admin_page
    ApiKey.objects.filter(pk=key.pk).update(state=ApiKey.State.REVOKED, revoked_at=timezone.now())
    revoked = login(security_admin).get(url).content.decode()
    assert 'id="rotate-now-link"' not in revoked and 'id="revoke-link"' not in revoked


def test_vault_credential_page_offers_refresh_and_revoke_to_those_who_may(workspace, security_admin, viewer):
    credential = make_vault_credential(workspace, make_oauth_provider(workspace))
    url = f"/admin/secrets_app/usercredential/{credential.pk}/change/"
    client = login(security_admin)
    page = client.get(url).content.decode()
    assert 'id="refresh-link"' in page and 'id="revoke-link"' in page
    seen = login(viewer).get(url)
    assert seen.status_code == 200 and 'id="revoke-link"' not in seen.content.decode()
    confirm = client.get(f"/admin/secrets_app/usercredential/{credential.pk}/revoke/")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    response = client.post(f"/admin/secrets_app/usercredential/{credential.pk}/revoke/", follow=True)
    credential.refresh_from_db()
    assert credential.state == UserCredential.State.REVOKED
    assert "1 credential(s) revoked." in response.content.decode()
    assert 'id="revoke-link"' not in client.get(url).content.decode()


def test_service_account_page_lists_its_keys_and_disabling_says_how_many_were_revoked(workspace, security_admin):
    account = ServiceAccountFactory(workspace=workspace, name="billing-backend", role="Developer")
    make_api_key_row(workspace, service_account=account, name="billing-prod")
    old = make_api_key_row(workspace, service_account=account, name="billing-old")
    ApiKey.objects.filter(pk=old.pk).update(state=ApiKey.State.REVOKED, revoked_at=timezone.now())
    make_broker_key(workspace, service_account=account, name="web app")
    client = login(security_admin)
    url = f"/admin/workspaces/serviceaccount/{account.pk}/change/"
    page = client.get(url).content.decode()
    assert "billing-prod" in page and "billing-old" in page and "broker key" in page
    assert 'id="disable-link"' in page
    confirm = client.get(f"/admin/workspaces/serviceaccount/{account.pk}/disable/").content.decode()
    assert "revokes its 1 API key and 1 broker key" in confirm
    account.refresh_from_db()
    assert account.is_active  # the confirmation page changed nothing
    response = client.post(f"/admin/workspaces/serviceaccount/{account.pk}/disable/", follow=True)
    account.refresh_from_db()
    assert not account.is_active
    assert "2 keys revoked" in response.content.decode()
    assert 'id="disable-link"' not in client.get(url).content.decode()


def test_viewer_cannot_disable_a_service_account(workspace, viewer):
    account = ServiceAccount.objects.create(workspace=workspace, name="billing-backend")
    client = login(viewer)
    page = client.get(f"/admin/workspaces/serviceaccount/{account.pk}/change/").content.decode()
    assert 'id="disable-link"' not in page
    assert client.post(f"/admin/workspaces/serviceaccount/{account.pk}/disable/").status_code == 403
    account.refresh_from_db()
    assert account.is_active
