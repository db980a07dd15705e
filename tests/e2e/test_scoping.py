"""A team lead of Acme sees Acme only: lists, filters and choices hold nothing of Globex, whose objects answer 404."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import person, sign_in
from tests.factories import make_agent, make_service_account

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_team_lead_sees_only_their_workspace_and_another_workspaces_agent_is_404(page: Any, live_server: Any,
                                                                                   world: Any) -> None:
    base = live_server.url
    acme_agent = make_agent(world.acme, "Acme support line")
    globex_agent = make_agent(world.globex, "Globex support line")
    make_service_account(world.globex, "globex-robot")
    sign_in(page, base, person("acme-lead", "Team lead", world.acme))

    page.goto(f"{base}/admin/agents/agent/")
    results = page.locator("#result_list")
    expect(results).to_contain_text("Acme support line")
    expect(results).not_to_contain_text("Globex")
    expect(page.locator(".paginator")).to_contain_text("1 agent")

    # Another workspace's agent looks like one that does not exist; so does its audit history.
    response = page.goto(f"{base}/admin/agents/agent/{globex_agent.pk}/change/")
    assert response is not None and response.status == 404
    assert "Globex" not in page.content()
    response = page.goto(f"{base}/admin/agents/agent/{acme_agent.pk}/change/")
    assert response is not None and response.status == 200

    # Nothing of Globex on the other pages a team lead opens, nor among the choices offered for a new agent.
    for path in ("/admin/", "/admin/workspaces/serviceaccount/", "/admin/audit/auditevent/", "/admin/agents/agent/add/",
                 "/admin/workspaces/workspace/"):
        response = page.goto(base + path)
        assert response is not None and response.status == 200, path
        assert "Globex" not in page.content() and "globex" not in page.content(), path
    page.goto(f"{base}/admin/agents/agent/add/")
    options = page.locator("#id_workspace option").all_inner_texts()
    assert [o for o in options if o.strip("-")] == ["Acme Voice"]
