"""The session API's hot path: its few statements, the combined counters, the all-or-none insert, and the
prepared statements on PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker import limits, rows
from broker.models import BrokerKeyUsage, BrokerSession
from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import event
from workspaces.models import RoleAssignment

pytestmark = pytest.mark.django_db

NOW = 1_900_000_000.0  # 40 s into a minute (the clock fixture's instant)


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """What the request sent, without the test transaction's savepoints."""
    return [q["sql"] for q in captured.captured_queries
            if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))]


def test_a_granted_session_takes_four_statements_on_postgresql_five_elsewhere(api, issued, signed_agent):
    """Key, agent (with the service account's permissions), counters, then the session and its audit row."""
    api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-1"})  # warm: nothing cached matters
    with CaptureQueriesContext(connection) as captured:
        response = api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-2"})
    assert response.status_code == 200
    statements = _statements(captured)
    assert len(statements) == (4 if connection.vendor == "postgresql" else 5), statements
    assert not any("keys_roleassignment" in sql and "agents_agent" not in sql for sql in statements), \
        "the permission check should ride on the agent query"
    assert BrokerSession.objects.filter(end_user_id="user-2").count() == 1
    assert AuditEvent.objects.filter(action="broker.session").count() == 2
    assert not AuditEvent.objects.filter(action__startswith="agent.mint").exists()  # one event per mint


def test_an_expired_role_assignment_grants_no_sessions(api, issued, signed_agent, backend):
    RoleAssignment.objects.filter(service_account=backend).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 403 and response.json()["error"] == "not_permitted"
    RoleAssignment.objects.filter(service_account=backend).update(expires_at=timezone.now() + timedelta(hours=1))
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200


def test_refusals_for_the_agent_count_against_the_rate_limit_which_comes_first(api, issue, signed_agent, clock):
    issued = issue(rate_limit_per_minute=2)
    assert api.session("agent_nope", issued.secret).status_code == 404
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200
    full = api.session("agent_nope", issued.secret)  # the minute is full: 429 before 404
    assert full.status_code == 429 and full.json()["error"] == "rate_limited"
    usage = BrokerKeyUsage.objects.get(pk=issued.key.pk)
    assert (usage.rate_used, usage.quota_used, usage.sessions_total) == (2, 1, 1)


def test_admit_tells_a_session_granted_up_to_the_quota_from_a_full_quota(issue):
    """The ambiguous case: after the last session is granted and after a refusal the counter reads the same;
    last_granted, set in the same statement, tells them apart."""
    key = issue(session_quota=2, quota_period="hour", rate_limit_per_minute=100).key
    outcomes = [limits.admit(key, NOW, "192.0.2.7")[0] for _ in range(3)]
    assert outcomes == [limits.Outcome.GRANTED, limits.Outcome.GRANTED, limits.Outcome.QUOTA_EXHAUSTED]
    usage = BrokerKeyUsage.objects.get(pk=key.pk)
    assert (usage.quota_used, usage.sessions_total, usage.rate_used, usage.last_ip) == (2, 2, 3, "192.0.2.7")
    next_hour = limits.quota_window("hour", NOW).ends_at
    assert limits.admit(key, next_hour, None)[0] == limits.Outcome.GRANTED  # a new period starts at one
    usage.refresh_from_db()
    assert (usage.quota_used, usage.sessions_total) == (1, 3)


def test_admit_spends_nothing_when_the_minute_is_full(issue):
    key = issue(session_quota=10, rate_limit_per_minute=1).key
    assert limits.admit(key, NOW, None)[0] == limits.Outcome.GRANTED
    outcome, minute, _ = limits.admit(key, NOW, None)
    assert outcome == limits.Outcome.RATE_LIMITED and minute.retry_after(NOW) == 20
    usage = BrokerKeyUsage.objects.get(pk=key.pk)
    assert (usage.rate_used, usage.quota_used, usage.sessions_total) == (1, 1, 1)


def test_rows_insert_is_all_or_none(issued, signed_agent):
    environment = issued.key.environment

    def session() -> BrokerSession:
        return BrokerSession(key=issued.key, agent=signed_agent, environment=environment, end_user_id="u",
                             conversation_id="conv_1", mode="signed_url", expires_at=timezone.now())

    rows.insert(session(), event(actor=SYSTEM, action="test.first", object_type="test"))
    stored = BrokerSession.objects.get(conversation_id="conv_1")
    assert stored.created_at is not None and AuditEvent.objects.filter(action="test.first").exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.insert(session(), event(actor=SYSTEM, action="test.second", object_type="test"))
    assert not AuditEvent.objects.filter(action="test.second").exists()  # the duplicate took its audit row along
    assert BrokerSession.objects.filter(conversation_id="conv_1").count() == 1


def test_rows_insert_fills_defaults_and_converts_values_as_save_would(issued):
    audit = event(actor=SYSTEM, action="test.values", object_type="test", changes={"nested": {"n": 1}, "list": [1]})
    rows.insert(audit)
    stored = AuditEvent.objects.get(action="test.values")
    assert stored.changes == {"nested": {"n": 1}, "list": [1]}
    assert abs((stored.created_at - timezone.now()).total_seconds()) < 60  # auto_now_add was applied


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are a PostgreSQL feature; "
                    "run with DATABASE_URL=postgres://... to test them")
def test_the_hot_statements_are_prepared_on_postgresql(api, issued, signed_agent):
    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in cursor.fetchall()]

    api.session(signed_agent.remote_id, issued.secret)
    statements = prepared()
    assert any("broker_brokerkey" in s and "digest" in s for s in statements), statements
    assert any("UPDATE" in s and "broker_brokerkeyusage" in s for s in statements), statements
    assert any("INSERT INTO" in s and "audit_auditevent" in s for s in statements), statements


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are a PostgreSQL feature; "
                    "run with DATABASE_URL=postgres://... to test them")
def test_prepared_statements_can_be_turned_off(api, issued, signed_agent, settings):
    settings.BROKER_PREPARED_STATEMENTS = False
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0


# --- the connection's health check rides on the first read ------------------------------------------------------
# Django checks a reused connection with one extra round trip (SELECT 1) before a request's first statement
# (CONN_HEALTH_CHECKS). The broker's first statement, the key lookup, is a read that serves as that check: a dead
# connection fails it, and it runs once more on a new connection. These tests commit (transaction=True): inside the
# test transaction there is no "first statement of a request on a reused connection". PostgreSQL only: a committing
# test's flush on SQLite meets the audit trail's append-only trigger.
committing = pytest.mark.skipif(connection.vendor != "postgresql", reason="committing broker tests need PostgreSQL "
                                "(run with DATABASE_URL=postgres://...)")
@pytest.fixture
def reused_connection(api, issued, signed_agent) -> None:
    """One session served, then what Django does when the next request starts (the test client leaves it out): the
    connection is kept (young enough, no error), and its health is to be checked again before it is used."""
    assert api.session(signed_agent.remote_id, issued.secret).status_code == 200
    connection.close_if_unusable_or_obsolete()
    assert connection.connection is not None and not connection.health_check_done


@committing
@pytest.mark.django_db(transaction=True)
def test_a_session_on_a_reused_connection_sends_no_separate_health_check(api, issued, signed_agent, monkeypatch,
                                                                        reused_connection):
    checks = []
    wrapper = connections["default"]
    real = type(wrapper).is_usable
    monkeypatch.setattr(type(wrapper), "is_usable", lambda self: checks.append(1) or real(self))
    assert api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-2"}).status_code == 200
    assert checks == [], "the key lookup is the health check: no SELECT 1 round trip before it"
    assert connection.health_check_done  # the rest of the request does not check again


@committing
@pytest.mark.django_db(transaction=True)
def test_a_session_on_a_connection_the_server_dropped_is_served_on_a_new_one(api, issued, signed_agent,
                                                                              reused_connection):
    import psycopg

    dropped = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")},
                         autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    response = api.session(signed_agent.remote_id, issued.secret, {"end_user_id": "user-2"})
    assert response.status_code == 200, response.content
    assert connection.connection.info.backend_pid != dropped
    assert BrokerSession.objects.filter(end_user_id="user-2").count() == 1
    assert BrokerKeyUsage.objects.get(pk=issued.key.pk).sessions_total == 2  # counted once, on the new connection


@committing
@pytest.mark.django_db(transaction=True)
def test_a_session_when_the_database_is_gone_fails_closed_after_one_retry(api, issued, signed_agent, monkeypatch,
                                                                          reused_connection):
    from django.db import OperationalError

    attempts = []

    def down(*args, **kwargs):
        attempts.append(1)
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(rows, "fetch_one", down)
    response = api.session(signed_agent.remote_id, issued.secret)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert len(attempts) == 2, "one read on the reused connection, one on a new one, then fail closed"
