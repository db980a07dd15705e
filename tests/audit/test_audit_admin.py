"""The audit trail's admin: filters (actor, action, object type and id, workspace, time range) without DISTINCT
scans, a streamed CSV export of the filtered list (audit.view, scoped, audited), and the "Keyward history" link
on change pages."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents import services as agent_services
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import record
from tests.conftest import login

pytestmark = pytest.mark.django_db
LIST = reverse("admin:audit_auditevent_changelist")
EXPORT = reverse("admin:audit_auditevent_export")


def _at(monkeypatch, when, **fields):
    monkeypatch.setattr(timezone, "now", lambda: when)
    return record(**fields)


@pytest.fixture
def trail(workspace, other_workspace, owner, outsider, monkeypatch):
    """Events in both workspaces, by different actors, on different days."""
    events = {
        "revoke": _at(monkeypatch, datetime(2026, 11, 1, 9, tzinfo=UTC), actor=owner, action="api_key.revoke",
                      object_type="keys.apikey", object_id=7, object_repr="billing", workspace_id=workspace.pk),
        "issue": _at(monkeypatch, datetime(2026, 11, 10, 9, tzinfo=UTC), actor=owner, action="api_key.issue",
                     object_type="keys.apikey", object_id=8, object_repr="=HYPERLINK(\"x\")",
                     workspace_id=workspace.pk),
        "system": _at(monkeypatch, datetime(2026, 11, 15, 9, tzinfo=UTC), actor=SYSTEM, action="alert.raise",
                      object_type="alerts.alert", object_id=3, object_repr="spike", workspace_id=workspace.pk),
        "foreign": _at(monkeypatch, datetime(2026, 11, 10, 9, tzinfo=UTC), actor=outsider, action="api_key.issue",
                       object_type="keys.apikey", object_id=9, object_repr="globex key",
                       workspace_id=other_workspace.pk),
    }
    monkeypatch.undo()
    return events


def _shown(client, **params):
    return {e.pk for e in client.get(LIST, params).context["cl"].result_list}


@pytest.mark.parametrize("params,expected", [
    ({"actor": "owner"}, {"revoke", "issue"}),
    ({"actor": "system"}, {"system"}),
    ({"action": "api_key."}, {"revoke", "issue"}),
    ({"action": "api_key.revoke"}, {"revoke"}),
    ({"object_type": "alerts.alert"}, {"system"}),
    ({"object_type": "keys.apikey", "object_id": "8"}, {"issue"}),
    ({"since": "2026-11-05"}, {"issue", "system"}),
    ({"until": "2026-11-10"}, {"revoke", "issue"}),  # the whole day of the 10th
    ({"since": "2026-11-10 10:00", "until": "2026-11-30"}, {"system"}),
    ({"actor": "owner", "action": "api_key.issue", "since": "2026-11-02"}, {"issue"}),
    ({"since": "2026-02-30"}, {"revoke", "issue", "system"}),  # an impossible date is ignored, not an error
    ({"until": "not a date"}, {"revoke", "issue", "system"}),
])
def test_filters_narrow_the_trail(trail, owner_client, params, expected):
    assert _shown(owner_client, **params) == {trail[name].pk for name in expected}


def test_workspace_filter_offers_only_the_persons_workspaces(trail, workspace, superuser, owner_client):
    client = login(superuser)
    assert _shown(client, workspace=str(workspace.pk)) == {trail[n].pk for n in ("revoke", "issue", "system")}
    body = owner_client.get(LIST).content.decode()
    assert "Globex" not in body and "globex key" not in body


def test_the_list_and_its_filters_scan_no_distinct_values(trail, owner_client):
    with CaptureQueriesContext(connection) as queries:
        owner_client.get(LIST, {"actor": "owner", "_facets": "True"})
    audit_queries = [q["sql"] for q in queries.captured_queries if "audit_auditevent" in q["sql"]]
    assert audit_queries and not any("DISTINCT" in sql.upper() for sql in audit_queries)


def test_filter_boxes_keep_the_other_filters(trail, owner_client):
    body = owner_client.get(LIST, {"actor": "owner", "object_type": "keys.apikey"}).content.decode()
    assert '<input type="hidden" name="object_type" value="keys.apikey">' in body
    assert 'name="actor" value="owner"' in body


def test_csv_export_streams_the_filtered_scoped_list(trail, owner, owner_client):
    response = owner_client.get(EXPORT, {"action": "api_key."})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["api_key.issue", "api_key.revoke"]  # newest first, Acme only
    assert rows[0]["object_repr"] == "'=HYPERLINK(\"x\")"  # a spreadsheet will not run it
    assert AuditEvent.objects.get(action="audit.export").actor_user == owner


def test_export_link_carries_the_current_filter(trail, owner_client):
    body = owner_client.get(LIST, {"actor": "owner"}).content.decode()
    assert f'href="{EXPORT}?actor=owner"' in body


def test_export_needs_audit_view(trail, member_client, db):
    assert member_client.get(EXPORT).status_code == 403


def test_history_link_on_a_change_page_lists_that_objects_events(workspace, owner, owner_client, member_client):
    agent = agent_services.agent_create(actor=owner, workspace=workspace, name="Support", auth_mode="signed")
    agent_services.agent_update(actor=owner, agent=agent, name="Support bot")
    other = agent_services.agent_create(actor=owner, workspace=workspace, name="Sales", auth_mode="signed")
    page = owner_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    url = f"{LIST}?object_type=agents.agent&object_id={agent.pk}"
    assert "Keyward history" in page and url.replace("&", "&amp;") in page
    events = owner_client.get(url).context["cl"].result_list
    assert {e.object_id for e in events} == {str(agent.pk)} and len(events) == 2
    assert str(other.pk) not in {e.object_id for e in events}
    member_page = member_client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    assert "Keyward history" not in member_page  # a Developer does not read the trail


def test_history_link_shows_on_pages_with_their_own_template(workspace, superuser):
    from tests.factories import make_api_key_row

    key = make_api_key_row(workspace)
    page = login(superuser).get(reverse("admin:keys_apikey_change", args=[key.pk])).content.decode()
    assert "Keyward history" in page and 'id="revoke-link"' in page
