"""Incidents: opened from an alert, a leak-check match or by hand; the walk revoke → replace → blast radius →
related secrets → post-mortem → close, each step recorded with who and when; rights and workspaces."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from detection import incidents as services
from detection.models import Incident, IncidentStep
from detection.report import incident_markdown
from detection.selectors import related_candidates
from keys.models import ApiKey
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.factories import (
    NOW,
    UserFactory,
    make_alert,
    make_api_key,
    make_api_key_row,
    make_daily_usage,
    make_hourly_usage,
    make_secret,
    make_tool,
)
from workspaces.models import Role, RoleAssignment

pytestmark = pytest.mark.django_db


def _steps(incident):
    return list(IncidentStep.objects.filter(incident=incident).values_list("kind", flat=True))


# --- opening ---------------------------------------------------------------------------------------------
def test_open_from_an_alert_takes_its_key_and_window_and_acknowledges_it(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    alert = make_alert(workspace, target=key, details={"hour": (NOW - timedelta(hours=3)).isoformat()})
    incident, created = services.incident_open(actor=owner, alert=alert, source=Incident.Source.ALERT)
    assert created and incident.api_key == key and incident.alert == alert and incident.severity == "high"
    assert incident.exposure_start == NOW - timedelta(hours=3) and incident.opened_by == owner
    assert _steps(incident) == ["opened"]
    step = incident.steps.get()
    assert step.actor == owner and step.actor_label == "owner" and step.figures["alert"]["id"] == alert.pk
    assert Alert.objects.get(pk=alert.pk).state == "acknowledged"
    assert AuditEvent.objects.filter(action="incident.open", object_id=str(incident.pk)).exists()


def test_a_second_open_for_the_same_subject_returns_the_open_incident(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    first, _ = services.incident_open(actor=owner, api_key=key, source=Incident.Source.LEAK_CHECK)
    again, created = services.incident_open(actor=owner, alert=make_alert(workspace, target=key))
    assert not created and again.pk == first.pk and Incident.objects.count() == 1


def test_leak_check_incident_of_a_prod_key_is_critical_and_exposed_since_issue(workspace, owner, fixed_now):
    key = make_api_key_row(workspace, "prod")
    incident, _ = services.incident_open(actor=owner, api_key=key, source=Incident.Source.LEAK_CHECK)
    assert incident.severity == "critical" and incident.exposure_start == key.activated_at
    assert "Exposure of key" in incident.title and incident.subject_repr.startswith("API key")


def test_only_incidents_manage_in_the_subjects_workspace_may_open(workspace, member, outsider, viewer, fixed_now):
    key = make_api_key_row(workspace)
    for actor in (member, viewer, outsider):
        with pytest.raises(PermissionDenied):
            services.incident_open(actor=actor, api_key=key)
    assert not Incident.objects.exists()


def test_security_admin_may_work_incidents(workspace, security_admin, fixed_now):
    incident, _ = services.incident_open(actor=security_admin, api_key=make_api_key_row(workspace))
    services.incident_revoke(actor=security_admin, incident=incident, reason="found in a public gist")
    assert ApiKey.objects.get(pk=incident.api_key_id).state == "revoked"


def test_an_incident_about_nothing_in_particular_needs_a_workspace(workspace, owner, fixed_now):
    with pytest.raises(ValidationError):
        services.incident_open(actor=owner)
    incident, _ = services.incident_open(actor=owner, workspace=workspace, title="Concurrency pinned overnight")
    assert incident.subject_kind == "none"
    with pytest.raises(ValidationError, match="no key or secret"):
        services.incident_revoke(actor=owner, incident=incident)


# --- the walk -------------------------------------------------------------------------------------------
def test_revoke_step_revokes_the_key_and_closes_the_window(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    incident, _ = services.incident_open(actor=owner, api_key=key)
    step = services.incident_revoke(actor=owner, incident=incident, reason="in a CI log")
    key.refresh_from_db()
    incident.refresh_from_db()
    assert key.state == "revoked" and key.revoke_reason == f"incident #{incident.pk}: in a CI log"
    assert incident.state == "contained" and incident.exposure_end == key.revoked_at
    assert step.figures["state_before"] == "active" and step.figures["revoked_here"] is True
    with pytest.raises(ValidationError, match="already recorded"):
        services.incident_revoke(actor=owner, incident=incident)


def test_revoke_step_records_a_key_that_had_already_ended(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    ApiKey.objects.filter(pk=key.pk).update(state="expired", revoked_at=NOW - timedelta(days=1))
    incident, _ = services.incident_open(actor=owner, api_key=key)
    step = services.incident_revoke(actor=owner, incident=incident)
    assert step.figures["revoked_here"] is False
    incident.refresh_from_db()
    assert incident.exposure_end == NOW - timedelta(days=1)


def test_revoke_step_needs_keys_revoke_too(workspace, fixed_now):
    role = Role.objects.create(workspace=workspace, name="Responder",
                               permissions=["workspace.view", "incidents.manage"])
    responder = UserFactory(username="responder")
    RoleAssignment.objects.create(user=responder, role=role, workspace=workspace)
    incident, _ = services.incident_open(actor=responder, api_key=make_api_key_row(workspace))
    with pytest.raises(PermissionDenied):
        services.incident_revoke(actor=responder, incident=incident)
    assert _steps(incident) == ["opened"] and ApiKey.objects.get(pk=incident.api_key_id).state == "active"


def test_replace_comes_after_revoke_and_issues_the_successor(owner, account, emulator, fixed_now):
    issued = make_api_key(owner, account, credit_quota=500, allowed_ips=["10.1.0.0/16"])
    incident, _ = services.incident_open(actor=owner, api_key=issued.key, source=Incident.Source.LEAK_CHECK)
    with pytest.raises(ValidationError, match="Revoke first"):
        services.incident_replace(actor=owner, incident=incident)
    services.incident_revoke(actor=owner, incident=incident, reason="leaked")
    fresh = services.incident_replace(actor=owner, incident=incident)
    assert fresh.secret and fresh.key.predecessor_id == issued.key.pk and fresh.key.state == "active"
    assert (fresh.key.credit_quota, fresh.key.allowed_ips, fresh.key.scopes) == (500, ["10.1.0.0/16"],
                                                                                 ["workspace_read"])
    incident.refresh_from_db()
    assert incident.replacement_key == fresh.key and _steps(incident) == ["opened", "revoke", "replace"]
    step = incident.steps.get(kind="replace")
    assert fresh.secret not in str(step.figures) + step.notes
    assert all(fresh.secret not in str(e.changes) for e in AuditEvent.objects.all())
    with pytest.raises(ValidationError, match="already recorded"):
        services.incident_replace(actor=owner, incident=incident)


def test_replace_keeps_the_live_successor_of_an_earlier_rotation(owner, account, emulator, fixed_now):
    from keys.services import api_key_rotate

    issued = make_api_key(owner, account)
    successor = api_key_rotate(actor=owner, key=issued.key, overlap=timedelta(days=3)).key
    incident, _ = services.incident_open(actor=owner, api_key=issued.key)
    services.incident_revoke(actor=owner, incident=incident)
    assert services.incident_replace(actor=owner, incident=incident) is None
    incident.refresh_from_db()
    assert incident.replacement_key == successor


def test_blast_radius_records_reach_and_spend_by_day(workspace, owner, fixed_now):
    key = make_api_key_row(workspace, "prod", scopes="all", allowed_ips=[], credit_quota=5000)
    for n, credits in enumerate((10, 20, 30, 40)):
        make_daily_usage(key, NOW.date() - timedelta(days=n), credits, requests=n + 1)
    make_hourly_usage(key, NOW - timedelta(hours=30), 7, requests=2)
    incident, _ = services.incident_open(actor=owner, api_key=key)
    step = services.incident_assess(actor=owner, incident=incident, exposure_start=NOW - timedelta(days=2, hours=1),
                                    exposure_end=NOW - timedelta(hours=1), notes="looks like abuse")
    figures = step.figures
    assert figures["subject"] == "api_key" and figures["key"]["scopes"] == "all"
    assert figures["key"]["environment"] == "prod" and figures["key"]["credit_quota"] == 5000
    assert "every permission (scopes: all)" in figures["reach"]
    assert "usable from any address (no network limit)" in figures["reach"]
    assert [d["day"] for d in figures["usage"]["by_day"]] == [(NOW.date() - timedelta(days=n)).isoformat()
                                                             for n in (2, 1, 0)]
    assert figures["usage"]["total_credits"] == 60 and figures["usage"]["total_requests"] == 6
    assert figures["usage"]["hourly_credits"] == 7
    incident.refresh_from_db()
    assert incident.exposure_start == NOW - timedelta(days=2, hours=1) and step.actor == owner


def test_blast_radius_window_must_be_ordered(workspace, owner, fixed_now):
    incident, _ = services.incident_open(actor=owner, api_key=make_api_key_row(workspace))
    with pytest.raises(ValidationError):
        services.incident_assess(actor=owner, incident=incident, exposure_start=NOW,
                                 exposure_end=NOW - timedelta(hours=1))


def test_related_candidates_are_neighbours_in_the_same_workspace(workspace, other_workspace, owner, fixed_now):
    key = make_api_key_row(workspace, "prod")
    same_account = make_api_key_row(workspace, "dev", service_account=key.service_account, name="same-account")
    same_env = make_api_key_row(workspace, "prod", name="same-env")
    make_api_key_row(workspace, "staging", name="unrelated")
    make_api_key_row(other_workspace, "prod", name="foreign")
    make_secret(workspace, "crm_token", "v-1")
    make_tool(workspace, "crm_lookup", description="CRM", url="https://crm.example.com",
              headers={"Authorization": "{{ secret__crm_token }}"})
    make_secret(other_workspace, "globex_token", "v-2")
    incident, _ = services.incident_open(actor=owner, api_key=key)
    candidates = {c["name"]: c["reason"] for c in related_candidates(incident)}
    assert set(candidates) == {str(same_account), str(same_env), "crm_token"}
    assert "same service account" in candidates[str(same_account)]
    assert "used by tool crm_lookup" in candidates["crm_token"]
    refs = [c["ref"] for c in related_candidates(incident) if c["name"] == "crm_token"]
    step = services.incident_list_related(actor=owner, incident=incident, refs=refs, notes="same .env file")
    assert [c["name"] for c in step.figures["to_rotate"]] == ["crm_token"]
    with pytest.raises(ValidationError, match="Not a candidate"):
        services.incident_list_related(actor=owner, incident=incident, refs=[f"api_key:{key.pk + 999}"])


def test_postmortem_and_close(workspace, owner, fixed_now):
    key = make_api_key_row(workspace)
    alert = make_alert(workspace, target=key)
    incident, _ = services.incident_open(actor=owner, alert=alert)
    with pytest.raises(ValidationError, match="revoke step"):
        services.incident_close(actor=owner, incident=incident)
    services.incident_revoke(actor=owner, incident=incident)
    with pytest.raises(ValidationError, match="post-mortem"):
        services.incident_close(actor=owner, incident=incident)
    with pytest.raises(ValidationError):
        services.incident_postmortem(actor=owner, incident=incident, root_cause=" ", controls=["ip_allowlist"])
    with pytest.raises(ValidationError):
        services.incident_postmortem(actor=owner, incident=incident, root_cause="x", controls=[])
    services.incident_postmortem(actor=owner, incident=incident, root_cause="Key committed in .env",
                                 controls=["secret_scanner", "ip_allowlist"], controls_notes="pre-commit hook")
    closed = services.incident_close(actor=owner, incident=incident, notes="done")
    assert closed.state == "closed" and closed.closed_by == owner and closed.closed_at == NOW
    assert closed.controls_added == ["ip_allowlist", "secret_scanner"]
    assert Alert.objects.get(pk=alert.pk).state == "resolved"
    with pytest.raises(ValidationError, match="closed"):
        services.incident_assess(actor=owner, incident=closed, exposure_start=NOW - timedelta(days=1))
    services.incident_note(actor=owner, incident=closed, text="Customer informed.")
    assert _steps(incident) == ["opened", "revoke", "postmortem", "closed", "note"]
    verbs = set(AuditEvent.objects.filter(object_type="detection.incident").values_list("action", flat=True))
    assert verbs == {"incident.open", "incident.revoke", "incident.postmortem", "incident.close", "incident.note"}


def test_secret_incident_walk_never_records_the_value(workspace, owner, fixed_now):
    from secrets_app.models import Secret

    secret = make_secret(workspace, "crm_token", "old-value-123")
    incident, _ = services.incident_open(actor=owner, secret=secret)
    with pytest.raises(ValidationError, match="issuer"):
        services.incident_revoke(actor=owner, incident=incident, reason="")
    services.incident_revoke(actor=owner, incident=incident, reason="Revoked in the CRM console")
    with pytest.raises(ValidationError):
        services.incident_replace(actor=owner, incident=incident, new_value="")
    services.incident_replace(actor=owner, incident=incident, new_value="new-value-456")
    assert Secret.objects.get(pk=secret.pk).value == "new-value-456"
    everything = (str(list(IncidentStep.objects.values())) + str(list(AuditEvent.objects.values()))
                  + incident_markdown(Incident.objects.get(pk=incident.pk)))
    assert "new-value-456" not in everything and "old-value-123" not in everything


def test_markdown_export_reads_as_a_post_mortem(workspace, owner, fixed_now):
    key = make_api_key_row(workspace, "prod", name="billing")
    make_daily_usage(key, NOW.date(), 1234, requests=56)
    incident, _ = services.incident_open(actor=owner, api_key=key, summary="Found in a public repo | by a scanner")
    services.incident_revoke(actor=owner, incident=incident, reason="public repo")
    services.incident_assess(actor=owner, incident=incident, exposure_start=NOW - timedelta(hours=5))
    services.incident_list_related(actor=owner, incident=incident, refs=[])
    services.incident_postmortem(actor=owner, incident=incident, root_cause="Committed .env",
                                 controls=["history_purged"])
    text = incident_markdown(Incident.objects.get(pk=incident.pk))
    for heading in ("# Incident #", "## Timeline", "## Blast radius", "## Related secrets to rotate",
                    "## Root cause", "## Controls added"):
        assert heading in text
    assert "| **total** | **1,234** | **56** |" in text and "Committed .env" in text
    assert "File added to .gitignore and history purged" in text and "None needed." in text
    assert "| owner | Revoked | public repo |" in text and "| owner | Blast radius assessed |" in text
    assert "Found in a public repo | by a scanner" in text


def test_incidents_of_another_workspace_stay_out_of_reach(workspace, other_workspace, owner, outsider, fixed_now):
    incident, _ = services.incident_open(actor=owner, api_key=make_api_key_row(workspace))
    with pytest.raises(PermissionDenied):
        services.incident_note(actor=outsider, incident=incident, text="hello")
    with pytest.raises(PermissionDenied):
        services.incident_revoke(actor=outsider, incident=incident)
    foreign_alert = make_alert(other_workspace, target=make_api_key_row(other_workspace))
    with pytest.raises(PermissionDenied):
        services.incident_open(actor=owner, alert=foreign_alert)
