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
