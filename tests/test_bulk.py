"""project.bulk.bulk_insert writes what QuerySet.bulk_create writes (values of every kind, primary keys read
back, upserts), with less work per value; project.bulk.build builds what the model's constructor builds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.db import connection

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import event
from project.bulk import build, bulk_insert
from project.sync.models import Observation

pytestmark = pytest.mark.django_db


def _events(tag: str) -> list[AuditEvent]:
    return [event(actor=SYSTEM, action="platform.adopt", object_type="keys.apikey", object_id=n,
                  object_repr=f"key {n} {tag} é", workspace_id=None if n % 2 else 7,
                  changes={"kind": "api_key", "remote_id": f"r{n}", "nested": [1, {"a": None}]})
            for n in range(7)]


def test_rows_match_bulk_create_and_primary_keys_are_set():
    ours, django = _events("ours"), _events("django")
    bulk_insert(AuditEvent, ours, batch_size=3)  # several batches
    AuditEvent.objects.bulk_create(django)
    assert all(e.pk is not None and not e._state.adding for e in ours)
    assert len({e.pk for e in ours}) == 7

    def stored(events: list[AuditEvent]) -> list[dict]:
        rows = AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("pk").values()
        return [{k: v for k, v in row.items() if k not in ("id", "object_repr", "created_at", "at")} for row in rows]

    assert stored(ours) == stored(django)
    first = AuditEvent.objects.get(pk=ours[0].pk)
    assert first.object_repr == "key 0 ours é" and first.changes["nested"] == [1, {"a": None}]
    # auto_now_add: set on the objects as pre_save sets it, and stored as set.
    assert ours[0].created_at is not None and first.created_at == ours[0].created_at


def test_upsert_updates_only_the_named_fields_on_conflict():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def row(label: str, facts: dict, note: str) -> Observation:
        return Observation(account_id=1, kind="agent", remote_id="agent_1", label=label, facts=facts, note=note,
                           observed_at=when)

    bulk_insert(Observation, [row("first", {"a": 1}, "kept")])
    bulk_insert(Observation, [row("second", {"b": [2]}, "ignored"),
                              Observation(account_id=1, kind="agent", remote_id="agent_2", label="other")],
                update_conflicts=True, unique_fields=["account_id", "kind", "remote_id"],
                update_fields=["label", "facts"])
    stored = Observation.objects.get(remote_id="agent_1")
    assert (stored.label, stored.facts, stored.note, stored.observed_at) == ("second", {"b": [2]}, "kept", when)
    assert json.dumps(stored.facts) == '{"b": [2]}'
    assert Observation.objects.filter(account_id=1).count() == 2


def _attributes(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k != "_state"}


def test_build_makes_what_the_constructor_makes(workspace, owner):
    user = owner
    from project.alerts.models import Alert

    values = {"workspace": workspace, "kind": "usage_spike", "title": "t", "dedup_key": "k", "details": {"a": 1}}
    built, made = build(Alert, **values), Alert(**values)
    # Defaults (the callable ones made anew for each object), attribute names, the related object cached.
    assert _attributes(built) == _attributes(made) and built.details is values["details"]
    assert built.workspace is workspace and built.workspace_id == workspace.pk and built._state.adding
    assert build(Alert, workspace=workspace).details is not build(Alert, workspace=workspace).details
    by_id = build(Alert, workspace_id=workspace.pk, assignee=None, acknowledged_by=user)
    assert _attributes(by_id) == _attributes(Alert(workspace_id=workspace.pk, assignee=None, acknowledged_by=user))
    assert by_id.acknowledged_by is user
    for model, kwargs in ((AuditEvent, {"actor_type": "system", "actor_user": None, "action": "x",
                                        "changes": {"k": [1]}}),
                          (AuditEvent, {"actor_type": "user", "actor_user": user, "workspace_id": 3})):
        assert _attributes(build(model, **kwargs)) == _attributes(model(**kwargs))
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_field'"):
        build(Alert, no_such_field=1)
    saved = build(Alert, **values)
    saved.save()
    assert Alert.objects.get(pk=saved.pk).details == {"a": 1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="UNNEST is PostgreSQL's; run with "
                    "DATABASE_URL=postgres://... to test it")
def test_on_postgresql_a_batch_sends_one_array_per_column_not_a_placeholder_per_value():
    """The driver turns every %s of a statement into text before sending it: with a placeholder per value, a batch
    of 500 rows cost more in that than in the database. One array per column keeps the statement the same size
    whatever the batch, as Django's own bulk_create does on PostgreSQL."""
    from django.test.utils import CaptureQueriesContext

    events = _events("unnest")
    with CaptureQueriesContext(connection) as captured:
        bulk_insert(AuditEvent, events, batch_size=500)
    [insert] = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("INSERT")]
    assert "UNNEST" in insert
    fields = [f for f in AuditEvent._meta.concrete_fields if f is not AuditEvent._meta.pk]
    assert insert.count("::") >= len(fields)  # one cast array per column
    stored = AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("pk")
    assert [e.object_repr for e in stored] == [f"key {n} unnest é" for n in range(7)]  # rows and ids in order
    assert [e.pk for e in events] == [e.pk for e in stored]
    assert stored[1].workspace_id is None and stored[0].changes["nested"] == [1, {"a": None}]
