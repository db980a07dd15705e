"""Sign-in with the identity provider, against a real OpenID provider process on loopback (oidc_provider.py).

The test client plays the browser: it follows Keyward's redirect to the provider over real HTTP (with
`login_hint`, the provider signs that user in at once), then brings the provider's redirect back to Keyward's
callback, where mozilla-django-oidc exchanges the code (PKCE), fetches the provider's keys and userinfo: all real
HTTP to the provider process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.test import Client

from accounts import oidc
from accounts.models import ExternalIdentity, IdentityProviderGroup
from project.audit.models import AuditEvent
from tests.factories import UserFactory, builtin_role, make_confirmed_device
from workspaces.models import RoleAssignment

CLIENT_ID, CLIENT_SECRET = "keyward-tests", "loopback-client-secret"


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    script = Path(__file__).with_name("oidc_provider.py")
    process = subprocess.Popen([sys.executable, str(script), "--client-id", CLIENT_ID,
                                "--client-secret", CLIENT_SECRET], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # blocks until the provider listens (or exits)
        assert line.startswith("READY "), f"the provider did not start: {line!r}"
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def idp(provider_url: str, settings) -> str:
    settings.OIDC_ISSUER = provider_url
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_ALLOWED_EMAIL_DOMAINS = ["acme.test"]
    settings.OIDC_MFA_SATISFIES_TWO_FACTOR = False
    oidc.forget_provider()
    requests.post(f"{provider_url}/_control/config", json={}, timeout=5)
    return provider_url


def set_users(provider_url: str, **users: dict) -> None:
    requests.post(f"{provider_url}/_control/users", json=users, timeout=5).raise_for_status()


def set_config(provider_url: str, **config: object) -> None:
    requests.post(f"{provider_url}/_control/config", json=config, timeout=5).raise_for_status()


def sign_in(client: Client, subject: str, *, tamper_state: bool = False):
    """Start at Keyward, sign in at the provider as `subject`, come back; the callback's response."""
    start = client.get("/oidc/sign-in/?next=/admin/")
    assert start.status_code == 302, start
    authorize = start["Location"]
    params = parse_qs(urlparse(authorize).query)
    assert params["code_challenge_method"] == ["S256"] and params["code_challenge"]  # PKCE
    at_provider = requests.get(authorize, params={"login_hint": subject}, allow_redirects=False, timeout=5)
    assert at_provider.status_code == 302, at_provider.text
    back = urlparse(at_provider.headers["Location"])
    query = parse_qs(back.query)
    state = query["state"][0] + ("x" if tamper_state else "")
    return client.get(back.path, {"code": query["code"][0], "state": state})


def map_group(group: str, workspace, role: str) -> IdentityProviderGroup:
    return IdentityProviderGroup.objects.create(group=group, workspace=workspace, role=builtin_role(role))


def messages_of(client: Client) -> str:
    return client.get("/admin/login/").content.decode()


@pytest.mark.django_db
def test_first_sign_in_creates_a_staff_login_with_the_mapped_role(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs", "unrelated"], "given_name": "Dana"})
    client = Client()
    response = sign_in(client, "u1")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    identity = ExternalIdentity.objects.get(subject="u1", issuer=idp)
    user = identity.user
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assignment = RoleAssignment.objects.get(user=user)
    assert (assignment.workspace, assignment.role.name) == (workspace, "Developer")
    assert hasattr(assignment, "idp_grant")
    assert client.get("/admin/").status_code == 200
    grant = AuditEvent.objects.get(action="role.assign", object_id=str(assignment.pk))
    assert grant.changes["via"] == "identity provider" and grant.changes["group"] == "keyward-devs"
    assert AuditEvent.objects.filter(action="identity.sign_in").count() == 1


@pytest.mark.django_db
def test_no_mapped_group_means_no_login(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u2={"email": "eve@acme.test", "groups": ["marketing"]})
    client = Client()
    response = sign_in(client, "u2")
    assert response["Location"] == "/admin/login/"
    assert not ExternalIdentity.objects.exists()
    assert "None of your groups" in messages_of(client)


@pytest.mark.django_db
def test_email_outside_the_allowed_domains_is_refused(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u3={"email": "mallory@elsewhere.test", "groups": ["keyward-devs"]})
    client = Client()
    sign_in(client, "u3")
    assert not ExternalIdentity.objects.exists()
    assert "acme.test only" in messages_of(client)


@pytest.mark.django_db
def test_group_mapping_is_reapplied_at_each_sign_in_and_removal_is_audited(idp, workspace, other_workspace):
    map_group("keyward-devs", workspace, "Developer")
    map_group("globex-viewers", other_workspace, "Viewer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs", "globex-viewers"]})
    sign_in(Client(), "u1")
    user = ExternalIdentity.objects.get(subject="u1").user
    assert RoleAssignment.objects.filter(user=user).count() == 2
    by_hand = RoleAssignment.objects.create(user=user, workspace=other_workspace, role=builtin_role("Developer"))

    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})  # removed from globex-viewers
    client = Client()
    assert sign_in(client, "u1")["Location"] == "/admin/"
    held = set(RoleAssignment.objects.filter(user=user).values_list("workspace__slug", "role__name"))
    assert held == {("acme", "Developer"), ("globex", "Developer")}  # the hand-made grant stays
    assert RoleAssignment.objects.filter(pk=by_hand.pk).exists()
    revoke = AuditEvent.objects.get(action="role.revoke")
    assert revoke.changes["via"] == "identity provider" and revoke.changes["role"] == "Viewer"


@pytest.mark.django_db
def test_removed_from_every_group_loses_the_roles_and_the_sign_in(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})
    sign_in(Client(), "u1")
    user = ExternalIdentity.objects.get(subject="u1").user
    set_users(idp, u1={"email": "dana@acme.test", "groups": []})
    client = Client()
    assert sign_in(client, "u1")["Location"] == "/admin/login/"
    assert not RoleAssignment.objects.filter(user=user).exists()
    assert client.get("/admin/").status_code == 302  # not signed in
    assert "no role in Keyward any more" in messages_of(client)


@pytest.mark.django_db
def test_token_from_another_issuer_is_refused(idp, workspace, caplog):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})
    set_config(idp, id_token_issuer="https://evil.example")
    client = Client()
    assert sign_in(client, "u1")["Location"] == "/admin/login/"
    assert not ExternalIdentity.objects.exists()
    assert "could not be verified" in messages_of(client)
    assert any("another issuer" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_token_signed_with_a_key_the_issuer_never_published_is_refused(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})
    set_config(idp, foreign_key=True)
    client = Client()
    assert sign_in(client, "u1")["Location"] == "/admin/login/"
    assert not ExternalIdentity.objects.exists()
    assert "could not be verified" in messages_of(client)


@pytest.mark.django_db
def test_tampered_state_is_refused_and_logged_in_one_line(idp, workspace, caplog):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})
    client = Client()
    response = sign_in(client, "u1", tamper_state=True)
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert not ExternalIdentity.objects.exists()
    assert client.get("/admin/").status_code == 302
    rejected = [r for r in caplog.records if "sign-in rejected" in r.getMessage()]
    assert len(rejected) == 1 and rejected[0].exc_info is None


@pytest.mark.django_db
def test_superuser_cannot_sign_in_through_the_provider(idp, workspace):
    UserFactory(username="root", email="root@acme.test", is_superuser=True)
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u9={"email": "root@acme.test", "groups": ["keyward-devs"]})
    client = Client()
    assert sign_in(client, "u9")["Location"] == "/admin/login/"
    assert "Superusers sign in with their password" in messages_of(client)


@pytest.mark.django_db
def test_provider_mfa_counts_for_two_factor_only_when_the_setting_says_so(idp, workspace, settings):
    settings.OTP_REQUIRED = True
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"], "amr": ["pwd", "mfa"]})
    client = Client()
    sign_in(client, "u1")
    assert client.get("/admin/")["Location"].startswith("/admin/two-factor/setup/")  # off by default

    settings.OIDC_MFA_SATISFIES_TWO_FACTOR = True
    client = Client()
    sign_in(client, "u1")
    assert client.get("/admin/").status_code == 200

    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"], "amr": ["pwd"]})
    client = Client()
    sign_in(client, "u1")
    assert client.get("/admin/").status_code == 302  # a password alone at the provider is not two factors


@pytest.mark.django_db
def test_person_with_an_authenticator_is_asked_for_it_after_the_provider(idp, workspace):
    map_group("keyward-devs", workspace, "Developer")
    set_users(idp, u1={"email": "dana@acme.test", "groups": ["keyward-devs"]})
    sign_in(Client(), "u1")
    make_confirmed_device(ExternalIdentity.objects.get(subject="u1").user)
    client = Client()
    sign_in(client, "u1")
    assert client.get("/admin/")["Location"].startswith("/admin/two-factor/verify/")


@pytest.mark.django_db
def test_sign_in_page_offers_the_provider_only_when_configured(idp, settings):
    assert "Sign in with" in Client().get("/admin/login/").content.decode()
    settings.OIDC_ISSUER = ""
    assert "Sign in with" not in Client().get("/admin/login/").content.decode()
    assert Client().get("/oidc/sign-in/").status_code == 404


@pytest.mark.django_db
def test_mapping_page_adds_with_the_granting_rules(owner, workspace, other_workspace):
    from tests.conftest import login

    client = login(owner)
    url = "/admin/accounts/identityprovidergroup/add/"
    page = client.get(url)
    assert page.status_code == 200
    viewer = builtin_role("Viewer")
    response = client.post(url, {"group": "acme-viewers", "workspace": workspace.pk, "role": viewer.pk})
    assert response.status_code == 302
    mapping = IdentityProviderGroup.objects.get()
    assert AuditEvent.objects.filter(action="idp_group.create", object_id=str(mapping.pk)).exists()
    # Another workspace is not a choice for them.
    response = client.post(url, {"group": "x", "workspace": other_workspace.pk, "role": viewer.pk})
    assert response.status_code == 200 and IdentityProviderGroup.objects.count() == 1
