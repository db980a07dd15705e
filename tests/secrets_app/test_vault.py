from datetime import timedelta

import httpx
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from project.actors import SYSTEM
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from secrets_app import oauth, services, tasks
from secrets_app.models import UserCredential
from tests.conftest import login
from tests.factories import make_vault_credential

pytestmark = pytest.mark.django_db


def test_the_sweep_refreshes_credentials_expiring_within_the_window(workspace, provider, token_endpoint, settings):
    settings.VAULT_REFRESH_WINDOW_SECONDS = 600
    soon = make_vault_credential(workspace, provider, "soon", expires_in=300)
    later = make_vault_credential(workspace, provider, "later", expires_in=3600)
    assert services.credentials_refresh_due(actor=SYSTEM) == {"refreshed": 1, "failed": 0, "skipped": 0}
    soon.refresh_from_db()
    assert soon.access_token == "at-fresh-0001-Qx7" and soon.refresh_token == "rt-old-soon-Kp4"
    assert soon.state == "active" and soon.last_refreshed_at is not None
    assert soon.expires_at > timezone.now() + timedelta(seconds=3500)
    assert UserCredential.objects.get(pk=later.pk).access_token == "at-old-later-Kp3"
    sent = token_endpoint.requests[0]
    assert sent["url"] == "https://provider.test/token"
    assert sent["form"] == {"grant_type": "refresh_token", "refresh_token": "rt-old-soon-Kp4",
                            "client_id": "kw-client", "client_secret": "provider-client-secret-Zk41"}
    event = AuditEvent.objects.get(action="credential.refresh")
    assert event.changes["access_token"] == "[changed]" and "at-fresh" not in str(event.changes)


def test_a_rotated_refresh_token_replaces_the_old_one(workspace, provider, token_endpoint):
    credential = make_vault_credential(workspace, provider)
    token_endpoint.replies.append((200, {"access_token": "at-new-Lm1", "refresh_token": "rt-new-Lm2",
                                         "expires_in": 120, "scope": "calendar.read calendar.write"}))
    services.credential_refresh(actor=SYSTEM, credential=credential)
    credential.refresh_from_db()
    assert (credential.access_token, credential.refresh_token) == ("at-new-Lm1", "rt-new-Lm2")
    assert credential.scopes == ["calendar.read", "calendar.write"]


def test_basic_auth_providers_get_their_credentials_in_the_header(workspace, provider, token_endpoint):
    services.provider_save(actor=SYSTEM, workspace=workspace, provider=provider, send_client_secret_in_header=True)
    services.credential_refresh(actor=SYSTEM, credential=make_vault_credential(workspace, provider))
    sent = token_endpoint.requests[0]
    assert sent["auth"].startswith("Basic ") and "client_secret" not in sent["form"]


@pytest.mark.parametrize("reply", [(400, {"error": "invalid_grant", "error_description": "rt-old-u-1-Kp4 revoked"}),
                                   (503, {"error": "temporarily_unavailable"}), (200, {"no": "token"})])
def test_a_failed_refresh_marks_the_credential_alerts_once_a_day_and_keeps_the_tokens(workspace, provider,
                                                                                       token_endpoint, reply):
    credential = make_vault_credential(workspace, provider)
    token_endpoint.replies += [reply, reply]
    result = services.credential_refresh(actor=SYSTEM, credential=credential)
    assert result.state == "refresh_failed" and result.last_error
    assert "rt-old" not in result.last_error  # the provider's description is not kept
    stored = UserCredential.objects.get()
    assert (stored.access_token, stored.refresh_token) == ("at-old-u-1-Kp3", "rt-old-u-1-Kp4")
    services.credential_refresh(actor=SYSTEM, credential=credential)  # fails again the same day
    alert = Alert.objects.get()
    assert alert.kind == "credential_refresh_failed" and alert.object_id == str(credential.pk)
    assert "rt-old" not in str(alert.details) and "at-old" not in str(alert.details)
    assert AuditEvent.objects.filter(action="credential.refresh_failed").count() == 2


def test_a_provider_that_cannot_be_reached_fails_the_refresh(workspace, provider):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    oauth.set_client(client)
    try:
        result = services.credential_refresh(actor=SYSTEM, credential=make_vault_credential(workspace, provider))
    finally:
        oauth.set_client(None)
    assert result.state == "refresh_failed" and result.last_error == "could not reach the provider"
    assert UserCredential.objects.get().refresh_token == "rt-old-u-1-Kp4"


def test_failed_credentials_are_retried_after_the_retry_delay(workspace, provider, token_endpoint, settings):
    credential = make_vault_credential(workspace, provider)
    token_endpoint.replies.append((400, {"error": "invalid_grant"}))
    services.credential_refresh(actor=SYSTEM, credential=credential)
    assert services.credentials_due() == []
    UserCredential.objects.filter(pk=credential.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.VAULT_RETRY_FAILED_SECONDS + 1))
    assert services.credentials_due() == [credential.pk]


def test_an_unreadable_credential_fails_closed_without_calling_the_provider(workspace, provider, token_endpoint,
                                                                           settings, unrelated_key):
    credential = make_vault_credential(workspace, provider)
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    counts = services.credentials_refresh_due(actor=SYSTEM)
    assert counts["failed"] == 1 and token_endpoint.requests == []
    assert UserCredential.objects.values_list("state", flat=True).get() == "refresh_failed"
    assert "cannot decrypt" in UserCredential.objects.values_list("last_error", flat=True).get()
    assert services.credential_fresh_tokens(actor=SYSTEM, workspace=workspace, end_user_id="u-1") == {}
    assert credential.pk


def test_fresh_tokens_for_a_session_refresh_what_expires_soon(workspace, provider, token_endpoint):
    make_vault_credential(workspace, provider, "alice", expires_in=30)
    tokens = services.credential_fresh_tokens(actor=SYSTEM, workspace=workspace, end_user_id="alice")
    assert tokens == {"secret__user_google_token": "at-fresh-0001-Qx7"}
    assert services.credential_fresh_tokens(actor=SYSTEM, workspace=workspace, end_user_id="alice") == tokens
    assert len(token_endpoint.requests) == 1


def test_fresh_tokens_leave_out_revoked_and_expired_credentials(workspace, provider, token_endpoint):
    alice = make_vault_credential(workspace, provider, "alice", expires_in=3600)
    services.credential_revoke(actor=SYSTEM, credential=alice)
    assert services.credential_fresh_tokens(actor=SYSTEM, workspace=workspace, end_user_id="alice") == {}
    make_vault_credential(workspace, provider, "bob", expires_in=-60)
    token_endpoint.replies.append((400, {"error": "invalid_grant"}))
    assert services.credential_fresh_tokens(actor=SYSTEM, workspace=workspace, end_user_id="bob") == {}


def test_fresh_tokens_are_scoped_to_the_workspace(workspace, other_workspace, provider, member, token_endpoint):
    make_vault_credential(workspace, provider, "alice", expires_in=3600)
    assert services.credential_fresh_tokens(actor=SYSTEM, workspace=other_workspace, end_user_id="alice") == {}
    assert services.credential_fresh_tokens(actor=member, workspace=workspace, end_user_id="alice")
    with pytest.raises(PermissionDenied):
        services.credential_fresh_tokens(actor=member, workspace=other_workspace, end_user_id="alice")


def test_revoking_wipes_both_tokens(owner, workspace, provider):
    credential = services.credential_revoke(actor=owner, credential=make_vault_credential(workspace, provider))
    credential = UserCredential.objects.get(pk=credential.pk)
    assert credential.state == "revoked" and credential.access_token == "" and credential.refresh_token == ""
    with pytest.raises(ValidationError):
        services.credential_refresh(actor=owner, credential=credential)


@pytest.mark.parametrize("who", ["member", "outsider"])
def test_people_without_secrets_manage_cannot_revoke_or_refresh(request, who, workspace, provider):
    actor = request.getfixturevalue(who)
    credential = make_vault_credential(workspace, provider)
    with pytest.raises(PermissionDenied):
        services.credential_revoke(actor=actor, credential=credential)
    with pytest.raises(PermissionDenied):
        services.credential_refresh(actor=actor, credential=credential)
    assert UserCredential.objects.get().state == "active"


def test_a_refresh_in_flight_holds_a_lease(workspace, provider, token_endpoint):
    credential = make_vault_credential(workspace, provider)
    UserCredential.objects.filter(pk=credential.pk).update(refresh_lease_until=timezone.now() + timedelta(seconds=30))
    with pytest.raises(ValidationError, match="already in progress"):
        services.credential_refresh(actor=SYSTEM, credential=credential)
    assert token_endpoint.requests == []


def test_the_periodic_task_runs_the_sweep_and_is_scheduled(workspace, provider, token_endpoint):
    make_vault_credential(workspace, provider, expires_in=10)
    assert tasks.refresh_credentials.delay().get() == {"refreshed": 1, "failed": 0, "skipped": 0}
    from project.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "secrets_app.refresh_credentials" in scheduled


def test_the_pooled_client_is_reused(settings):
    oauth.set_client(None)
    first, second = oauth.get_client(), oauth.get_client()
    assert first is second and first.follow_redirects is False
    oauth.set_client(None)


# --- admin -----------------------------------------------------------------------------------------------
def test_the_vault_list_shows_who_what_and_when_but_never_a_token(owner_client, workspace, provider):
    make_vault_credential(workspace, provider, "alice")
    page = owner_client.get(reverse("admin:secrets_app_usercredential_changelist")).content.decode()
    assert "alice" in page and "Google" in page and "calendar.read" in page and "Active" in page
    assert "at-old" not in page and "rt-old" not in page
    detail = owner_client.get(reverse("admin:secrets_app_usercredential_change",
                                      args=[UserCredential.objects.get().pk])).content.decode()
    assert "at-old" not in detail and "rt-old" not in detail and "access token: <span" in detail


def test_owner_revokes_and_forces_a_refresh_from_the_admin(owner_client, workspace, provider, token_endpoint):
    alice, bob = make_vault_credential(workspace, provider, "alice"), make_vault_credential(workspace, provider, "bob")
    url = reverse("admin:secrets_app_usercredential_changelist")
    response = owner_client.post(url, {"action": "force_refresh", "_selected_action": [alice.pk]}, follow=True)
    assert "refreshed" in response.content.decode()
    assert UserCredential.objects.get(pk=alice.pk).access_token == "at-fresh-0001-Qx7"
    owner_client.post(url, {"action": "revoke", "_selected_action": [bob.pk]})
    assert UserCredential.objects.get(pk=bob.pk).state == "revoked"
    assert "at-fresh" not in owner_client.get(url).content.decode()


def test_member_sees_the_vault_but_its_actions_change_nothing(member, workspace, provider):
    credential = make_vault_credential(workspace, provider)
    client = login(member)
    url = reverse("admin:secrets_app_usercredential_changelist")
    page = client.get(url).content.decode()
    assert "u-1" in page and 'value="revoke"' not in page
    client.post(url, {"action": "revoke", "_selected_action": [credential.pk]})
    assert UserCredential.objects.get().state == "active"


def test_outsider_cannot_see_or_act_on_the_vault(outsider_client, workspace, provider):
    credential = make_vault_credential(workspace, provider, "secret-user-Jj1")
    url = reverse("admin:secrets_app_usercredential_changelist")
    assert "secret-user-Jj1" not in outsider_client.get(url).content.decode()
    outsider_client.post(url, {"action": "revoke", "_selected_action": [credential.pk]})
    assert UserCredential.objects.get().state == "active"
