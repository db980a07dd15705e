import re

import pytest

from project.actors import SYSTEM
from secrets_app import demo
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool, ToolSecretReference, UserCredential
from workspaces.services import workspace_create

pytestmark = pytest.mark.django_db


def _seed(workspaces):
    for seeder in demo.demo_seeders:
        seeder(workspaces=workspaces, scale=1, logins=[], password="x", stdout=None)


def test_demo_rows_are_created_once_with_random_values():
    workspaces = [workspace_create(actor=SYSTEM, name="Acme Voice", slug="acme"),
                  workspace_create(actor=SYSTEM, name="Globex", slug="globex")]
    _seed(workspaces)
    counts = (Secret.objects.count(), Tool.objects.count(), AuthConnection.objects.count(),
              OAuthProvider.objects.count(), UserCredential.objects.count())
    assert counts == (6, 6, 10, 2, 6)
    assert set(AuthConnection.objects.values_list("kind", flat=True)) == set(AuthConnection.Kind.values)
    assert ToolSecretReference.objects.count() == 6
    values = [s.value for s in Secret.objects.all()]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"demo_[A-Za-z0-9_-]{32}", v) for v in values)
    _seed(workspaces)
    assert (Secret.objects.count(), Tool.objects.count(), AuthConnection.objects.count(),
            OAuthProvider.objects.count(), UserCredential.objects.count()) == counts
    assert [s.value for s in Secret.objects.all()] == values


def test_the_demo_provider_refreshes_at_the_emulator_when_the_platform_is_the_local_emulator(settings, emulator):
    import httpx

    from secrets_app import oauth, services

    settings.PLATFORM_API_URL = "https://api.elevenlabs.io"
    assert demo.demo_token_url() == "https://oauth2.googleapis.com/token"
    settings.PLATFORM_API_URL = "http://127.0.0.1:8765/"
    assert demo.demo_token_url() == "http://127.0.0.1:8765/_emulator/oauth/token"

    _seed([workspace_create(actor=SYSTEM, name="Acme Voice", slug="acme")])
    provider = OAuthProvider.objects.get()
    assert provider.token_url == "http://127.0.0.1:8765/_emulator/oauth/token"
    credential = UserCredential.objects.filter(provider=provider).first()
    old_token = credential.access_token
    client = httpx.Client(transport=httpx.MockTransport(emulator.handle), follow_redirects=False)
    oauth.set_client(client)
    try:
        refreshed = services.credential_refresh(actor=SYSTEM, credential=credential)
        assert refreshed.state == "active" and refreshed.access_token != old_token
        assert refreshed.access_token.startswith("ya29.demo_") and refreshed.last_refreshed_at is not None
        assert emulator.call_counts["POST /_emulator/oauth/token"] == 1
        # The failure path: a refresh token the provider refuses marks the credential and keeps the old one.
        other = UserCredential.objects.filter(provider=provider).exclude(pk=credential.pk).first()
        other.refresh_token = "revoked-by-the-user"
        other.save()
        failed = services.credential_refresh(actor=SYSTEM, credential=other)
        assert failed.state == "refresh_failed" and failed.last_error == "the provider refused the refresh"
        assert UserCredential.objects.get(pk=other.pk).refresh_token == "revoked-by-the-user"
    finally:
        oauth.set_client(None)
        client.close()
