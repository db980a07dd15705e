"""Alerts reach people: each channel kind delivers through the outbox to a real receiver on loopback, retries after
a receiver failure and dead-letters after the last attempt; routing by severity and kind with a default; no storms
(once per state change, repeats counted, quiet period, acknowledgement and ownership stop repeats); the credit
guard's single delivery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from detection import guard
from project.actors import SYSTEM
from project.alerts import services
from project.alerts.models import Alert, Delivery
from project.sync.models import SyncJob
from tests.alerts.conftest import PUBLIC_URL, channel, deliver, rule, verify_standard_webhook
from tests.factories import NOW, make_api_key_row, make_daily_usage, make_person

pytestmark = pytest.mark.django_db


def raise_alert(workspace, *, key="k1", severity="high", kind="usage_spike", title="Spike on key “ci”"):
    alert, _ = services.alert_raise(actor=SYSTEM, workspace=workspace, kind=kind, title=title, dedup_key=key,
                                    severity=severity, details={"credits_last_hour": 1200, "baseline": 40})
    return alert


def jobs(state=None):
    qs = SyncJob.objects.filter(kind="notification")
    return qs.filter(state=state) if state else qs


# --- each channel kind -------------------------------------------------------------------------------------
def test_slack_channel_gets_the_alert_once_with_its_figures_and_link(workspace, receiver):
    slack, secret = channel(workspace, "slack", url=f"{receiver.url}/services/T000/B000/XXXX")
    rule(workspace, "everything", [slack], is_default=True)
    alert = raise_alert(workspace)
    assert receiver.requests == []  # nothing is sent inside the raise: the outbox's worker sends it
    assert deliver() == 1
    [got] = receiver.requests
    assert got.path == "/services/T000/B000/XXXX" and secret == ""
    text = got.json()["text"]
    assert "Spike on key “ci”" in text and "[HIGH]" in text and "Acme" in text and "credits last hour: 1200" in text
    assert f"{PUBLIC_URL}/admin/alerts/alert/{alert.pk}/change/" in text
    assert jobs(SyncJob.State.DONE).count() == 1
    assert Delivery.objects.get().sent_at is not None


def test_pagerduty_triggers_on_raise_and_resolves_on_resolve_with_the_alerts_dedup_key(workspace, receiver, owner):
    pd, _ = channel(workspace, "pagerduty", routing_key="R0UT1NGKEY0123456789abcdefABCDEF")
    rule(workspace, "pager", [pd], severities=("high", "critical"))
    alert = raise_alert(workspace)
    deliver()
    services.alert_resolve(actor=owner, alert=alert)
    deliver()
    trigger, resolve = (r.json() for r in receiver.requests)
    assert receiver.requests[0].path == "/v2/enqueue"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == "R0UT1NGKEY0123456789abcdefABCDEF"
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"keyward:{workspace.pk}:k1"
    assert trigger["payload"]["severity"] == "error" and trigger["payload"]["summary"].startswith("[HIGH] Spike")
    assert trigger["links"][0]["href"].endswith(f"/admin/alerts/alert/{alert.pk}/change/")


def test_generic_webhook_is_signed_per_standard_webhooks(workspace, receiver):
    hook, secret = channel(workspace, "webhook", url=f"{receiver.url}/hook")
    assert secret.startswith("whsec_")
    rule(workspace, "all", [hook], is_default=True)
    alert = raise_alert(workspace)
    deliver()
    [got] = receiver.requests
    assert verify_standard_webhook(secret, got.headers, got.body)
    payload = Webhook(secret).verify(got.body, got.headers)  # the reference library agrees
    assert payload["type"] == "alert.raised" and payload["data"]["alert_id"] == alert.pk
    assert not verify_standard_webhook("whsec_" + "A" * 32, got.headers, got.body)
    assert not verify_standard_webhook(secret, got.headers, got.body.replace(b"high", b"low!"))


def test_email_channel_sends_with_djangos_email_backend(workspace, receiver):
    email, _ = channel(workspace, "email", addresses="sec@acme.test, oncall@acme.test")
    rule(workspace, "mail", [email], is_default=True)
    raise_alert(workspace)
    deliver()
    [message] = mail.outbox
    assert message.to == ["sec@acme.test", "oncall@acme.test"]
    assert "Spike on key “ci”" in message.subject and "Workspace: Acme" in message.body
    assert PUBLIC_URL in message.body


@pytest.mark.parametrize("kind", ["slack", "webhook", "pagerduty"])
def test_a_receiver_that_fails_is_retried_then_gets_the_message(workspace, receiver, kind):
    values = {"routing_key": "abc123"} if kind == "pagerduty" else {"url": f"{receiver.url}/x"}
    ch, _ = channel(workspace, kind, **values)
    rule(workspace, "all", [ch], is_default=True)
    raise_alert(workspace)
    receiver.statuses = [503, 500]
    deliver()  # 503, then 500, then 200: backoff is zero here, so the drain retries at once
    assert [r.status for r in receiver.requests] == [503, 500, 200]
    job = jobs().get()
    assert job.state == SyncJob.State.DONE and job.attempts == 3
    if kind == "webhook":  # the same message id on every attempt, so a receiver can drop duplicates
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_email_retried_when_the_mail_server_fails(workspace, receiver, settings, monkeypatch):
    import smtplib

    from project.alerts import senders

    email, _ = channel(workspace, "email", addresses="sec@acme.test")
    rule(workspace, "mail", [email], is_default=True)
    raise_alert(workspace)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise smtplib.SMTPServerDisconnected("gone")
        return real(*args, **kwargs)

    real = senders.send_mail
    monkeypatch.setattr(senders, "send_mail", flaky)
    deliver()
    assert len(calls) == 2 and len(mail.outbox) == 1 and jobs().get().state == SyncJob.State.DONE


@pytest.mark.parametrize("kind", ["slack", "webhook", "pagerduty", "email"])
def test_dead_lettered_after_the_last_attempt_and_shown_on_the_alert_page(workspace, receiver, superuser, kind,
                                                                          monkeypatch):
    from tests.conftest import login

    if kind == "email":
        from project.alerts import senders

        def down(*args, **kwargs):
            raise ConnectionRefusedError("mail server down")

        monkeypatch.setattr(senders, "send_mail", down)
        values = {"addresses": "sec@acme.test"}
    else:
        values = {"routing_key": "abc123"} if kind == "pagerduty" else {"url": f"{receiver.url}/x"}
    ch, _ = channel(workspace, kind, **values)
    rule(workspace, "all", [ch], is_default=True)
    alert = raise_alert(workspace)
    receiver.default = 502
    deliver()
    job = jobs().get()
    assert job.state == SyncJob.State.DEAD and job.attempts == 3 and "gave up after 3 attempts" in job.last_error
    page = login(superuser).get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert "dead" in page and "gave up after 3 attempts" in page
    if kind != "email":
        assert "HTTP 502" in page and receiver.url not in page and "/x" not in job.last_error


def test_a_refusing_receiver_fails_without_retries(workspace, receiver):
    hook, _ = channel(workspace, "webhook", url=f"{receiver.url}/gone")
    rule(workspace, "all", [hook], is_default=True)
    raise_alert(workspace)
    receiver.default = 410
    deliver()
    job = jobs().get()
    assert job.state == SyncJob.State.FAILED and job.attempts == 1 and "HTTP 410" in job.last_error


# --- routing -----------------------------------------------------------------------------------------------
def test_routing_by_severity_and_kind_with_a_default(workspace, receiver):
    pager, _ = channel(workspace, "webhook", "pager", url=f"{receiver.url}/pager")
    chat, _ = channel(workspace, "slack", "chat", url=f"{receiver.url}/chat")
    email, _ = channel(workspace, "email", "finance", addresses="finance@acme.test")
    rule(workspace, "critical and high", [pager, chat], severities=("critical", "high"))
    rule(workspace, "credit guard", [email], kinds=("credit_guard_quota", "credit_guard_budget"))
    rule(workspace, "default", [chat], is_default=True)
    raise_alert(workspace, key="a", severity="critical")
    raise_alert(workspace, key="b", severity="low", kind="credit_guard_quota")
    raise_alert(workspace, key="c", severity="medium", kind="api_key_idle")
    routed = {a.dedup_key: sorted(d.channel_label.split(" ")[0] for d in a.deliveries.all())
              for a in Alert.objects.prefetch_related("deliveries")}
    assert routed == {"a": ["chat", "pager"], "b": ["finance"], "c": ["chat"]}
    deliver()
    assert sorted(r.path for r in receiver.requests) == ["/chat", "/chat", "/pager"] and len(mail.outbox) == 1


def test_alerts_raised_in_bulk_are_routed_as_one_at_a_time_and_repeats_counted(workspace, other_workspace, receiver):
    """The leak check raises its alerts with alerts_raise_many: they reach the same channels as alert_raise's."""
    pager, _ = channel(workspace, "webhook", "pager", url=f"{receiver.url}/pager")
    chat, _ = channel(workspace, "slack", "chat", url=f"{receiver.url}/chat")
    rule(workspace, "critical", [pager], severities=("critical",))
    rule(workspace, "default", [chat], is_default=True)
    other, _ = channel(other_workspace, "slack", "other", url=f"{receiver.url}/other")
    rule(other_workspace, "default", [other], is_default=True)

    def build(ws, key, severity):
        return services.alert_build(workspace=ws, kind="api_key_leaked", title=f"Leak {key}", dedup_key=key,
                                    severity=severity)

    raised = services.alerts_raise_many(actor=SYSTEM, alerts=[
        build(workspace, "a", "critical"), build(workspace, "b", "medium"), build(other_workspace, "a", "critical")])
    assert len(raised) == 3
    routed = sorted((a.workspace_id == workspace.pk, a.dedup_key, d.channel_label.split(" ")[0])
                    for a in Alert.objects.prefetch_related("deliveries") for d in a.deliveries.all())
    assert routed == [(False, "a", "other"), (True, "a", "pager"), (True, "b", "chat")]
    assert deliver() == 3 and sorted(r.path for r in receiver.requests) == ["/chat", "/other", "/pager"]
    again = services.alerts_raise_many(actor=SYSTEM, alerts=[build(workspace, "a", "critical")])
    assert again == [] and Alert.objects.get(workspace=workspace, dedup_key="a").repeats == 1
    assert Delivery.objects.count() == 3


@pytest.mark.parametrize("field,value", [("severity", "urgent"), ("title", ""), ("kind", "k" * 61)])
def test_alerts_raised_in_bulk_are_checked_as_one_at_a_time_and_nothing_is_saved(workspace, field, value):
    from django.core.exceptions import ValidationError

    good = services.alert_build(workspace=workspace, kind="api_key_leaked", title="Leak", dedup_key="good")
    bad = services.alert_build(workspace=workspace, kind="api_key_leaked", title="Leak", dedup_key="bad")
    setattr(bad, field, value)
    with pytest.raises(ValidationError) as refused:
        services.alerts_raise_many(actor=SYSTEM, alerts=[good, bad])
    assert field in refused.value.message_dict and Alert.objects.count() == 0


def test_no_rule_no_channel_no_delivery_and_other_workspaces_rules_do_not_apply(workspace, other_workspace, receiver):
    hook, _ = channel(other_workspace, "webhook", url=f"{receiver.url}/x")
    rule(other_workspace, "all", [hook], is_default=True)
    raise_alert(workspace)
    assert Delivery.objects.count() == 0 and deliver() == 0


def test_a_disabled_channel_gets_nothing(workspace, receiver):
    hook, _ = channel(workspace, "webhook", url=f"{receiver.url}/x", enabled=False)
    rule(workspace, "all", [hook], is_default=True)
    raise_alert(workspace)
    assert Delivery.objects.count() == 0


# --- no storms ---------------------------------------------------------------------------------------------
def test_repeats_are_counted_not_sent_within_the_quiet_period_then_sent_again(workspace, receiver, monkeypatch):
    hook, _ = channel(workspace, "slack", url=f"{receiver.url}/x", quiet_minutes=30)
    rule(workspace, "all", [hook], is_default=True)
    raise_alert(workspace)
    for _ in range(5):
        raise_alert(workspace)
    alert = Alert.objects.get()
    assert alert.repeats == 5 and alert.last_seen_at is not None
    deliver()
    assert len(receiver.requests) == 1
    later = timezone.now() + timedelta(minutes=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    raise_alert(workspace)
    assert Delivery.objects.filter(event="repeat").count() == 1
    raise_alert(workspace)  # within the new quiet period
    assert Delivery.objects.filter(event="repeat").count() == 1
    deliver()
    assert len(receiver.requests) == 2 and "seen 8 times" in receiver.requests[1].json()["text"]


@pytest.mark.parametrize("how", ["acknowledge", "assign"])
def test_acknowledging_or_assigning_stops_repeats(workspace, receiver, owner, monkeypatch, how):
    hook, _ = channel(workspace, "slack", url=f"{receiver.url}/x", quiet_minutes=1)
    rule(workspace, "all", [hook], is_default=True)
    alert = raise_alert(workspace)
    if how == "acknowledge":
        services.alert_acknowledge(actor=owner, alert=alert)
    else:
        services.alert_assign(actor=owner, alert=alert, assignee=owner)
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    raise_alert(workspace)
    assert Alert.objects.get().repeats == 1
    assert Delivery.objects.filter(event="repeat").count() == 0


def test_each_state_change_is_delivered_once(workspace, receiver, owner):
    hook, _ = channel(workspace, "slack", url=f"{receiver.url}/x")
    rule(workspace, "all", [hook], is_default=True)
    alert = raise_alert(workspace)
    services.alert_acknowledge(actor=owner, alert=alert)
    services.alert_acknowledge(actor=owner, alert=alert)  # no change: nothing new
    services.alert_resolve(actor=owner, alert=alert)
    raise_alert(workspace)  # a resolved alert raised again: nothing
    deliver()
    texts = [r.json()["text"] for r in receiver.requests]
    assert len(texts) == 3
    assert "raised" in texts[0] and "acknowledged by owner" in texts[1] and "resolved by owner" in texts[2]


def test_assignment_emails_the_new_owner(workspace, receiver, owner):
    person = make_person("sam", "Security admin", workspace, email="sam@acme.test")
    alert = raise_alert(workspace)
    services.alert_assign(actor=owner, alert=alert, assignee=person)
    deliver()
    [message] = mail.outbox
    assert message.to == ["sam@acme.test"] and "assigned to you" in message.subject
    assert Alert.objects.get().assignee == person


def test_assignee_must_be_able_to_work_alerts_there(workspace, owner, member):
    from django.core.exceptions import ValidationError

    alert = raise_alert(workspace)
    with pytest.raises(ValidationError) as refused:
        services.alert_assign(actor=owner, alert=alert, assignee=member)
    assert "incidents.manage" in str(refused.value)
    assert Alert.objects.get().assignee is None


def test_credit_guard_delivers_only_the_highest_threshold_crossed(workspace, receiver, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    email, _ = channel(workspace, "email", addresses="finance@acme.test")
    rule(workspace, "credit guard", [email], kinds=("credit_guard_quota",))
    key = make_api_key_row(workspace, "dev", credit_quota=1000)
    make_daily_usage(key, NOW.date(), 1000)  # 75, 90 and 100% crossed in one pass
    guard.credit_guard_run()
    assert Alert.objects.filter(kind="credit_guard_quota").count() == 3
    [delivery] = Delivery.objects.all()
    assert delivery.alert.details["threshold_percent"] == 100
    monkeypatch.undo()  # the outbox's clock again
    deliver()
    assert len(mail.outbox) == 1 and "100%" in mail.outbox[0].subject
