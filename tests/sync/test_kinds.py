"""The catalogue of sync kinds: job_enqueue refuses a kind it does not list, and the start-up check holds the
catalogue and the apps' registered handlers to each other."""

import pytest

from project.sync import kinds, registry
from project.sync.checks import check_sync_kinds
from project.sync.kinds import SyncKind, UnknownSyncKind
from project.sync.models import SyncJob
from project.sync.services import job_enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue_only(monkeypatch):
    """The catalogue and the registries as the apps left them, without the sync tests' own kinds."""
    monkeypatch.setattr(kinds, "CATALOGUE", frozenset(SyncKind))
    for name in ("_handlers", "_reconcilers", "_listers"):
        monkeypatch.setattr(registry, name, {kind: fn for kind, fn in getattr(registry, name).items()
                                             if kind in kinds.CATALOGUE})


def test_enqueue_refuses_a_kind_outside_the_catalogue():
    with pytest.raises(UnknownSyncKind, match="'agnet' is not a sync kind") as caught:
        job_enqueue(kind="agnet", object_id=1)
    assert isinstance(caught.value, ValueError) and "agent" in str(caught.value)  # names what it accepts
    assert not SyncJob.objects.exists()


def test_enqueue_takes_a_catalogued_kind():
    job = job_enqueue(kind=SyncKind.SECRET, object_id=5, nudge=False)
    assert SyncJob.objects.get(pk=job.pk).kind == "secret"


def test_every_catalogued_kind_has_a_push_handler_from_its_app(catalogue_only):
    assert check_sync_kinds() == []
    assert set(registry.kinds()) == set(SyncKind)


def test_the_check_fails_when_a_catalogued_kind_has_no_push_handler(catalogue_only, monkeypatch):
    monkeypatch.delitem(registry._handlers, SyncKind.TOOL)
    (error,) = check_sync_kinds()
    assert error.id == "sync.E001" and error.is_serious()
    assert "'tool'" in error.msg and "no app registered a push handler" in error.msg


def test_the_check_fails_when_a_handler_serves_a_kind_outside_the_catalogue(catalogue_only, monkeypatch):
    monkeypatch.setitem(registry._handlers, "widget", lambda job, client: None)
    monkeypatch.setitem(registry._reconcilers, "gadget", lambda client: [])
    errors = check_sync_kinds()
    assert [(e.id, e.obj) for e in errors] == [("sync.E002", "widget"), ("sync.E002", "gadget")]
    assert "push handler is registered for kind 'widget'" in errors[0].msg


def test_the_check_is_part_of_django_checks():
    from django.core.checks import registry as django_checks

    assert check_sync_kinds in django_checks.registry.get_checks()
