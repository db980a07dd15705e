"""The leak check: key-shaped strings in pasted text matched by digest, scoped to what the person may see; the text
is not kept anywhere."""

import logging
import uuid

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from keys import leaks
from keys.models import ApiKey
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.conftest import key_works
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db

LEAK = reverse("admin:keys_apikey_leak_check")


def _paste(*secrets):
    return "\n".join([
        "2026-11-20 10:00:01 INFO starting worker",
        *(f"2026-11-20 10:00:02 DEBUG headers={{'xi-api-key': '{s}'}}" for s in secrets),
        "diff --git a/.env b/.env\n+ELEVENLABS_API_KEY=" + (secrets[0] if secrets else "none"),
    ])


def test_extract_finds_platform_keys_and_ignores_near_misses():
    good = "sk_" + "ab12" * 12
    text = " ".join([good, good, "sk_" + "ab12" * 11, "sk_" + "AB12" * 12, "xsk_" + "ab12" * 12,
                     "sk_" + "ab12" * 12 + "f", f'"{good}"'])
    digests, _ = leaks.extract(text)
    assert len(digests) == 1 and next(iter(digests.values())) == 3


def test_pasted_key_is_matched_with_its_owner(owner, account):
    issued = make_api_key(owner, account)
    report = leaks.leak_check(actor=owner, text=_paste(issued.secret, "sk_" + "0" * 48))
    assert report.candidates == 2 and report.unmatched == 1
    (match,) = report.matches
    assert match.key.pk == issued.key.pk and match.key.service_account == account
    assert match.occurrences == 2 and match.can_rotate_now


def test_match_is_recorded_and_raises_an_alert_without_the_text(owner, account):
    issued = make_api_key(owner, account)
    leaks.leak_check(actor=owner, text=_paste(issued.secret))
    event = AuditEvent.objects.get(action="api_key.exposure_reported")
    assert event.object_id == str(issued.key.pk) and event.changes == {"occurrences": 2, "state": "active"}
    assert Alert.objects.get(kind="api_key_exposed").severity == "high"
    everything = str(list(AuditEvent.objects.values())) + str(list(Alert.objects.values()))
    assert issued.secret not in everything and "starting worker" not in everything


def test_outsider_and_viewer_scopes(owner, outsider, member, account):
    issued = make_api_key(owner, account)
    assert leaks.leak_check(actor=outsider, text=_paste(issued.secret)).matches == []
    (match,) = leaks.leak_check(actor=member, text=_paste(issued.secret)).matches
    assert not match.can_rotate_now  # a Developer sees the match but may not rotate it


def test_leak_page_shows_matches_and_rotate_now_only_to_who_may(owner_client, member_client, outsider_client,
                                                                owner, account):
    issued = make_api_key(owner, account, name="exposed-one")
    rotate_now = reverse("admin:keys_apikey_rotate_now", args=[issued.key.pk])
    page = owner_client.post(LEAK, {"text": _paste(issued.secret)})
    body = page.content.decode()
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert "exposed-one" in body and "billing-backend" in body and rotate_now in body
    assert issued.secret not in body and "starting worker" not in body  # the paste is not echoed
    body = member_client.post(LEAK, {"text": _paste(issued.secret)}).content.decode()
    assert "exposed-one" in body and rotate_now not in body
    body = outsider_client.post(LEAK, {"text": _paste(issued.secret)}).content.decode()
    assert "exposed-one" not in body and 'id="leak-matches"' not in body and 'id="leak-report"' in body


def test_rotate_now_from_the_leak_page(owner_client, owner, account, emulator, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    owner_client.post(LEAK, {"text": _paste(issued.secret)})
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(reverse("admin:keys_apikey_rotate_now", args=[issued.key.pk]),
                          {"request_uuid": str(uuid.uuid4())})
    assert ApiKey.objects.get(pk=issued.key.pk).state == "revoked" and not key_works(emulator, issued.secret)


def test_pasted_text_is_not_stored_logged_or_kept_in_the_session(owner_client, owner, account, caplog):
    issued = make_api_key(owner, account)
    marker = f"canary-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    owner_client.post(LEAK, {"text": _paste(issued.secret) + "\n" + marker})
    for session in Session.objects.all():
        assert marker not in str(session.get_decoded())
    assert marker not in caplog.text and issued.secret not in caplog.text
    assert marker not in str(list(AuditEvent.objects.values())) + str(list(Alert.objects.values()))


def test_too_long_paste_is_refused_with_a_clear_error(owner_client, settings):
    settings.API_KEY_LEAK_CHECK_MAX_CHARS = 100
    response = owner_client.post(LEAK, {"text": "x" * 101})
    assert "At most 100 characters" in " ".join(response.context["form"].errors["text"])


def test_leak_page_needs_a_workspace(db):
    from tests.conftest import login
    from tests.factories import UserFactory

    assert login(UserFactory(username="nobody")).get(LEAK).status_code == 403
