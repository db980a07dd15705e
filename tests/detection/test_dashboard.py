"""The security posture dashboard: each number right and linking to the list that shows the same rows, scoped to
the person's workspaces, credit burn as server-rendered SVG, and a query count that does not grow with the keys."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import Agent
from detection.models import Guardrail
from keys.models import ApiKey, KeyUsageDaily
from keys.services.burn import usage_burn_rebuild
from tests.conftest import login
from tests.factories import (
    NOW,
    AgentFactory,
    DriftFactory,
    ServiceAccountFactory,
    SyncJobFactory,
    make_alert,
    make_api_key_row,
    make_daily_usage,
    make_incident,
    make_secret,
    make_tool,
)

pytestmark = pytest.mark.django_db
URL = reverse("posture_dashboard")


def _figures(response):
    return {f.key: f for _, figures in response.context["posture"].sections for f in figures}


@pytest.fixture
def acme(workspace, other_workspace, fixed_now):
    """A small world: Acme with a bit of everything that should show, Globex with the same (never shown)."""
    for ws in (workspace, other_workspace):
        make_api_key_row(ws, "prod", scopes="all", allowed_ips=[])  # all scopes in prod, no network limit
        make_api_key_row(ws, "dev", activated=NOW - timedelta(days=120))  # overdue (90 days) and idle (never used)
        fresh = make_api_key_row(ws, "staging", activated=NOW - timedelta(days=3))
        ApiKey.objects.filter(pk=fresh.pk).update(last_used_at=NOW - timedelta(hours=1))
        suspended = make_api_key_row(ws, "prod", activated=NOW - timedelta(days=2))
        ApiKey.objects.filter(pk=suspended.pk).update(suspended_at=NOW, last_used_at=NOW)
        make_api_key_row(ws, "prod", name="revoked-one").__class__.objects.filter(name="revoked-one").update(
            state="revoked", revoked_at=NOW)
        AgentFactory(workspace=ws, auth_mode="public", max_duration_seconds=600)
        AgentFactory(workspace=ws, auth_mode="allowlist", allowlist=["app.example.com"])
        AgentFactory(workspace=ws, auth_mode="signed")
        AgentFactory(workspace=ws, auth_mode="signed")
        make_secret(ws, "unused_token", "v")
        make_secret(ws, "used_token", "v")
        make_tool(ws, "lookup", description="x", url="https://x.example.com",
                  headers={"X-Key": "{{ secret__used_token }}"})
        SyncJobFactory(workspace=ws, object_id="1", state="dead")
        SyncJobFactory(workspace=ws, object_id="2", state="failed")
        SyncJobFactory(workspace=ws, object_id="3", state="done")
        DriftFactory(workspace=ws, object_id="1", problem="differs")
        make_alert(ws, "usage_spike", title=f"{ws.slug} spike", dedup_key="a", severity="high")
        make_alert(ws, "api_key_idle", title=f"{ws.slug} idle", dedup_key="b", severity="low")
        make_incident(ws, f"{ws.slug} incident")
    return workspace


def test_dashboard_counts_what_needs_acting_on(acme, owner_client):
    response = owner_client.get(URL)
    assert response.status_code == 200
    values = {key: f.value for key, f in _figures(response).items()}
    assert values == {
        "alerts": 2, "alerts_severe": 1, "incidents": 1, "overdue": 1, "idle": 2, "all_scopes_prod": 1,
        "open_network": 1, "suspended": 1, "usable": 4, "public": 1, "allowlist": 1, "signed": 2,
        "public_unlimited": 0, "unused_secrets": 1, "sync_attention": 2, "drift": 1,
        # The workspace's platform account (the default one, made by the migration, never verified).
        "accounts_failing": 0, "accounts_rotation_due": 0, "accounts_unverified": 1,
        # No platform account of these workspaces was judged by the guardrails (tests/detection/test_guardrails.py).
        **{f"guardrail_{rule}": 0 for rule in Guardrail.values}}


@pytest.mark.parametrize("figure", ["alerts", "alerts_severe", "incidents", "overdue", "idle", "all_scopes_prod",
                                    "open_network", "suspended", "usable", "public", "allowlist", "signed",
                                    "unused_secrets", "sync_attention", "drift", "accounts_failing",
                                    "accounts_rotation_due", "accounts_unverified"])
def test_each_number_links_to_a_list_with_the_same_rows(acme, owner_client, figure):
    shown = _figures(owner_client.get(URL))[figure]
    listing = owner_client.get(shown.url)
    assert listing.status_code == 200, shown.url
    assert listing.context["cl"].result_count == shown.value, shown.url


def test_superuser_sees_every_workspace_and_can_narrow_to_one(acme, other_workspace, superuser):
    client = login(superuser)
    assert _figures(client.get(URL))["overdue"].value == 2
    narrowed = client.get(URL, {"workspace": other_workspace.pk})
    assert _figures(narrowed)["overdue"].value == 1
    figure = _figures(narrowed)["overdue"]
    assert f"workspace__id__exact={other_workspace.pk}" in figure.url
    assert client.get(figure.url).context["cl"].result_count == 1


def test_dashboard_shows_nothing_of_another_workspace(acme, other_workspace, owner_client, outsider_client):
    body = owner_client.get(URL).content.decode()
    assert "globex" not in body.lower() and "acme spike" in body
    assert owner_client.get(URL, {"workspace": other_workspace.pk}).status_code == 404
    assert "acme" not in outsider_client.get(URL).content.decode().lower()


def test_people_without_a_workspace_are_refused(db):
    user = get_user_model().objects.create_user("nobody", password="x-y-z-long-pass", is_staff=True)
    assert login(user).get(URL).status_code == 403


def test_credit_burn_is_drawn_as_svg_per_environment_and_key(workspace, owner_client, fixed_now):
    prod, dev = make_api_key_row(workspace, "prod", name="billing"), make_api_key_row(workspace, "dev", name="tests")
    for n in range(30):
        make_daily_usage(prod, NOW.date() - timedelta(days=n), 100 + n)
        make_daily_usage(dev, NOW.date() - timedelta(days=n), 10)
    make_daily_usage(prod, NOW.date() - timedelta(days=30), 99999)  # 31 days ago: outside the chart
    body = owner_client.get(URL).content.decode()
    posture = owner_client.get(URL).context["posture"]
    assert [(line.label, line.total) for line in posture.environments.lines] == [("prod", 3435.0), ("dev", 300.0)]
    assert [bar.total for bar in posture.keys.bars] == [3435.0, 300.0]
    charts = body.split('id="chart-environments"')[1].split('id="latest-alerts"')[0]
    assert charts.count("<polyline") == 4 and charts.count("<svg") == 2 and "<script" not in charts
    assert "http" not in re.sub(r'href="[^"]*"', "", charts)  # nothing fetched from anywhere
    assert reverse("admin:keys_apikey_change", args=[prod.pk]) in body


def test_index_links_to_the_dashboard(owner_client):
    assert URL in owner_client.get(reverse("admin:index")).content.decode()


def _seed(workspace, n):
    """n keys with 30 days of usage each (bulk, as the rows would be), plus a few of everything else."""
    account = ServiceAccountFactory(workspace=workspace, name=f"bulk-{n}")
    envs = list(workspace.environments.all())
    keys = ApiKey.objects.bulk_create([ApiKey(
        workspace=workspace, service_account=account, environment=envs[i % 3], name=f"k{i}", state="active",
        hint=f"{i:04d}"[-4:], digest=f"{n:06d}{i:058d}", remote_key_id=f"r-{n}-{i}", scopes="all" if i % 7 else [],
        allowed_ips=[] if i % 2 else ["10.0.0.0/8"], activated_at=NOW - timedelta(days=i % 200))
        for i in range(n)], batch_size=2000)
    KeyUsageDaily.objects.bulk_create([KeyUsageDaily(key=key, day=NOW.date() - timedelta(days=d), credits=i + d,
                                                     requests=1)
                                       for i, key in enumerate(keys[:2000]) for d in range(0, 30, 3)],
                                      batch_size=5000)
    usage_burn_rebuild()  # day rows written in bulk, not by the ingest
    Agent.objects.bulk_create([Agent(workspace=workspace, name=f"a{i}", auth_mode="signed") for i in range(20)])
    for i in range(20):
        make_alert(workspace, "usage_spike", title=f"spike {i}", dedup_key=f"s{i}", severity="high")


@pytest.mark.parametrize("keys", [10, 10_000])
def test_dashboard_query_count_does_not_grow_with_the_keys(workspace, owner, fixed_now, keys):
    _seed(workspace, keys)
    client = login(owner)
    client.get(URL)  # warm-up: policies created on first use, sessions
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL)
    assert response.status_code == 200
    assert _figures(response)["usable"].value == keys
    assert len(queries) == EXPECTED_QUERIES, "\n".join(q["sql"][:160] for q in queries.captured_queries)


# Session, user with devices and roles (2); workspaces (1); the key policies (2, read by the overdue and idle
# flags); every count of keys, agents, secrets, sync jobs, drift and incidents in one statement (1); alerts counts
# (1); burn per environment (1) and per key (2, from the pre-aggregated burn); latest alerts and incidents (2). The
# session is not written (renewed at most once a minute). The same for 10 and for 10,000 keys (was 21).
EXPECTED_QUERIES = 12
