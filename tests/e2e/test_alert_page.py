"""The alert page's buttons in a real browser: a Security admin acknowledges then resolves an alert from its page;
a Viewer sees the alert without any button."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import person, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _alert(workspace: Any) -> Any:
    from project.actors import SYSTEM
    from project.alerts.services import alert_raise

    alert, _ = alert_raise(actor=SYSTEM, workspace=workspace, kind="usage_spike", severity="high",
                           title="Spike on key “ci”", dedup_key="e2e-spike",
                           details={"credits_last_hour": 12000, "baseline": 40})
    return alert


def test_security_admin_acknowledges_then_resolves_from_the_alert_page(page: Any, live_server: Any,
                                                                        world: Any) -> None:
    from project.alerts.models import Alert

    alert = _alert(world.acme)
    base = live_server.url
    sign_in(page, base, person("acme-sec", "Security admin", world.acme))
    page.goto(f"{base}/admin/alerts/alert/{alert.pk}/change/")
    expect(page.locator("#assign-alert")).to_be_visible()
    page.click("#acknowledge-alert")
    expect(page.locator("#acknowledge-alert")).to_have_count(0)
    assert Alert.objects.get(pk=alert.pk).state == Alert.State.ACKNOWLEDGED
    page.click("#resolve-alert")
    expect(page.locator("#resolve-alert")).to_have_count(0)
    assert Alert.objects.get(pk=alert.pk).state == Alert.State.RESOLVED


def test_viewer_sees_the_alert_without_buttons(page: Any, live_server: Any, world: Any) -> None:
    alert = _alert(world.acme)
    base = live_server.url
    sign_in(page, base, person("acme-viewer", "Viewer", world.acme))
    page.goto(f"{base}/admin/alerts/alert/{alert.pk}/change/")
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator("#content")).to_contain_text("Spike on key")
    for button in ("#acknowledge-alert", "#resolve-alert", "#assign-alert"):
        expect(page.locator(button)).to_have_count(0)
