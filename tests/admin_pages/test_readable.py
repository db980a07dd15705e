"""Readable pages: plain navigation, choices that name their workspace, lists filtered by workspace."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.conftest import login
from tests.factories import ServiceAccountFactory, grant, make_agent, make_api_key_row, make_person

pytestmark = pytest.mark.django_db


def test_navigation_is_grouped_by_task_without_library_names(superuser):
    page = login(superuser).get("/admin/").content.decode()
    for section in ("Agents", "Secrets and vault", "Keys", "Access", "Detection and response", "Platform sync",
                    "Audit", "Sign-in protection"):
        assert f">{section}<" in page, section
    for internal in ("Axes", "AXES", "Otp_Totp", "OTP_TOTP", "O auth providers", "Authentication and Authorization"):
        assert internal not in page, internal
    assert "Identity provider groups" in page and "Failed sign-ins and lockouts" in page
    assert "View site" not in page


def test_choices_name_the_workspace_where_names_repeat(workspace, other_workspace):
    from django import forms

    from project.admin_base import with_workspace_labels
    from workspaces.models import Environment, ServiceAccount

    ServiceAccountFactory(workspace=workspace, name="billing")
    ServiceAccountFactory(workspace=other_workspace, name="billing")
    field = with_workspace_labels(forms.ModelChoiceField(queryset=ServiceAccount.objects.order_by("workspace__name")))
    labels = [label for _, label in field.choices][1:]
    assert labels == ["billing · Acme", "billing · Globex"]
    # A label that names its workspace already is left alone.
    envs = with_workspace_labels(forms.ModelChoiceField(queryset=Environment.objects.filter(name="prod")
                                                        .order_by("workspace__name")))
    assert [label for _, label in envs.choices][1:] == ["Acme / prod", "Globex / prod"]
    person = make_person("both", "Admin", workspace)
    grant(person, "Admin", other_workspace)
    page = login(person).get("/admin/keys/apikey/add/").content.decode()
    assert "Acme / billing" in page and "Globex / billing" in page


def test_agents_and_keys_lists_filter_by_workspace(workspace, other_workspace):
    person = make_person("both", "Admin", workspace)
    grant(person, "Admin", other_workspace)
    make_agent(workspace, "Acme support")
    make_agent(other_workspace, "Globex support")
    client: Client = login(person)
    page = client.get(f"/admin/agents/agent/?workspace={other_workspace.pk}").content.decode()
    assert "Globex support" in page and "Acme support" not in page
    make_api_key_row(workspace, name="acme-key")
    make_api_key_row(other_workspace, name="globex-key")
    keys = client.get(f"/admin/keys/apikey/?workspace={workspace.pk}").content.decode()
    assert "acme-key" in keys and "globex-key" not in keys


def test_environment_filter_keeps_workspaces_apart(workspace, other_workspace):
    person = make_person("both", "Admin", workspace)
    grant(person, "Admin", other_workspace)
    make_api_key_row(workspace, "prod", name="acme-prod")
    make_api_key_row(other_workspace, "prod", name="globex-prod")
    client = login(person)
    page = client.get("/admin/keys/apikey/").content.decode()
    assert "prod · Acme" in page and "prod · Globex" in page
    env_id = re.search(r'href="\?env=(\d+)"[^>]*>\s*prod · Globex', page)
    assert env_id, "the Globex prod environment is its own choice"
    only = client.get(f"/admin/keys/apikey/?env={env_id.group(1)}").content.decode()
    assert "globex-prod" in only and "acme-prod" not in only


def test_a_new_api_key_does_not_look_unsynced(workspace, owner):
    make_api_key_row(workspace, name="fresh-key")  # issued on the platform: a remote id, no outbox job yet
    page = login(owner).get("/admin/keys/apikey/").content.decode()
    assert "never queued" not in page and "on the platform" in page


def test_api_key_page_shows_state_environment_and_account_before_the_grouped_scope_picker(workspace, owner):
    key = make_api_key_row(workspace, name="billing-prod")
    page = login(owner).get(f"/admin/keys/apikey/{key.pk}/change/").content.decode()
    state, scopes = page.index("field-state_badge"), page.index('id="id_scopes"')
    assert state < scopes and page.index("field-environment") < scopes and page.index("field-service_account") < scopes
    assert "Agents and conversations" in page and "Voices" in page and "keys/scope_picker.js" in page


def test_auth_connection_form_marks_each_kinds_fields(owner):
    page = login(owner).get("/admin/secrets_app/authconnection/add/").content.decode()
    assert "kw-kind--basic_auth" in page and "kw-kind--oauth2_jwt" in page


def test_every_scope_of_the_catalogue_is_in_exactly_one_area():
    from keys.forms import SCOPE_CHOICES
    from keys.models import PLATFORM_SCOPES

    listed = [value for _, group in SCOPE_CHOICES for value, _ in group]
    assert sorted(listed) == sorted(PLATFORM_SCOPES) and "Other" not in [area for area, _ in SCOPE_CHOICES]


def test_tools_and_agents_are_linked_both_ways_and_in_a_secrets_blast_radius(workspace, owner):
    from datetime import timedelta

    from django.utils import timezone

    from agents.models import Agent
    from detection.incidents import incident_open
    from detection.selectors import blast_radius
    from project.actors import SYSTEM
    from project.sync.models import Observation
    from secrets_app.models import Tool
    from tests.factories import make_secret, make_tool

    secret = make_secret(workspace, "crm_token")
    tool = make_tool(workspace, "lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    Tool.objects.filter(pk=tool.pk).update(remote_id="tool_1")
    agent = make_agent(workspace, "Support line")
    Agent.objects.filter(pk=agent.pk).update(remote_id="agent_1")
    account_id = workspace.platform_account_id or 1
    Observation.objects.create(account_id=account_id, kind="agent", remote_id="agent_1", label="Support line",
                               workspace_id=workspace.pk, object_id=str(agent.pk), facts={"tool_ids": ["tool_1"]})
    Observation.objects.create(account_id=account_id, kind="agent", remote_id="agent_9", label="Kiosk",
                               workspace_id=workspace.pk, facts={"tool_ids": ["tool_1", "tool_x"]})
    Observation.objects.create(account_id=account_id, kind="agent", remote_id="agent_0", label="Unrelated",
                               workspace_id=workspace.pk, facts={"tool_ids": ["tool_x"]})
    Observation.objects.create(account_id=account_id, kind="tool", remote_id="tool_1", label="lookup",
                               workspace_id=workspace.pk, object_id=str(tool.pk))
    client = login(owner)

    agent_page = client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert f'/admin/secrets_app/tool/{tool.pk}/change/">lookup</a>' in agent_page

    secret_page = client.get(f"/admin/secrets_app/secret/{secret.pk}/change/").content.decode()
    assert f'/admin/agents/agent/{agent.pk}/change/">Support line</a>' in secret_page
    assert "Kiosk (not managed by Keyward)" in secret_page and "Unrelated" not in secret_page

    incident, _ = incident_open(actor=SYSTEM, secret=secret)
    now = timezone.now()
    figures = blast_radius(incident, now - timedelta(days=1), now)
    assert figures["agents"] == ["Support line", "Kiosk"]
    assert "reached by agent Support line" in figures["reach"]


def test_secret_help_text_shows_the_reference_form(owner):
    page = login(owner).get("/admin/secrets_app/secret/add/").content.decode()
    assert "{{ secret__NAME }}" in page and "secret__<name>" not in page


def test_key_list_quota_has_thousands_separators(workspace, owner):
    make_api_key_row(workspace, name="big-quota", credit_quota=200000)
    assert "200,000" in login(owner).get("/admin/keys/apikey/").content.decode()


def test_credit_guard_figures_read_plainly(workspace, owner):
    from tests.factories import make_alert

    alert = make_alert(workspace, "credit_guard_quota", target=make_api_key_row(workspace), details={
        "disables_at_100": True, "limit": 100000, "thresholds": [50, 80, 100], "period_start": "2026-12-01",
        "hour": "2026-12-06T14:00:00+00:00"})
    page = login(owner).get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert "Disables the key(s) at 100%" in page and "disables at 100" not in page
    assert "100,000" in page and "50, 80, 100" in page and "2026-12-06 14:00 UTC" in page


def test_dates_read_without_abbreviation_periods(workspace, owner):
    from django.utils import timezone
    from django.utils.formats import date_format

    assert date_format(timezone.datetime(2026, 12, 6, 15, 0), "DATETIME_FORMAT") == "2026-12-06 15:00"
    key = make_api_key_row(workspace, name="dated")
    page = login(owner).get(f"/admin/keys/apikey/{key.pk}/change/").content.decode()
    assert "p.m." not in page and "a.m." not in page


def test_budgets_page_numbers_have_thousands_separators(workspace, owner):
    make_api_key_row(workspace, "prod", credit_quota=200000)
    page = login(owner).get("/admin/keys/apikey/budgets/").content.decode()
    assert "200,000" in page
