"""The notification pages a person uses: channels (write-only secret parts, clear field errors for bad input, the
signing secret shown once, Send test with its result on the page), routing rules, and the alert page's Acknowledge,
Resolve and Assign buttons with its delivery log. Permissions tried as owner, member and outsider."""

from __future__ import annotations

import logging

import pytest

from project.actors import SYSTEM
from project.alerts import services
from project.alerts.models import Alert, Delivery, NotificationChannel, NotificationRule
from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from tests.alerts.conftest import channel, deliver, rule
from tests.conftest import login
from tests.factories import make_person

pytestmark = pytest.mark.django_db
ADD = "/admin/alerts/notificationchannel/add/"
SLACK_TOKEN = "T0CANARY/B0CANARY/zq9canarySlackPath77"
ROUTING_KEY = "pdCANARYroutingKEY0123456789abcd"


def form(workspace, **values):
    return {"workspace": workspace.pk, "name": "chan", "kind": "slack", "addresses": "", "url": "",
            "routing_key": "", "quiet_minutes": 60, "enabled": "on", **values}


def errors_of(response):
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def test_owner_adds_a_slack_channel_and_its_url_is_never_shown_again(workspace, owner, receiver, caplog):
    client = login(owner)
    with caplog.at_level(logging.DEBUG):
        response = client.post(ADD, form(workspace, url=f"{receiver.url}/services/{SLACK_TOKEN}"))
    assert response.status_code == 302
    saved = NotificationChannel.objects.get()
    assert saved.url.endswith(SLACK_TOKEN)
    page = client.get(f"/admin/alerts/notificationchannel/{saved.pk}/change/").content.decode()
    assert SLACK_TOKEN not in page and "webhook URL: set" in page
    # Saving again with the URL blank keeps it.
    assert client.post(f"/admin/alerts/notificationchannel/{saved.pk}/change/",
                       form(workspace, name="chat")).status_code == 302
    saved.refresh_from_db()
    assert saved.name == "chat" and saved.url.endswith(SLACK_TOKEN)
    audit = str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert SLACK_TOKEN not in audit and "[changed]" in audit
    assert SLACK_TOKEN not in caplog.text


@pytest.mark.parametrize(("values", "field", "text"), [
    ({"url": "https://10.0.0.5/hook"}, "url", "private address"),
    ({"url": "https://169.254.169.254/latest"}, "url", "link-local"),
    ({"url": "ftp://hooks.example.com/x"}, "url", "https://"),
    ({"url": ""}, "url", "Give the webhook"),
    ({"kind": "email", "addresses": "sec@acme.test, not-an-address"}, "addresses", "not an email address"),
    ({"kind": "pagerduty", "routing_key": "has spaces!"}, "routing_key", "routing key"),
])
def test_bad_channel_input_is_a_clear_error_on_its_field(workspace, owner, values, field, text):
    response = login(owner).post(ADD, form(workspace, **values))
    errors = errors_of(response)
    assert text in " ".join(errors[field])
    assert NotificationChannel.objects.count() == 0


def test_plain_http_and_loopback_are_refused_in_production(workspace, owner, settings):
    settings.PRODUCTION = True
    for url, text in (("http://hooks.example.com/x", "must use https://"), ("https://127.0.0.1/x", "loopback")):
        errors = errors_of(login(owner).post(ADD, form(workspace, url=url)))
        assert text in " ".join(errors["url"])
    assert NotificationChannel.objects.count() == 0


def test_a_generic_webhooks_signing_secret_is_shown_once(workspace, owner, receiver):
    client = login(owner)
    response = client.post(ADD, form(workspace, kind="webhook", url=f"{receiver.url}/hook"))
    assert response.status_code == 200 and "shown only this once" in response.content.decode()
    saved = NotificationChannel.objects.get()
    assert saved.signing_secret.startswith("whsec_") and saved.signing_secret in response.content.decode()
    page = client.get(f"/admin/alerts/notificationchannel/{saved.pk}/change/").content.decode()
    assert saved.signing_secret not in page and "signing secret: set" in page
    rotated = client.post(f"/admin/alerts/notificationchannel/{saved.pk}/rotate-secret/")
    old = saved.signing_secret
    saved.refresh_from_db()
    assert saved.signing_secret != old and saved.signing_secret in rotated.content.decode()


def test_send_test_queues_a_message_and_its_result_shows_on_the_channel_page(workspace, owner, receiver):
    ch, _ = channel(workspace, "slack", url=f"{receiver.url}/x")
    client = login(owner)
    response = client.post(f"/admin/alerts/notificationchannel/{ch.pk}/send-test/")
    assert response.status_code == 302 and receiver.requests == []  # never sent inside the request
    deliver()
    assert "Test message from Keyward" in receiver.requests[0].json()["text"]
    page = client.get(f"/admin/alerts/notificationchannel/{ch.pk}/change/").content.decode()
    assert "delivered" in page and "Test" in page
    receiver.default = 500
    client.post(f"/admin/alerts/notificationchannel/{ch.pk}/send-test/")
    deliver()
    page = client.get(f"/admin/alerts/notificationchannel/{ch.pk}/change/").content.decode()
    assert "HTTP 500" in page and "dead" in page


def test_member_and_outsider_cannot_manage_channels(workspace, member, outsider, receiver):
    ch, _ = channel(workspace, "slack", url=f"{receiver.url}/x")
    assert login(member).post(f"/admin/alerts/notificationchannel/{ch.pk}/send-test/").status_code == 403
    assert login(outsider).post(f"/admin/alerts/notificationchannel/{ch.pk}/send-test/").status_code in (403, 404)
    assert login(member).post(ADD, form(workspace, url=f"{receiver.url}/y")).status_code == 403
    assert Delivery.objects.count() == 0 and NotificationChannel.objects.count() == 1


def test_owner_adds_a_routing_rule(workspace, other_workspace, owner, receiver):
    chat, _ = channel(workspace, "slack", url=f"{receiver.url}/x")
    foreign, _ = channel(other_workspace, "slack", "theirs", url=f"{receiver.url}/y")
    client = login(owner)
    data = {"workspace": workspace.pk, "name": "high", "severities": ["high", "critical"],
            "kinds": ["usage_spike"], "channels": [chat.pk], "enabled": "on"}
    assert client.post("/admin/alerts/notificationrule/add/", data).status_code == 302
    saved = NotificationRule.objects.get()
    assert saved.severities == ["critical", "high"] and saved.kinds == ["usage_spike"]
    assert list(saved.channels.all()) == [chat]
    refused = client.post("/admin/alerts/notificationrule/add/", {**data, "name": "x", "channels": [foreign.pk]})
    assert "channels" in errors_of(refused)


# --- the alert page ------------------------------------------------------------------------------------------
def _alert(workspace):
    alert, _ = services.alert_raise(actor=SYSTEM, workspace=workspace, kind="usage_spike", title="Spike",
                                    dedup_key="s1", severity="high")
    return alert


def test_alert_page_buttons_acknowledge_resolve_and_show_the_delivery_log(workspace, owner, receiver):
    ch, _ = channel(workspace, "slack", "chat", url=f"{receiver.url}/x")
    rule(workspace, "all", [ch], is_default=True)
    alert = _alert(workspace)
    deliver()
    client = login(owner)
    page = client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert 'id="acknowledge-alert"' in page and 'id="resolve-alert"' in page and 'id="assign-alert"' in page
    assert "chat (Slack-compatible incoming webhook)" in page and "delivered" in page
    assert client.post(f"/admin/alerts/alert/{alert.pk}/act/acknowledge/").status_code == 302
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == owner
    page = client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert 'id="acknowledge-alert"' not in page and 'id="resolve-alert"' in page
    client.post(f"/admin/alerts/alert/{alert.pk}/act/resolve/")
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert list(Delivery.objects.filter(alert=alert).order_by("id").values_list("event", flat=True)) == [
        "raise", "acknowledge", "resolve"]


def test_alert_page_assign(workspace, owner):
    person = make_person("sam", "Security admin", workspace, email="sam@acme.test")
    alert = _alert(workspace)
    client = login(owner)
    page = client.get(f"/admin/alerts/alert/{alert.pk}/assign/").content.decode()
    assert "sam" in page
    assert client.post(f"/admin/alerts/alert/{alert.pk}/assign/", {"assignee": person.pk}).status_code == 302
    alert.refresh_from_db()
    assert alert.assignee == person
    assert Delivery.objects.get(event="assign").recipient == "sam@acme.test"


def test_member_sees_no_buttons_and_cannot_act_outsider_gets_404(workspace, member, outsider):
    alert = _alert(workspace)
    page = login(member).get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert 'id="acknowledge-alert"' not in page and 'id="assign-alert"' not in page
    assert login(member).post(f"/admin/alerts/alert/{alert.pk}/act/acknowledge/").status_code == 403
    assert login(outsider).post(f"/admin/alerts/alert/{alert.pk}/act/acknowledge/").status_code == 404
    assert Alert.objects.get().state == "open"


def test_no_secret_in_messages_audit_or_outbox(workspace, receiver, caplog):
    hook, secret = channel(workspace, "webhook", url=f"{receiver.url}/{SLACK_TOKEN}")
    pd, _ = channel(workspace, "pagerduty", routing_key=ROUTING_KEY)
    rule(workspace, "all", [hook, pd], is_default=True)
    with caplog.at_level(logging.DEBUG):
        _alert(workspace)
        receiver.default = 503
        deliver()
    canaries = (SLACK_TOKEN, ROUTING_KEY, secret)
    stored = str(list(SyncJob.objects.values("payload", "last_error", "object_repr")))
    stored += str(list(AuditEvent.objects.values("changes", "object_repr")))
    stored += str(list(Delivery.objects.values()))
    for canary in canaries:
        assert canary not in stored and canary not in caplog.text
    webhook_bodies = [r.body.decode() for r in receiver.requests if r.path != "/v2/enqueue"]
    assert webhook_bodies and all(c not in body for body in webhook_bodies for c in canaries)
