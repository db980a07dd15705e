"""An API key issued in the browser: its secret shows once, never after a reload, and rotation shows the
successor's secret once; the platform (the emulator) accepts each secret shown."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from keys.models import ApiKey
from tests.conftest import SECRET_SHAPE, key_works
from tests.e2e.conftest import person, sign_in, submitted
from workspaces.services import service_account_create, service_account_ensure_remote

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_key_secret_shows_once_not_after_reload_and_rotation_shows_the_successor_once(
        page: Any, live_server: Any, world: Any, emulator: Any) -> None:
    base = live_server.url
    admin = person("acme-admin", "Admin", world.acme)
    account = service_account_create(actor=admin.user, workspace=world.acme, name="billing-backend")
    service_account_ensure_remote(actor=admin.user, service_account=account)
    sign_in(page, base, admin)

    page.goto(f"{base}/admin/keys/apikey/add/")
    page.select_option("#id_service_account", label="Acme Voice / billing-backend")
    page.select_option("#id_environment", label="Acme Voice / prod")
    page.fill("#id_name", "billing")
    page.check("input[name=scopes][value=workspace_read]")
    page.fill("#id_credit_quota", "1000")
    page.click("input[type=submit][value='Issue key']")
    submitted(page)

    secret_box = page.locator("#api-key-secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert SECRET_SHAPE.fullmatch(secret), "the page shows the key's secret"
    expect(page.locator("#secret-warning")).to_contain_text("only time it is shown")
    assert key_works(emulator, secret)
    key = ApiKey.objects.get()
    assert key.hint == secret[-4:] and secret not in str(ApiKey.objects.values().get())

    # Reloading re-sends the form: the same request finds the key it made, and the secret is gone for good.
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    assert secret not in page.content()
    assert ApiKey.objects.count() == 1
    page.click("text=Go to the key")
    expect(page.locator(".field-hint_display")).to_contain_text(f"…{secret[-4:]}")
    assert secret not in page.content()

    # Rotate: the successor's secret, once; both keys work during the overlap.
    page.click("#rotate-link")
    page.click("input[type=submit][value=Rotate]")
    submitted(page)
    expect(page.locator("#api-key-secret")).to_be_visible()
    successor_secret = page.locator("#api-key-secret").input_value()
    assert SECRET_SHAPE.fullmatch(successor_secret) and successor_secret != secret
    assert key_works(emulator, successor_secret) and key_works(emulator, secret)
    successor = ApiKey.objects.get(predecessor=key)
    assert (successor.environment, successor.scopes, successor.credit_quota) == (
        key.environment, key.scopes, key.credit_quota)
    assert ApiKey.objects.get(pk=key.pk).state == "superseded"
    page.reload()
    expect(page.locator("#secret-gone")).to_be_visible()
    assert successor_secret not in page.content() and ApiKey.objects.count() == 2

    page.goto(f"{base}/admin/keys/apikey/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("Rotated (overlap)")
    assert secret not in page.content() and successor_secret not in page.content()
