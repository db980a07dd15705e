"""An agent with an allowlist, made in the browser: a bad hostname is refused on its field, a good list saves."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from tests.e2e.conftest import person, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_allowlist_agent_refuses_a_hostname_with_a_scheme_on_the_field_then_saves(page: Any, live_server: Any,
                                                                                  world: Any) -> None:
    base = live_server.url
    sign_in(page, base, person("acme-admin", "Admin", world.acme))

    page.goto(f"{base}/admin/agents/agent/add/")
    page.select_option("#id_workspace", label="Acme Voice")
    page.fill("#id_name", "Website concierge")
    page.check("input[name=auth_mode][value=allowlist]")
    page.fill("#id_allowlist", "app.acme.example\nhttps://www.acme.example/chat")
    page.click("input[name=_save]")

    # Refused on the allowlist field itself, with the line named; nothing was created or queued.
    field = page.locator(".form-row.field-allowlist")
    expect(field).to_have_class(re.compile(r"\berrors\b"))
    expect(field.locator(".errorlist")).to_contain_text("scheme")
    expect(page.locator(".errornote")).to_be_visible()
    assert not Agent.objects.filter(name="Website concierge").exists()
    # What was typed is still there to correct.
    expect(page.locator("#id_allowlist")).to_have_value("app.acme.example\nhttps://www.acme.example/chat")

    page.fill("#id_allowlist", "app.acme.example\nwww.acme.example:8443")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page).to_have_url(re.compile(r"/admin/agents/agent/$"))
    row = page.locator("#result_list tr", has_text="Website concierge")
    expect(row).to_contain_text("allowlist")
    expect(row.locator("td.field-host_count")).to_have_text("2")
    agent = Agent.objects.get(name="Website concierge")
    assert (agent.auth_mode, agent.allowlist) == ("allowlist", ["app.acme.example", "www.acme.example:8443"])
