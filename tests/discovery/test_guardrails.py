"""Guardrails on the live state (issue 17): each rule fires on what the platform holds, with the object and the
evidence, and resolves when the finding goes away; one alert per object and rule; enforce mode pushes Keyward's
policy back; the settings per workspace in the admin; the posture dashboard's counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from detection import guardrails
from detection.models import DetectionPolicy, Guardrail
from keys.models import ApiKey
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_resolve
from project.audit.models import AuditEvent
from project.sync.models import Observation, SyncJob
from project.sync.services import discovery, outbox_drain
from tests.conftest import login
from tests.factories import make_api_key_row, make_person
from workspaces.services import workspace_create

pytestmark = pytest.mark.django_db


def _refresh(tenant) -> None:
    """The periodic refresh: the account read again, then judged (the observation listener)."""
    run = discovery.discovery_refresh(account_id=tenant.account.pk)
    assert run is not None and run.state == "done", run and run.error


def _set(emulator, agent_id: str, *, auth: dict | None = None, duration: int | None = None) -> None:
    """A change made on the platform by hand (its dashboard), not through Keyward."""
    with emulator._lock:
        agent = emulator._agents[agent_id]
        if auth is not None:
            agent["platform_settings"]["auth"] = {**agent["platform_settings"]["auth"], **auth}
        if duration is not None:
            agent["conversation_config"].setdefault("conversation", {})["max_duration_seconds"] = duration


def _open(kind: str | None = None):
    alerts = Alert.objects.exclude(state=Alert.State.RESOLVED)
    return alerts.filter(kind=kind) if kind else alerts


SIGNED = {"enable_auth": True, "allowlist": [], "shareable_token": None}
# Each agent rule: the platform's settings that break it, and settings that do not.
AGENT_CASES = {
    Guardrail.PUBLIC_NO_DURATION: ({"auth": {"enable_auth": False}, "duration": 0}, {"duration": 600}),
    Guardrail.SIGNED_AND_ALLOWLIST: ({"auth": {"enable_auth": True, "allowlist": [{"hostname": "a.example"}]}},
                                     {"auth": {"allowlist": []}}),
    Guardrail.SHAREABLE_OPEN: ({"auth": {"enable_auth": True, "shareable_token": "share_tok_123"}},
                               {"auth": {"shareable_token": None}}),
    Guardrail.ALLOWLIST_ENTRY: ({"auth": {"enable_auth": False, "allowlist": [{"hostname": "*.shop.example"}]}},
                                {"auth": {"allowlist": [{"hostname": "www.shop.example"}]}}),
    Guardrail.NO_ACCEPTABLE_POLICY: (
        {"auth": {"enable_auth": False, "allowlist": [{"hostname": f"h{i}.example"} for i in range(11)]}},
        {"auth": {"allowlist": [{"hostname": "h1.example"}]}}),
}


@pytest.mark.parametrize("rule", list(AGENT_CASES))
def test_each_agent_rule_fires_on_the_live_state_and_resolves_when_fixed(acme, rule):
    bad, good = AGENT_CASES[rule]
    agent_id = acme.emulator.seed_agent(name="Front desk", auth=SIGNED, max_duration_seconds=600)
    _set(acme.emulator, agent_id, **bad)
    _refresh(acme)
    observation = Observation.objects.get(remote_id=agent_id)
    assert observation.findings == [rule]
    [alert] = _open()
    assert alert.kind == f"guardrail_{rule}" and alert.workspace == acme.workspace
    assert (alert.object_type, alert.object_id) == ("sync.observation", str(observation.pk))
    assert alert.details["remote_id"] == agent_id and alert.details["mode"] == "alert"
    assert alert.details["object"] == "Front desk" and "Front desk" in alert.title
    assert "share_tok_123" not in str(alert.details)  # the shareable token is a credential: never evidence
    raised = AuditEvent.objects.get(action="alert.raise")
    assert raised.actor_label == "system" and raised.object_id == str(alert.pk)
    assert raised.changes["kind"] == f"guardrail_{rule}"

    _set(acme.emulator, agent_id, **good)
    _refresh(acme)
    assert Observation.objects.get(remote_id=agent_id).findings == []
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED and alert.resolved_at is not None
    assert AuditEvent.objects.filter(action="alert.resolved", object_id=str(alert.pk)).exists()


def test_the_evidence_names_what_is_wrong(acme):
    agent_id = acme.emulator.seed_agent(name="Shop", auth={"enable_auth": False, "allowlist": [
        {"hostname": "https://shop.example"}, {"hostname": "shop.example/checkout"}, {"hostname": "ok.example"}]})
    _refresh(acme)
    [alert] = _open(f"guardrail_{Guardrail.ALLOWLIST_ENTRY}")
    assert alert.details["entries"] == ["https://shop.example", "shop.example/checkout"]
    assert Observation.objects.get(remote_id=agent_id).findings == [Guardrail.ALLOWLIST_ENTRY]


def test_an_archived_agent_breaks_nothing(acme):
    acme.emulator.seed_agent(name="Old", auth={"enable_auth": False}, max_duration_seconds=0, archived=True)
    _refresh(acme)
    assert not Observation.objects.exclude(findings=[]).exists() and not Alert.objects.exists()


def test_a_workspace_wide_webhook_to_a_foreign_host_fires_and_resolves(acme, settings):
    settings.BROKER_PUBLIC_URL = "https://keyward.example.com"
    acme.emulator.set_workspace_webhook("https://hooks.contractor.example/start?token=s3cr3t")
    _refresh(acme)
    [alert] = _open(f"guardrail_{Guardrail.FOREIGN_WEBHOOK}")
    assert alert.details["webhook_host"] == "hooks.contractor.example"
    assert alert.details["keyward_host"] == "keyward.example.com"
    assert "s3cr3t" not in str(alert.details) and "s3cr3t" not in alert.title
    acme.emulator.set_workspace_webhook("https://keyward.example.com/broker/webhook/initiation")
    _refresh(acme)
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED and not _open().exists()


def test_keywards_own_keys_are_judged_from_their_rows(acme):
    key = make_api_key_row(acme.workspace, "prod", scopes="all", allowed_ips=[])
    dev = make_api_key_row(acme.workspace, "dev", scopes="all", allowed_ips=[])
    ApiKey.objects.filter(pk__in=[key.pk, dev.pk]).update(last_used_at=timezone.now())
    _refresh(acme)
    kinds = sorted(_open().values_list("kind", flat=True))
    assert kinds == [f"guardrail_{Guardrail.KEY_ALL_PERMISSIONS}", f"guardrail_{Guardrail.KEY_UNBOUNDED}"]
    assert set(_open().values_list("object_id", flat=True)) == {str(key.pk)}  # production only
    unbounded = _open(f"guardrail_{Guardrail.KEY_UNBOUNDED}").get()
    assert unbounded.details["missing"] == ["IP limits", "expiry"]
    ApiKey.objects.filter(pk=key.pk).update(scopes=["text_to_speech"], allowed_ips=["10.0.0.0/8"],
                                            expires_at=timezone.now() + timedelta(days=30))
    _refresh(acme)
    assert not _open().exists() and Alert.objects.filter(state=Alert.State.RESOLVED).count() == 2


def test_a_key_unused_for_the_idle_period_fires_until_it_is_used(acme):
    key = make_api_key_row(acme.workspace, "dev", activated=timezone.now() - timedelta(days=45))
    _refresh(acme)
    [alert] = _open()
    assert alert.kind == f"guardrail_{Guardrail.KEY_IDLE}" and alert.details["idle_days"] == 30
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(days=1))
    _refresh(acme)
    assert not _open().exists()


def _key_observation(tenant, remote_id: str, key: ApiKey | None = None, **facts) -> Observation:
    """A key as the platform lists it (what the api_key discoverable records)."""
    base = {"name": "ci", "hint": "abcd", "permissions": ["convai_read"], "allowed_ips": ["203.0.113.0/24"],
            "expires_at_unix": None, "is_disabled": False, "created_at_unix": 1_600_000_000}
    object_id = facts.pop("object_id", str(key.pk) if key else "")
    return Observation.objects.create(account_id=tenant.account.pk, kind="api_key", remote_id=remote_id,
                                      label="ci (…abcd)", facts={**base, **facts}, object_id=object_id,
                                      workspace_id=tenant.workspace.pk)


def test_keys_read_on_the_platform_are_judged_by_their_live_copy(acme):
    unmanaged = _key_observation(acme, "key_platform_1", permissions="all", allowed_ips=None)
    _key_observation(acme, "key_platform_2", is_disabled=True, permissions="all")  # disabled: no risk
    expiring = _key_observation(acme, "key_platform_3", expires_at_unix=int(timezone.now().timestamp()) + 86_400)
    # Keyward's own key for the account: the account page watches it, not these rules.
    _key_observation(acme, "key_keyward", permissions="all", object_id=f"platform_account:{acme.account.pk}")
    key = make_api_key_row(acme.workspace, "prod", expires_at=timezone.now() + timedelta(days=30))
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    governed = _key_observation(acme, key.remote_key_id, key, permissions="all")  # widened on the platform
    guardrails.guardrails_evaluate(account_id=acme.account.pk)
    unmanaged.refresh_from_db()
    governed.refresh_from_db()
    # A key Keyward does not manage has no known environment: judged as production.
    assert unmanaged.findings == [Guardrail.KEY_ALL_PERMISSIONS, Guardrail.KEY_UNBOUNDED]
    assert governed.findings == [Guardrail.KEY_ALL_PERMISSIONS]  # expiry and IP limits: Keyward's row has them
    expiring.refresh_from_db()
    assert expiring.findings == []  # limited to a network, with an expiry, never judged idle (last use unknown)
    assert Observation.objects.get(remote_id="key_keyward").findings == []
    alert = _open(f"guardrail_{Guardrail.KEY_ALL_PERMISSIONS}").get(object_type="keys.apikey")
    assert alert.object_id == str(key.pk)
    # The row is not judged a second time on its own.
    assert _open().count() == 3


def test_one_alert_per_object_and_rule_and_a_new_one_when_the_finding_comes_back(acme):
    agent_id = acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    _refresh(acme)
    _refresh(acme)
    guardrails.guardrails_evaluate(account_id=acme.account.pk)
    assert Alert.objects.count() == 1
    first = Alert.objects.get()
    # A person resolves it while the finding lasts: the risk is accepted, nothing new is raised.
    owner = make_person("owner-acme", "Admin", acme.workspace)
    alert_resolve(actor=owner, alert=first)
    _refresh(acme)
    assert Alert.objects.count() == 1
    # The finding goes away, then comes back: a new alert.
    _set(acme.emulator, agent_id, duration=300)
    _refresh(acme)
    _set(acme.emulator, agent_id, duration=0)
    _refresh(acme)
    assert Alert.objects.count() == 2 and _open().count() == 1
    assert _open().get().pk != first.pk


def test_an_object_whose_workspace_is_unclear_alerts_in_every_workspace_of_the_account(acme):
    second = workspace_create(actor=SYSTEM, name="Acme two", slug="acme-two", platform_account=acme.account)
    acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    _refresh(acme)
    assert Observation.objects.get(kind="agent").workspace_id is None
    assert set(_open().values_list("workspace_id", flat=True)) == {acme.workspace.pk, second.pk}


def test_adoption_judges_the_account_again(acme):
    agent_id = acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": True, "shareable_token": "tok_x"})
    run = discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False)
    discovery.discovery_run(run=run)
    alert = _open().get()
    assert alert.object_type == "sync.observation"
    Observation.objects.update(findings=[])  # as if the last pass had not seen it yet
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    assert Observation.objects.get(remote_id=agent_id).findings == [Guardrail.SHAREABLE_OPEN]
    # The same alert, now about the adopted agent.
    alert.refresh_from_db()
    agent = Agent.objects.get(remote_id=agent_id)
    assert (alert.object_type, alert.object_id, alert.state) == ("agents.agent", str(agent.pk), Alert.State.OPEN)
    assert Alert.objects.count() == 1


def _enforce(workspace, *rules: str) -> None:
    policy, _ = DetectionPolicy.objects.get_or_create(workspace=workspace)
    policy.guardrail_enforce = list(rules)
    policy.save()


@pytest.fixture(params=["merge", "replace"])
def adopted(request, acme):
    """An agent built on the platform with a sound policy, adopted (Keyward's policy: signed URLs)."""
    acme.emulator.patch_mode = request.param
    agent_id = acme.emulator.seed_agent(name="Concierge", prompt="You are the front desk.", auth=SIGNED,
                                        max_duration_seconds=900, tags=["team:hotel"])
    discovery.discovery_run(run=discovery.discovery_start(actor=SYSTEM, account_id=acme.account.pk, enqueue=False))
    discovery.adopt(actor=SYSTEM, account_id=acme.account.pk, workspace_id=acme.workspace.pk)
    return Agent.objects.get(remote_id=agent_id)


def test_enforce_restores_a_policy_changed_on_the_platform(acme, adopted, django_capture_on_commit_callbacks):
    _enforce(acme.workspace, Guardrail.PUBLIC_NO_DURATION, Guardrail.SHAREABLE_OPEN)
    # Someone opens the agent to the world on the platform's dashboard.
    _set(acme.emulator, adopted.remote_id, auth={"enable_auth": False, "shareable_token": "tok_open"}, duration=0)
    with django_capture_on_commit_callbacks(execute=True):
        _refresh(acme)
    [alert] = _open()
    assert alert.kind == f"guardrail_{Guardrail.PUBLIC_NO_DURATION}" and alert.details["mode"] == "enforce"
    assert alert.details["enforced_at"] and (alert.object_type, alert.object_id) == ("agents.agent", str(adopted.pk))
    restore = AuditEvent.objects.get(action="agent.policy_restore")
    assert restore.actor_label == "system" and "Public agent without a duration limit" in restore.changes["reason"]
    outbox_drain()
    remote = acme.emulator._agents[adopted.remote_id]
    assert remote["platform_settings"]["auth"]["enable_auth"] is True
    assert remote["conversation_config"]["agent"]["prompt"]["prompt"] == "You are the front desk."
    assert "team:hotel" in remote["tags"]
    _refresh(acme)
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED
    # Once per alert: another pass while it was open would not have pushed again.
    assert AuditEvent.objects.filter(action="agent.policy_restore").count() == 1


def test_alert_mode_pushes_nothing(acme, adopted):
    _set(acme.emulator, adopted.remote_id, auth={"enable_auth": False}, duration=0)
    _refresh(acme)
    assert _open().get().details["mode"] == "alert"
    assert not AuditEvent.objects.filter(action="agent.policy_restore").exists()
    assert not SyncJob.objects.filter(kind="agent", state="pending").exists()


def test_enforce_does_not_push_a_policy_that_breaks_the_rule_itself(acme, adopted):
    Agent.objects.filter(pk=adopted.pk).update(allow_shareable_link=True)
    _enforce(acme.workspace, Guardrail.SHAREABLE_OPEN)
    _set(acme.emulator, adopted.remote_id, auth={"shareable_token": "tok_open"})
    _refresh(acme)
    alert = _open().get()
    assert alert.details["keyward_policy_breaks_it_too"] is True and "enforced_at" not in alert.details
    assert not AuditEvent.objects.filter(action="agent.policy_restore").exists()


def test_enforce_restores_a_keys_permissions(acme):
    key = make_api_key_row(acme.workspace, "prod", expires_at=timezone.now() + timedelta(days=30))
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    _key_observation(acme, key.remote_key_id, key, permissions="all")
    _enforce(acme.workspace, Guardrail.KEY_ALL_PERMISSIONS)
    guardrails.guardrails_evaluate(account_id=acme.account.pk)
    restore = AuditEvent.objects.get(action="api_key.policy_restore")
    assert restore.actor_label == "system" and restore.object_id == str(key.pk)
    assert SyncJob.objects.filter(kind="api_key", object_id=str(key.pk)).exists()


# --- the setting in the admin ------------------------------------------------------------------------------------
def _policy_form(workspace, **extra):
    return {"workspace": workspace.pk, "time_zone": "UTC", "spike_factor": "5", "spike_min_credits": 1000,
            "baseline_days": 7, "unusual_hours_enabled": "on", "unusual_start_hour": 22, "unusual_end_hour": 6,
            "unusual_min_credits": 100, "idle_days": 30, "concurrency_samples": 5, "guard_notice_percent": 75,
            "guard_warning_percent": 90, "suspend_prod_at_limit": "on", "billing_period_day": 1, **extra}


def test_guardrail_modes_are_set_in_the_admin_by_incident_managers(workspace, member_client, security_admin):
    url = reverse("admin:detection_detectionpolicy_add")
    data = _policy_form(workspace, guardrail_enforce=[Guardrail.PUBLIC_NO_DURATION, Guardrail.SHAREABLE_OPEN])
    assert member_client.post(url, data).status_code == 403
    client = login(security_admin)
    page = client.get(url).content.decode()
    assert "Public agent without a duration limit" in page and Guardrail.KEY_IDLE.value not in page
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = DetectionPolicy.objects.get(workspace=workspace)
    assert policy.guardrail_enforce == [Guardrail.PUBLIC_NO_DURATION, Guardrail.SHAREABLE_OPEN]
    assert "guardrail_enforce" in AuditEvent.objects.get(action="detection_policy.create").changes
    # A rule with nothing to restore cannot be enforced: a clear error on the field, nothing changed.
    change = reverse("admin:detection_detectionpolicy_change", args=[policy.pk])
    bad = client.post(change, _policy_form(workspace, guardrail_enforce=[Guardrail.KEY_IDLE]))
    assert "guardrail_enforce" in bad.context["adminform"].form.errors
    policy.refresh_from_db()
    assert policy.guardrail_enforce == [Guardrail.PUBLIC_NO_DURATION, Guardrail.SHAREABLE_OPEN]


def test_a_new_policy_alerts_on_every_rule(workspace):
    assert DetectionPolicy.objects.create(workspace=workspace).guardrail_enforce == []


# --- the posture dashboard ---------------------------------------------------------------------------------------
def test_the_dashboard_counts_findings_by_rule_each_linking_to_its_alerts(acme):
    acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    acme.emulator.seed_agent(name="Hall", auth={"enable_auth": False})  # the platform's default: 600 s
    acme.emulator.seed_agent(name="Gate", auth={"enable_auth": False}, max_duration_seconds=0)
    acme.emulator.seed_agent(name="Kiosk", auth={"enable_auth": True, "shareable_token": "t"})
    _refresh(acme)
    person = make_person("watcher", "Security admin", acme.workspace)
    client = login(person)
    response = client.get(reverse("posture_dashboard"))
    figures = {f.key: f for _, fs in response.context["posture"].sections for f in fs}
    assert figures[f"guardrail_{Guardrail.PUBLIC_NO_DURATION}"].value == 2
    assert figures[f"guardrail_{Guardrail.SHAREABLE_OPEN}"].value == 1
    assert figures[f"guardrail_{Guardrail.KEY_IDLE}"].value == 0
    for rule in (Guardrail.PUBLIC_NO_DURATION, Guardrail.SHAREABLE_OPEN):
        figure = figures[f"guardrail_{rule}"]
        listing = client.get(figure.url)
        assert listing.status_code == 200 and listing.context["cl"].result_count == figure.value


def test_the_discover_list_shows_what_breaks_a_guardrail(acme):
    acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    acme.emulator.seed_agent(name="Kiosk", auth={"enable_auth": True})
    _refresh(acme)
    client = login(make_person("watcher", "Admin", acme.workspace))
    page = client.get(reverse("admin:sync_observation_changelist"), {"account": acme.account.pk, "risky": "yes"})
    assert page.status_code == 200 and page.context["cl"].result_count == 1
    assert "public no duration" in page.content.decode()


def test_alerts_another_pass_raised_meanwhile_are_skipped(acme):
    acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    _refresh(acme)
    [alert] = _open()
    again = guardrails.Wanted(acme.workspace.pk, alert.dedup_key, Guardrail.PUBLIC_NO_DURATION, "t", {}, "x", "1", "x")
    assert guardrails._raise([again]) == 0
    assert Alert.objects.count() == 1 and AuditEvent.objects.filter(action="alert.raise").count() == 1


def test_a_reconcile_judges_each_account_again(acme):
    from project.sync.services import reconcile

    key = make_api_key_row(acme.workspace, "prod", scopes="all")
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now(), expires_at=timezone.now() + timedelta(1))
    reconcile.reconcile_run(run=reconcile.reconcile_start(actor=SYSTEM, enqueue=False))
    assert list(_open().values_list("kind", "object_id")) == [
        (f"guardrail_{Guardrail.KEY_ALL_PERMISSIONS}", str(key.pk))]


def test_guardrail_alerts_reach_the_routed_channels_raised_and_resolved(acme):
    from project.alerts.models import Delivery
    from tests.alerts.conftest import channel, rule

    pagerduty, _ = channel(acme.workspace, "pagerduty", routing_key="R0UT1NGKEY0123456789abcdefABCDEF")
    rule(acme.workspace, "guardrails", [pagerduty], kinds=(f"guardrail_{Guardrail.PUBLIC_NO_DURATION}",))
    agent_id = acme.emulator.seed_agent(name="Lobby", auth={"enable_auth": False}, max_duration_seconds=0)
    _refresh(acme)
    alert = _open().get()
    assert list(Delivery.objects.filter(alert=alert).values_list("event", flat=True)) == ["raise"]
    _set(acme.emulator, agent_id, duration=300)
    _refresh(acme)
    assert sorted(Delivery.objects.filter(alert=alert).values_list("event", flat=True)) == ["raise", "resolve"]
