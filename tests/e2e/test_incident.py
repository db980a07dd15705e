"""An incident walked in the browser: from an alert on a key, "Open incident", then each step of the walk.

Skipped, with the reason printed, while the detection app has no incident pages.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import NoReverseMatch, reverse
from playwright.sync_api import expect

from tests.conftest import SECRET_SHAPE, key_works
from tests.e2e.conftest import person, sign_in, submitted
from tests.factories import make_alert, make_api_key, make_secret

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _incident_pages() -> None:
    try:
        reverse("admin:detection_incident_open")
    except NoReverseMatch:
        pytest.skip("the detection app has no incident pages yet (admin:detection_incident_open)")


@pytest.fixture
def exposed(world: Any, platform: Any) -> dict[str, Any]:
    """A security admin of Acme, a live key of a synced service account, and an alert about that key."""
    from workspaces.services import service_account_create, service_account_ensure_remote

    responder = person("acme-security", "Security admin", world.acme)
    account = service_account_create(actor=responder.user, workspace=world.acme, name="billing-backend")
    service_account_ensure_remote(actor=responder.user, service_account=account)
    issued = make_api_key(responder.user, account, "prod", name="billing", credit_quota=5000)
    make_secret(world.acme, "crm_token", "crm-secret-value-0c1d")
    alert = make_alert(world.acme, "api_key_exposed", target=issued.key, title="billing key seen in a public paste",
                       dedup_key="e2e-exposed", severity="critical")
    return {"responder": responder, "key": issued.key, "secret": issued.secret, "alert": alert}


def _open_from_alert(page: Any, base: str, alert: Any) -> None:
    page.goto(f"{base}/admin/alerts/alert/{alert.pk}/change/")
    page.click("#open-incident-link")
    expect(page.locator("#incident-subject")).to_contain_text("billing key seen in a public paste")
    page.fill("#id_summary", "Found in a public paste")
    page.click("#open-incident")
    expect(page.locator(".messagelist")).to_contain_text("opened")
    expect(page.locator("#incident-walk")).to_be_visible()


def _step(page: Any, kind: str) -> None:
    page.click(f"#walk-{kind}")
    expect(page.locator("#content form")).to_be_visible()


def _submit_step(page: Any, message: str) -> None:
    page.click("#content-main input[type=submit].default")
    submitted(page)
    expect(page.locator(".messagelist")).to_contain_text(message)
    expect(page).to_have_url(re.compile(r"/admin/detection/incident/\d+/change/$"))


def _assess_list_postmortem_close(page: Any) -> None:
    _step(page, "blast_radius")
    expect(page.locator("#blast-preview")).to_contain_text("What it could reach")
    if not page.input_value("#id_exposure_start"):
        page.fill("#id_exposure_start", "2026-01-01T00:00")
    page.fill("#id_notes", "no use outside our own backend")
    _submit_step(page, "Blast radius recorded")

    _step(page, "related_secrets")
    page.locator("label", has_text="crm_token").locator("input[type=checkbox]").check()
    page.fill("#id_notes", "sat in the same .env file")
    _submit_step(page, "Related secrets recorded")

    _step(page, "postmortem")
    page.fill("#id_root_cause", "A request log with the key was pasted into a public issue.")
    page.check("input[name=controls][value=log_redaction]")
    _submit_step(page, "")

    _step(page, "closed")
    _submit_step(page, "")
    walk = page.locator("#incident-walk")
    expect(page.locator(".field-state_display")).to_contain_text("Closed")
    for label in ("Revoked", "Blast radius assessed", "Related secrets listed", "Post-mortem written",
                  "Incident closed"):
        expect(page.locator("#incident-timeline")).to_contain_text(label)
    expect(walk.locator("a.button.default")).to_have_count(0)  # nothing left to do on a closed incident


def test_incident_walk_revokes_replaces_assesses_lists_related_secrets_and_closes(
        page: Any, live_server: Any, exposed: dict[str, Any], emulator: Any) -> None:
    from detection.models import Incident
    from keys.models import ApiKey

    base = live_server.url
    sign_in(page, base, exposed["responder"])
    _open_from_alert(page, base, exposed["alert"])

    _step(page, "revoke")
    page.fill("#id_reason", "seen in a public paste")
    _submit_step(page, "")
    assert not key_works(emulator, exposed["secret"])

    _step(page, "replace")
    page.click("#content-main input[type=submit].default")
    submitted(page)
    successor_secret = page.locator("#api-key-secret").input_value()
    assert SECRET_SHAPE.fullmatch(successor_secret) and key_works(emulator, successor_secret)
    expect(page.locator("#back-to-incident")).to_be_visible()
    page.reload()  # the browser sends the form again: the replacement is recorded already, its secret not shown
    assert successor_secret not in page.content()
    page.click("text=Back to the incident")

    _assess_list_postmortem_close(page)
    incident = Incident.objects.get()
    assert incident.state == "closed" and incident.replacement_key == ApiKey.objects.get(predecessor=exposed["key"])
    assert successor_secret not in page.content() and exposed["secret"] not in page.content()


def test_incident_about_a_key_nobody_needs_is_revoked_assessed_and_closed_without_a_replacement(
        page: Any, live_server: Any, exposed: dict[str, Any], emulator: Any) -> None:
    from detection.models import Incident
    from project.alerts.models import Alert

    base = live_server.url
    sign_in(page, base, exposed["responder"])
    _open_from_alert(page, base, exposed["alert"])
    expect(page.locator("#walk-replace")).to_have_count(0)  # revoke comes first

    _step(page, "revoke")
    page.fill("#id_reason", "seen in a public paste")
    _submit_step(page, "")
    assert not key_works(emulator, exposed["secret"])
    expect(page.locator(".field-state_display")).to_contain_text("Contained")

    _assess_list_postmortem_close(page)
    incident = Incident.objects.get()
    assert incident.state == "closed" and incident.replacement_key is None
    assert list(incident.steps.values_list("kind", flat=True)) == [
        "opened", "revoke", "blast_radius", "related_secrets", "postmortem", "closed"]
    assert Alert.objects.get(pk=exposed["alert"].pk).state == "resolved"
    assert exposed["secret"] not in page.content()
