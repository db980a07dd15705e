"""Sign-in through the identity provider, see only what you can do, and every main list readable at 1280 px."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.accounts import oidc_provider
from tests.e2e.conftest import ARTIFACTS, person, sign_in
from tests.factories import (
    builtin_role,
    make_agent,
    make_api_key_row,
    make_broker_key,
    make_oauth_provider,
    make_secret,
    make_tool,
    make_vault_credential,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENT_ID, CLIENT_SECRET = "keyward-e2e", "loopback-e2e-secret"


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    process, url = oidc_provider.start(CLIENT_ID, CLIENT_SECRET)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sign_in_with_the_identity_provider(page: Any, live_server: Any, world: Any, provider_url: str,
                                            settings: Any) -> None:
    from accounts import oidc
    from accounts.models import IdentityProviderGroup

    settings.OIDC_ISSUER, settings.OIDC_PROVIDER_NAME = provider_url, "Acme SSO"
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_ALLOWED_EMAIL_DOMAINS = ["acme.test"]
    settings.OIDC_MFA_SATISFIES_TWO_FACTOR = True
    oidc.forget_provider()
    IdentityProviderGroup.objects.create(group="voice-devs", workspace=world.acme, role=builtin_role("Developer"))
    requests.post(f"{provider_url}/_control/users", timeout=5, json={
        "dana": {"email": "dana@acme.test", "groups": ["voice-devs"], "amr": ["pwd", "mfa"]}}).raise_for_status()
    make_agent(world.acme, "Acme support line")

    base = live_server.url
    page.goto(f"{base}/admin/login/?next=/admin/agents/agent/")
    page.click("text=Sign in with Acme SSO")
    page.click("text=Sign in as dana@acme.test")  # the provider's own page
    expect(page).to_have_url(f"{base}/admin/agents/agent/")
    expect(page.locator("#user-tools")).to_contain_text("Log out")
    expect(page.locator("#result_list")).to_contain_text("Acme support line")


def test_viewer_sees_no_mint_and_a_refusal_explains_itself(page: Any, live_server: Any, world: Any) -> None:
    base = live_server.url
    agent = make_agent(world.acme, "Acme support line")
    sign_in(page, base, person("acme-viewer", "Viewer", world.acme))
    page.goto(f"{base}/admin/agents/agent/{agent.pk}/change/")
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator("#mint-link")).to_have_count(0)

    page.goto(f"{base}/admin/agents/agent/{agent.pk}/mint/")
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("sessions.mint")
    expect(refusal).to_contain_text("Acme Voice")
    page.click("#refusal-back")
    expect(page).to_have_url(f"{base}/admin/")


def test_developer_sees_mint(page: Any, live_server: Any, world: Any) -> None:
    base = live_server.url
    agent = make_agent(world.acme, "Acme support line")
    sign_in(page, base, person("acme-dev", "Developer", world.acme))
    page.goto(f"{base}/admin/agents/agent/{agent.pk}/change/")
    expect(page.locator("#mint-link")).to_be_visible()


MAIN_LISTS = ("agents/agent", "keys/apikey", "secrets_app/secret", "secrets_app/tool", "secrets_app/authconnection",
              "secrets_app/usercredential", "broker/brokerkey", "workspaces/serviceaccount",
              "workspaces/roleassignment", "auth/user", "accounts/identityprovidergroup", "alerts/alert",
              "detection/incident", "audit/auditevent", "sync/syncjob", "sync/drift", "workspaces/platformaccount")


def test_every_main_list_fits_1280_px(page: Any, live_server: Any, world: Any) -> None:
    """A screenshot of each main list as a superuser at 1280 px, whose results table needs no sideways scroll."""
    from project.actors import SYSTEM
    from project.alerts.services import alert_raise
    from tests.factories import ServiceAccountFactory

    for workspace in (world.acme, world.globex):
        for n in range(3):
            agent = make_agent(workspace, f"{workspace.slug} customer support line {n}")
            account = ServiceAccountFactory(workspace=workspace, name=f"{workspace.slug}-billing-backend-{n}",
                                            role="Developer")
            key = make_api_key_row(workspace, name=f"{workspace.slug} billing integration key {n}",
                                   service_account=account)
            make_secret(workspace, f"{workspace.slug}_crm_token_{n}")
            make_tool(workspace, f"{workspace.slug}_lookup_{n}",
                      headers={"Authorization": f"{{{{ secret__{workspace.slug}_crm_token_{n} }}}}"})
            alert_raise(actor=SYSTEM, workspace=workspace, kind="usage_spike", severity="high",
                        title=f"Usage spike on {key.name}", dedup_key=f"spike-{key.pk}", target=key)
            make_broker_key(workspace, service_account=account, agents=[agent], name=f"{workspace.slug} web app {n}",
                            environment=workspace.environments.get(name="prod"))
        make_vault_credential(workspace, make_oauth_provider(workspace), end_user_id=f"{workspace.slug}-user-42")
    root = person("e2e-admin", None, world.acme, is_superuser=True)
    base = live_server.url
    sign_in(page, base, root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    overflowing = []
    for path in MAIN_LISTS:
        response = page.goto(f"{base}/admin/{path}/")
        assert response is not None and response.status == 200, path
        page.screenshot(path=str(ARTIFACTS / f"list-{path.replace('/', '-')}.png"), full_page=True)
        widths = page.evaluate("""() => {
            const box = document.querySelector('#changelist .results') || document.querySelector('#changelist');
            return box ? [box.scrollWidth, box.clientWidth] : null; }""")
        if widths and widths[0] > widths[1]:
            overflowing.append(f"{path}: {widths[0]} px of content in {widths[1]} px")
    assert not overflowing, "lists scrolling sideways at 1280 px:\n" + "\n".join(overflowing)


def test_scope_search_and_auth_connection_kinds(page: Any, live_server: Any, world: Any) -> None:
    base = live_server.url
    sign_in(page, base, person("acme-admin", "Admin", world.acme))
    page.goto(f"{base}/admin/keys/apikey/add/")
    page.fill(".kw-scope-search", "voices")
    expect(page.locator("label[for] >> text=voices_read")).to_be_visible()
    expect(page.locator("label[for] >> text=convai_read")).to_be_hidden()

    page.goto(f"{base}/admin/secrets_app/authconnection/add/")
    page.check("input[name=kind][value=basic_auth]")
    expect(page.locator("#id_username")).to_be_visible()
    expect(page.locator("#id_token")).to_be_hidden()
    page.check("input[name=kind][value=bearer_auth]")
    expect(page.locator("#id_token")).to_be_visible()
    expect(page.locator("#id_username")).to_be_hidden()
