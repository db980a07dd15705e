"""The detection admin pages: alerts (open an incident, resume a key the credit guard disabled), detection policies
and incidents, as owner, member and outsider."""

from datetime import timedelta

import pytest
from django.urls import reverse

from detection import incidents as incident_services
from detection.models import DetectionPolicy, Incident
from keys.models import ApiKey
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.conftest import login
from tests.factories import NOW, make_alert, make_api_key_row

pytestmark = pytest.mark.django_db


#: What the alerts of these tests report (their pages show it).
FIGURES = {"credits": 5000, "baseline_credits_per_hour": 12.5}


# --- alerts ----------------------------------------------------------------------------------------------
def test_alert_page_shows_the_figures_and_offers_an_incident_to_who_may(workspace, owner_client, member_client,
                                                                        fixed_now):
    alert = make_alert(workspace, target=make_api_key_row(workspace), details=FIGURES)
    url = reverse("admin:alerts_alert_change", args=[alert.pk])
    body = owner_client.get(url).content.decode()
    # Plain labels, not the details' keys ("baseline credits per hour" before issue 22); 5,000 with its separator.
    assert "Usual credits per hour" in body and "12.5" in body and 'id="open-incident-link"' in body
    assert "5,000" in body and "baseline_credits_per_hour" not in body
    body = member_client.get(url).content.decode()
    assert "12.5" in body and 'id="open-incident-link"' not in body


def test_open_incident_action_opens_one_per_alert(workspace, owner_client, fixed_now):
    alerts = [make_alert(workspace, target=make_api_key_row(workspace), details=FIGURES) for _ in range(2)]
    response = owner_client.post(reverse("admin:alerts_alert_changelist"),
                                 {"action": "open_incident", "_selected_action": [a.pk for a in alerts]})
    assert response.status_code == 302
    assert sorted(Incident.objects.values_list("alert_id", flat=True)) == sorted(a.pk for a in alerts)
    assert set(Alert.objects.values_list("state", flat=True)) == {"acknowledged"}


def test_open_incident_action_skips_what_the_person_may_not_manage(workspace, member_client, fixed_now):
    alert = make_alert(workspace, target=make_api_key_row(workspace), details=FIGURES)
    member_client.post(reverse("admin:alerts_alert_changelist"),
                       {"action": "open_incident", "_selected_action": [alert.pk]})
    assert not Incident.objects.exists()


def test_alert_filters_have_fixed_choices_and_narrow_the_list(workspace, owner_client, fixed_now):
    key = make_api_key_row(workspace)
    spike = make_alert(workspace, target=key, details=FIGURES)
    idle = make_alert(workspace, "api_key_idle", target=key, details=FIGURES)
    url = reverse("admin:alerts_alert_changelist")
    shown = owner_client.get(url, {"kind": "usage_spike"}).context["cl"].result_list
    assert [a.pk for a in shown] == [spike.pk]
    Alert.objects.filter(pk=idle.pk).update(state="resolved")
    assert [a.pk for a in owner_client.get(url, {"state": "unresolved"}).context["cl"].result_list] == [spike.pk]


def test_resume_key_from_a_credit_guard_alert(workspace, owner, owner_client, member_client, outsider_client,
                                              fixed_now):
    key = make_api_key_row(workspace, "prod", credit_quota=10)
    ApiKey.objects.filter(pk=key.pk).update(suspended_at=NOW, suspend_reason="credit guard: 100%")
    alert = make_alert(workspace, "credit_guard_quota", target=key, details=FIGURES)
    page = reverse("admin:alerts_alert_change", args=[alert.pk])
    resume = reverse("admin:alerts_alert_resume_key", args=[alert.pk])
    assert resume in owner_client.get(page).content.decode()
    assert resume not in member_client.get(page).content.decode()
    assert outsider_client.post(resume).status_code == 404
    assert member_client.post(resume).status_code == 403
    assert owner_client.get(resume).status_code == 200
    assert owner_client.post(resume).status_code == 302
    assert ApiKey.objects.get(pk=key.pk).suspended_at is None
    assert AuditEvent.objects.get(action="api_key.resume").actor_user == owner
    assert owner_client.post(resume).status_code == 404  # nothing suspended behind it any more


# --- detection policies --------------------------------------------------------------------------------
def test_policy_is_changed_through_the_admin_by_incident_managers(workspace, owner_client, member_client,
                                                                  security_admin, fixed_now):
    url = reverse("admin:detection_detectionpolicy_add")
    data = {"workspace": workspace.pk, "time_zone": "Europe/Berlin", "spike_factor": "3", "spike_min_credits": 500,
            "baseline_days": 7, "unusual_hours_enabled": "on", "unusual_start_hour": 23, "unusual_end_hour": 5,
            "unusual_min_credits": 50, "idle_days": 14, "concurrency_samples": 4, "guard_notice_percent": 70,
            "guard_warning_percent": 85, "suspend_prod_at_limit": "on", "billing_period_day": 1}
    assert member_client.post(url, data).status_code == 403
    assert not DetectionPolicy.objects.exists()
    response = login(security_admin).post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = DetectionPolicy.objects.get(workspace=workspace)
    assert (policy.time_zone, policy.idle_days, policy.guard_warning_percent) == ("Europe/Berlin", 14, 85)
    assert AuditEvent.objects.filter(action="detection_policy.create").exists()
    bad = {**data, "time_zone": "Mars/Olympus", "guard_warning_percent": 60}
    change = reverse("admin:detection_detectionpolicy_change", args=[policy.pk])
    errors = owner_client.post(change, bad).context["adminform"].form.errors
    assert "time_zone" in errors and "guard_warning_percent" in errors


def test_policy_of_another_workspace_answers_404(other_workspace, owner_client):
    policy = DetectionPolicy.objects.create(workspace=other_workspace)
    assert owner_client.get(reverse("admin:detection_detectionpolicy_change", args=[policy.pk])).status_code == 404


# --- incidents ------------------------------------------------------------------------------------------
@pytest.fixture
def incident(workspace, owner, fixed_now):
    return incident_services.incident_open(actor=owner, api_key=make_api_key_row(workspace, name="exposed"))[0]


STEP_VIEWS = ["revoke", "replace", "blast_radius", "related", "postmortem", "close", "note"]


@pytest.mark.parametrize("view", STEP_VIEWS + ["export"])
def test_incident_pages_of_another_workspace_answer_404(incident, outsider_client, view):
    assert outsider_client.get(reverse(f"admin:detection_incident_{view}", args=[incident.pk])).status_code == 404


@pytest.mark.parametrize("view", STEP_VIEWS)
def test_incident_steps_need_incidents_manage(incident, member_client, view):
    url = reverse(f"admin:detection_incident_{view}", args=[incident.pk])
    assert member_client.get(url).status_code == 403
    assert member_client.post(url, {"reason": "x", "text": "x"}).status_code == 403
    assert list(incident.steps.values_list("kind", flat=True)) == ["opened"]


def test_member_reads_the_timeline_without_the_walk_buttons(incident, member_client, owner_client):
    url = reverse("admin:detection_incident_change", args=[incident.pk])
    body = member_client.get(url).content.decode()
    assert "Incident opened" in body and 'id="walk-revoke"' not in body and "Export as Markdown" in body
    assert member_client.get(reverse("admin:detection_incident_export", args=[incident.pk])).status_code == 200
    assert 'id="walk-revoke"' in owner_client.get(url).content.decode()


def test_incident_list_and_open_page_are_scoped(workspace, other_workspace, owner, owner_client, outsider,
                                                fixed_now):
    incident_services.incident_open(actor=owner, api_key=make_api_key_row(workspace, name="acme-key"))
    foreign = make_api_key_row(other_workspace, name="globex-key")
    incident_services.incident_open(actor=outsider, api_key=foreign)
    body = owner_client.get(reverse("admin:detection_incident_changelist")).content.decode()
    assert "acme-key" in body and "globex-key" not in body
    open_url = reverse("admin:detection_incident_open")
    assert owner_client.get(open_url, {"key": foreign.pk}).status_code == 404
    add = owner_client.get(reverse("admin:detection_incident_add")).content.decode()
    assert "acme-key" in add and "globex" not in add.lower()


def test_open_an_incident_by_hand(workspace, owner_client, fixed_now):
    key = make_api_key_row(workspace, name="chosen")
    response = owner_client.post(reverse("admin:detection_incident_add"), {
        "api_key": key.pk, "title": "Laptop stolen", "summary": "", "severity": "medium",
        "exposure_start": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")})
    incident = Incident.objects.get()
    assert response.status_code == 302 and incident.api_key == key and incident.severity == "medium"
    assert incident.source == "manual" and incident.exposure_start == NOW - timedelta(days=1)


def test_incident_title_and_summary_change_through_the_service(incident, owner_client):
    url = reverse("admin:detection_incident_change", args=[incident.pk])
    response = owner_client.post(url, {"title": "Renamed", "severity": "low", "summary": "more known now"})
    assert response.status_code == 302
    incident.refresh_from_db()
    assert (incident.title, incident.severity) == ("Renamed", "low")
    assert AuditEvent.objects.filter(action="incident.update").exists()


def test_every_change_page_links_its_keyward_history(incident, owner_client, member_client):
    url = reverse("admin:detection_incident_change", args=[incident.pk])
    history = (f"{reverse('admin:audit_auditevent_changelist')}?object_type=detection.incident"
               f"&amp;object_id={incident.pk}")
    assert history in owner_client.get(url).content.decode()
    assert "Keyward history" not in member_client.get(url).content.decode()  # no audit.view
