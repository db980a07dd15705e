"""Token URLs cannot be turned into an exfiltration channel or a port scanner (issue 19, items 1 and 2).

1. Changing where a provider's (or an auth connection's) secrets are sent, its token URL's scheme, host or
   port, needs the current client secret entered again in the same form; it raises a high alert and is
   audited with the old and new host.
2. Refreshes never reach an internal address (loopback only in debug), and what a person sees of a failed
   refresh is a generic reason: the status, the provider's error code and the transport error stay in the log.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from project.actors import SYSTEM
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from secrets_app import oauth, services
from secrets_app.models import OAuthProvider, UserCredential
from tests.factories import make_auth_connection, make_oauth_provider, make_vault_credential

pytestmark = pytest.mark.django_db

SECRET = "provider-client-secret-Zk41"


class _Listener(http.server.BaseHTTPRequestHandler):
    """A listener on a loopback port: records every request it gets, answers a token."""

    seen: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(body)
        answer = b'{"access_token": "at-from-the-listener-Vq9", "expires_in": 3600}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    seen: list[bytes] = []
    handler = type("Handler", (_Listener,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    oauth.set_client(None)  # the real, guarded client
    yield server.server_address[1], seen
    server.shutdown()
    oauth.set_client(None)


# --- 1. a changed address needs the client secret again --------------------------------------------------
@pytest.mark.parametrize("new_url", ["https://attacker.example/token", "https://provider.test:8443/token",
                                     "http://127.0.0.1:9/token"])
def test_moving_a_providers_token_url_without_the_client_secret_is_refused(owner, workspace, provider, new_url):
    with pytest.raises(ValidationError) as refused:
        services.provider_save(actor=owner, workspace=workspace, provider=provider, token_url=new_url)
    assert "client_secret" in refused.value.message_dict
    assert OAuthProvider.objects.get().token_url == "https://provider.test/token"
    assert not Alert.objects.filter(kind="oauth_provider_token_url_moved").exists()


def test_a_wrong_client_secret_does_not_move_the_token_url(owner, workspace, provider):
    with pytest.raises(ValidationError) as refused:
        services.provider_save(actor=owner, workspace=workspace, provider=provider,
                               token_url="https://attacker.example/token", client_secret="a-guess-of-the-secret")
    assert "client_secret" in refused.value.message_dict
    assert OAuthProvider.objects.get().token_url == "https://provider.test/token"


def test_the_path_may_change_without_the_secret(owner, workspace, provider):
    services.provider_save(actor=owner, workspace=workspace, provider=provider,
                           token_url="https://provider.test/oauth2/v2/token")
    assert OAuthProvider.objects.get().token_url == "https://provider.test/oauth2/v2/token"
    assert not Alert.objects.filter(kind="oauth_provider_token_url_moved").exists()


def test_moving_with_the_client_secret_alerts_and_audits_both_hosts(owner, workspace, provider):
    services.provider_save(actor=owner, workspace=workspace, provider=provider,
                           token_url="https://login.provider.example/token", client_secret=SECRET)
    assert OAuthProvider.objects.get().token_url == "https://login.provider.example/token"
    alert = Alert.objects.get(kind="oauth_provider_token_url_moved")
    assert alert.severity == Alert.Severity.HIGH and SECRET not in str(alert.details)
    event = AuditEvent.objects.filter(action="oauth_provider.update").latest("pk")
    assert event.changes["token_url_host"] == ["provider.test", "login.provider.example"]
    assert SECRET not in str(event.changes)


def test_a_provider_without_a_secret_but_with_tokens_cannot_move(owner, workspace):
    public = make_oauth_provider(workspace, slug="pkce", client_secret="")
    make_vault_credential(workspace, public)
    with pytest.raises(ValidationError) as refused:
        services.provider_save(actor=owner, workspace=workspace, provider=public,
                               token_url="https://attacker.example/token")
    assert "token_url" in refused.value.message_dict


def test_the_admin_form_refuses_the_move_on_the_client_secret_field(owner_client, workspace, provider):
    url = reverse("admin:secrets_app_oauthprovider_change", args=[provider.pk])
    response = owner_client.post(url, {"workspace": workspace.pk, "name": "Google", "slug": "google",
                                       "token_url": "https://attacker.example/token", "client_id": "kw-client",
                                       "client_secret": ""})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "client_secret" in errors and "token_url" not in errors
    assert OAuthProvider.objects.get().token_url == "https://provider.test/token"


@pytest.mark.parametrize(("kind", "secret_field", "extra"), [
    ("oauth2_client_credentials", "client_secret", {"client_id": "svc"}),
    ("oauth2_jwt", "signing_secret", {"algorithm": "HS256", "claims": {"iss": "kw", "aud": "a", "sub": "s"}}),
])
def test_an_auth_connection_whose_secret_would_go_elsewhere_needs_it_again(owner, workspace, kind, secret_field,
                                                                           extra):
    conn = make_auth_connection(workspace, name="crm", kind=kind, token_url="https://idp.example/token",
                                secrets={secret_field: "conn-secret-Rt5-abcdef"}, **extra)
    with pytest.raises(ValidationError) as refused:
        services.auth_connection_save(actor=owner, workspace=workspace, connection=conn, name="crm", kind=kind,
                                      token_url="https://attacker.example/token", secrets={}, **extra)
    assert secret_field in refused.value.message_dict
    services.auth_connection_save(actor=owner, workspace=workspace, connection=conn, name="crm", kind=kind,
                                  token_url="https://idp2.example/token",
                                  secrets={secret_field: "conn-secret-Rt5-abcdef"}, **extra)
    assert Alert.objects.get(kind="auth_connection_token_url_moved").severity == Alert.Severity.HIGH
    event = AuditEvent.objects.filter(action="auth_connection.update").latest("pk")
    assert event.changes["token_url_host"] == ["idp.example", "idp2.example"]


# --- 2. no internal addresses, no port scanner ----------------------------------------------------------------
@pytest.mark.parametrize("url", ["https://10.0.0.5/token", "https://169.254.169.254/latest", "https://[::1]/token",
                                 "https://[::ffff:192.168.1.1]/token", "https://100.64.0.1/token",
                                 "http://127.0.0.1:6379/token", "https://localhost/token"])
def test_internal_token_urls_are_refused_in_production(owner, workspace, settings, url):
    settings.PRODUCTION = True
    with pytest.raises(ValidationError) as refused:
        make_oauth_provider(workspace, slug="inside", token_url=url)
    assert "token_url" in refused.value.message_dict


def test_the_emulators_loopback_provider_stays_allowed_in_debug(owner, workspace, settings):
    settings.PRODUCTION = False
    assert make_oauth_provider(workspace, slug="demo", token_url="http://127.0.0.1:8765/_emulator/oauth/token")


def test_a_stored_loopback_url_is_not_called_in_production(workspace, provider, listener, settings):
    port, seen = listener
    OAuthProvider.objects.filter(pk=provider.pk).update(token_url=f"http://127.0.0.1:{port}/token")
    settings.PRODUCTION = True
    result = services.credential_refresh(actor=SYSTEM, credential=make_vault_credential(workspace, provider))
    assert seen == [] and result.state == "refresh_failed"
    assert result.last_error == "could not reach the provider"
    assert UserCredential.objects.get().access_token == "at-old-u-1-Kp3"


def test_a_name_resolving_to_a_private_address_is_not_called(workspace, provider, settings, monkeypatch):
    settings.PRODUCTION = True
    monkeypatch.setattr("project.outbound._resolve", lambda host, port: ["10.0.0.7"])
    oauth.set_client(None)
    try:
        result = services.credential_refresh(actor=SYSTEM, credential=make_vault_credential(workspace, provider))
    finally:
        oauth.set_client(None)
    assert result.state == "refresh_failed" and result.last_error == "could not reach the provider"


def test_loopback_refreshes_work_in_debug_through_the_guarded_client(workspace, provider, listener, settings):
    port, seen = listener
    settings.PRODUCTION = False
    OAuthProvider.objects.filter(pk=provider.pk).update(token_url=f"http://127.0.0.1:{port}/token")
    result = services.credential_refresh(actor=SYSTEM, credential=make_vault_credential(workspace, provider))
    assert len(seen) == 1 and result.state == "active"


@pytest.mark.parametrize(("reply", "shown"), [
    ((401, {"error": "invalid_client"}), "the provider refused the refresh"),
    ((404, {}), "the provider refused the refresh"),
    ((503, {"error": "temporarily_unavailable"}), "the provider refused the refresh"),
    ((200, {"no": "token"}), "the provider refused the refresh"),
])
def test_a_person_sees_a_generic_reason_and_the_log_keeps_the_detail(owner_client, workspace, provider,
                                                                     token_endpoint, caplog, reply, shown):
    credential = make_vault_credential(workspace, provider)
    token_endpoint.replies.append(reply)
    url = reverse("admin:secrets_app_usercredential_changelist")
    with caplog.at_level("INFO"):
        response = owner_client.post(url, {"action": "force_refresh", "_selected_action": [credential.pk]},
                                     follow=True)
    page = response.content.decode()
    stored = UserCredential.objects.get()
    assert stored.last_error == shown and shown in page
    for detail in (f"http_{reply[0]}", "invalid_client", "temporarily_unavailable", "HTTP 4", "HTTP 5"):
        assert detail not in page and detail not in stored.last_error
        assert detail not in str(Alert.objects.get(kind="credential_refresh_failed").details)
    assert str(reply[0]) in caplog.text or "invalid_response" in caplog.text  # the detail is in the log

