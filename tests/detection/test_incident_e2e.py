"""End to end through the admin, against the emulated platform: a key found by the leak check → "Open incident" →
revoke (the platform refuses the key) → the replacement shown once (the platform accepts it) → blast radius →
related secrets → post-mortem → close → the exported Markdown post-mortem."""

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse

from detection.models import Incident
from keys.models import ApiKey
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.conftest import SECRET_SHAPE, key_works
from tests.factories import make_api_key, make_daily_usage, make_secret

pytestmark = pytest.mark.django_db


def _paste(secret):
    return f"2026-11-20 DEBUG headers={{'xi-api-key': '{secret}'}}\n+ELEVENLABS_API_KEY={secret}\n"


def _follow_link(body, element_id_or_class):
    match = re.search(rf'class="[^"]*{element_id_or_class}[^"]*" href="([^"]+)"', body) or re.search(
        rf'href="([^"]+)"[^>]*id="{element_id_or_class}"', body)
    assert match, f"no {element_id_or_class} link"
    return match.group(1).replace("&amp;", "&")


def test_incident_walk_from_a_leak_check_match_to_the_exported_post_mortem(
        owner_client, owner, account, emulator, clock, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account, "prod", name="billing", credit_quota=5000, allowed_ips=["127.0.0.1"])
    leaked = ApiKey.objects.get(pk=issued.key.pk)
    make_secret(leaked.workspace, "crm_token", "crm-secret-value")
    make_daily_usage(leaked, clock.now.date(), 321, requests=12)
    clock.advance(minutes=5)  # (the admin session expires after 30 idle minutes)

    # 1. The leak check finds the key; its row offers "Open incident".
    page = owner_client.post(reverse("admin:keys_apikey_leak_check"), {"text": _paste(issued.secret)})
    open_url = _follow_link(page.content.decode(), "open-incident")
    assert f"key={leaked.pk}" in open_url and "source=leak_check" in open_url

    # 2. Open it.
    form = owner_client.get(open_url)
    assert form.status_code == 200 and "billing" in form.content.decode()
    response = owner_client.post(open_url, {"key": leaked.pk, "source": "leak_check", "title": "",
                                            "summary": "Pasted in a support ticket", "severity": ""})
    incident = Incident.objects.get()
    incident_url = reverse("admin:detection_incident_change", args=[incident.pk])
    assert response.status_code == 302 and response["Location"] == incident_url
    assert incident.source == "leak_check" and incident.severity == "critical"
    exposed = Alert.objects.get(kind="api_key_exposed")  # the leak check's own alert, answered by the incident
    assert incident.alert == exposed and exposed.state == "acknowledged"

    # 3. Revoke now: the platform refuses the key at once.
    body = owner_client.get(incident_url).content.decode()
    assert 'id="walk-revoke"' in body and 'id="walk-replace"' not in body
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("admin:detection_incident_revoke", args=[incident.pk]),
                                     {"reason": "found in a support ticket"})
    assert response.status_code == 302 and not key_works(emulator, issued.secret)
    assert ApiKey.objects.get(pk=leaked.pk).state == "revoked"

    # 4. The replacement: issued with the same limits, its secret shown once, and it works.
    replace_url = reverse("admin:detection_incident_replace", args=[incident.pk])
    request_uuid = str(uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        shown = owner_client.post(replace_url, {"request_uuid": request_uuid})
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    (new_secret,) = set(SECRET_SHAPE.findall(shown.content.decode()))
    assert new_secret != issued.secret and key_works(emulator, new_secret)
    again = owner_client.post(replace_url, {"request_uuid": request_uuid})  # a reload shows it no more
    assert new_secret not in again.content.decode()
    successor = ApiKey.objects.get(predecessor=leaked)
    assert (successor.credit_quota, successor.allowed_ips, successor.environment) == (5000, ["127.0.0.1/32"],
                                                                                      leaked.environment)

    # 5. Blast radius over the exposure window.
    blast_url = reverse("admin:detection_incident_blast_radius", args=[incident.pk])
    preview = owner_client.get(blast_url).content.decode()
    assert "321" in preview and "usable only from 127.0.0.1/32" in preview
    start = (clock.now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert owner_client.post(blast_url, {"exposure_start": start, "exposure_end": "",
                                         "notes": "matches normal traffic"}).status_code == 302

    # 6. Related secrets: the workspace's crm_token sat in the same .env.
    related_url = reverse("admin:detection_incident_related", args=[incident.pk])
    related = owner_client.get(related_url)
    crm = next(value for value, label in related.context["form"].fields["refs"].choices if "crm_token" in label)
    assert owner_client.post(related_url, {"refs": [crm], "notes": "same .env file"}).status_code == 302

    # 7. Post-mortem, then close.
    assert owner_client.post(reverse("admin:detection_incident_postmortem", args=[incident.pk]), {
        "root_cause": "A developer pasted a request log into a support ticket.",
        "controls": ["log_redaction", "ip_allowlist"], "controls_notes": "Ticket tool scrubs sk_ strings."},
    ).status_code == 302
    assert owner_client.post(reverse("admin:detection_incident_close", args=[incident.pk]),
                             {"notes": "done"}).status_code == 302
    incident.refresh_from_db()
    assert incident.state == "closed" and incident.replacement_key == successor
    assert Alert.objects.get(kind="api_key_exposed").state == "resolved"

    # 8. The page reads as a timeline, and exports as Markdown.
    body = owner_client.get(incident_url).content.decode()
    for label in ("Incident opened", "Revoked", "Replacement issued", "Blast radius assessed",
                  "Related secrets listed", "Post-mortem written", "Incident closed"):
        assert label in body
    export = owner_client.get(reverse("admin:detection_incident_export", args=[incident.pk]))
    text = export.content.decode()
    assert export["Content-Type"].startswith("text/markdown")
    assert 'filename="incident-' in export["Content-Disposition"]
    assert "A developer pasted a request log" in text and "xi-api-key redacted from logs and traces" in text
    assert "crm_token" in text and "| **total** | **321** | **12** |" in text
    assert issued.secret not in text and new_secret not in text and "crm-secret-value" not in text
    assert all(issued.secret not in str(e.changes) and new_secret not in str(e.changes)
               for e in AuditEvent.objects.all())
    steps = list(incident.steps.values_list("kind", "actor__username"))
    assert steps == [("opened", "owner"), ("revoke", "owner"), ("replace", "owner"), ("blast_radius", "owner"),
                     ("related_secrets", "owner"), ("postmortem", "owner"), ("closed", "owner")]
