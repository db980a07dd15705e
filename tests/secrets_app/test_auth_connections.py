import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from secrets_app import services
from secrets_app.models import AuthConnection, OAuthProvider, Secret, UserCredential
from tests.conftest import login
from tests.factories import make_auth_connection, make_secret, make_vault_credential

pytestmark = pytest.mark.django_db

KINDS = {
    "oauth2_client_credentials": ({"client_id": "cid", "token_url": "https://auth.example/token",
                                   "scopes": ["read", "write"]}, {"secrets": {"client_secret": "cs-Ac01-value"}}),
    "oauth2_jwt": ({"token_url": "https://auth.example/token", "algorithm": "HS256",
                    "claims": {"iss": "kw", "aud": "https://api.example", "sub": "agent"}},
                   {"secrets": {"signing_secret": "js-Ac02-value"}}),
    "basic_auth": ({"username": "svc"}, {"secrets": {"password": "pw-Ac03-value"}}),
    "bearer_auth": ({}, {"secrets": {"token": "bt-Ac04-value"}}),
    "custom_header_auth": ({}, {"headers": {"X-Api-Key": "ch-Ac05-value"}}),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_stores_its_secret_parts_encrypted_and_audits_no_value(owner, workspace, kind):
    plain, secret = KINDS[kind]
    conn = services.auth_connection_save(actor=owner, workspace=workspace, name=f"c-{kind}", kind=kind,
                                         provider="crm", **plain, **secret)
    conn = AuthConnection.objects.get(pk=conn.pk)
    field = AuthConnection.KIND_SECRETS[kind][0]
    stored = getattr(conn, field)
    expected = next(iter(secret.get("secrets", {}).values()), None) or json.dumps(secret.get("headers"),
                                                                                   sort_keys=True)
    assert stored == expected
    event = AuditEvent.objects.get(action="auth_connection.create")
    assert event.changes[field] == "[changed]"
    assert "Ac0" not in str(event.changes)
    job = SyncJob.objects.get(kind="auth_connection")
    assert job.object_id == str(conn.pk) and "Ac0" not in str(job.payload)


def test_custom_headers_keep_names_visible_and_values_encrypted(workspace):
    conn = services.auth_connection_save(actor=SYSTEM, workspace=workspace, name="gw", kind="custom_header_auth",
                                         headers={"X-Api-Key": "ch-Ac06", "X-Tenant": "t"})
    assert conn.header_names == ["X-Api-Key", "X-Tenant"]
    assert json.loads(AuthConnection.objects.get().header_values) == {"X-Api-Key": "ch-Ac06", "X-Tenant": "t"}


@pytest.mark.parametrize("kind,plain,field", [
    ("oauth2_client_credentials", {"token_url": "https://a.example/t"}, "client_id"),
    ("oauth2_client_credentials", {"client_id": "c", "token_url": "https://a.example/t"}, "client_secret"),
    ("oauth2_jwt", {"token_url": "https://a.example/t", "algorithm": "HS256", "claims": {"iss": "x"}}, "claims"),
    ("oauth2_jwt", {"token_url": "http://a.example/t", "algorithm": "HS256",
                    "claims": {"iss": "x", "aud": "y", "sub": "z"}}, "token_url"),
    ("basic_auth", {"username": "svc"}, "password"),
    ("basic_auth", {}, "username"),
    ("bearer_auth", {}, "token"),
])
def test_missing_parts_are_errors_on_their_fields(workspace, kind, plain, field):
    with pytest.raises(ValidationError) as caught:
        services.auth_connection_save(actor=SYSTEM, workspace=workspace, name="x", kind=kind, **plain)
    assert field in caught.value.message_dict
    assert not AuthConnection.objects.exists()


def test_blank_keeps_and_a_kind_switch_wipes_the_old_parts(owner, workspace):
    conn = services.auth_connection_save(actor=owner, workspace=workspace, name="svc", kind="basic_auth",
                                         username="svc", secrets={"password": "pw-Ac07"})
    services.auth_connection_save(actor=owner, workspace=workspace, connection=conn, name="svc", kind="basic_auth",
                                  username="svc2", secrets={"password": None})
    assert AuthConnection.objects.get().password == "pw-Ac07"
    services.auth_connection_save(actor=owner, workspace=workspace, connection=conn, name="svc", kind="bearer_auth",
                                  secrets={"token": "bt-Ac08"})
    conn = AuthConnection.objects.get()
    assert (conn.password, conn.username, conn.token) == ("", "", "bt-Ac08")
    event = AuditEvent.objects.filter(action="auth_connection.update").latest("id")
    assert event.changes["password"] == "[changed]" and event.changes["token"] == "[changed]"


@pytest.mark.parametrize("who", ["member", "outsider"])
def test_people_without_secrets_manage_cannot_write_auth_connections(request, who, workspace):
    actor = request.getfixturevalue(who)
    conn = make_auth_connection(workspace, "svc", secrets={"token": "bt-Ac09"})
    with pytest.raises(PermissionDenied):
        services.auth_connection_save(actor=actor, workspace=workspace, name="x", kind="bearer_auth",
                                      secrets={"token": "t"})
    with pytest.raises(PermissionDenied):
        services.auth_connection_delete(actor=actor, connection=conn)
    assert AuthConnection.objects.count() == 1


def test_view_only_pages_show_no_secret_part(viewer, workspace, provider):
    for kind, (plain, secret) in KINDS.items():
        make_auth_connection(workspace, f"c-{kind}", kind, **plain, **secret)
    make_secret(workspace, "crm", "sv-Ac10-value")
    make_vault_credential(workspace, provider, "u", "at-Ac11-value", refresh_token="rt-Ac12-value")
    client = login(viewer)
    for model in ("authconnection", "secret", "oauthprovider", "usercredential"):
        listing = client.get(reverse(f"admin:secrets_app_{model}_changelist"))
        assert listing.status_code == 200 and "Ac1" not in listing.content.decode()
    for model, objects in (("authconnection", AuthConnection.objects.all()), ("secret", Secret.objects.all()),
                           ("oauthprovider", OAuthProvider.objects.all()),
                           ("usercredential", UserCredential.objects.all())):
        for obj in objects:
            page = client.get(reverse(f"admin:secrets_app_{model}_change", args=[obj.pk]))
            text = page.content.decode()
            assert page.status_code == 200, model
            assert "-Ac" not in text and "provider-client-secret" not in text, model
