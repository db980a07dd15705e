"""project.bulk.bulk_insert writes what QuerySet.bulk_create writes (values of every kind, primary keys read
back, upserts), with less work per value."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from project.actors import SYSTEM
from project.audit.models import AuditEvent
from project.audit.services import event
from project.bulk import bulk_insert
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
