"""Retention of the outbox: done jobs are history once newer ones replaced them, and go after a while."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from project.actors import Actor
from project.audit.services import record
from project.sync.models import SyncJob

PRUNE_BATCH = 5000


def sync_jobs_prune(*, actor: Actor, older_than: timedelta | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete done jobs that finished more than ``older_than`` ago (default SYNC_DONE_RETENTION_DAYS days) and
    are not their object's newest job. Pending, running, failed, dead, superseded and discarded jobs stay, and
    so does each object's newest job whatever its age: the admin's sync badge ("synced") and the handlers'
    "was this object tried before?" read it.

    Deletes in batches of ``batch`` rows, oldest first, one short transaction each, so a large backlog never
    holds a long lock or a huge transaction; audited once with the count (nothing audited when nothing went).
    The periodic task acts as ``SYSTEM``. Enqueues nothing. Returns the count.
    """
    if older_than is None:
        older_than = timedelta(days=settings.SYNC_DONE_RETENTION_DAYS)
    cutoff = timezone.now() - older_than
    # sync_object_idx (kind, object_id, -id) answers "is there a newer job of this object?" per candidate.
    newer = SyncJob.objects.filter(kind=OuterRef("kind"), object_id=OuterRef("object_id"), id__gt=OuterRef("id"))
    expired = SyncJob.objects.filter(state=SyncJob.State.DONE, finished_at__lt=cutoff).filter(Exists(newer))
    total = 0
    while True:
        with transaction.atomic():
            # Oldest first by primary key: old done jobs are the lowest ids, so this reads the head of the pk index.
            ids = list(expired.order_by("id").values_list("id", flat=True)[:batch])
            if not ids:
                break
            total += SyncJob.objects.filter(id__in=ids, state=SyncJob.State.DONE).delete()[0]
        if len(ids) < batch:
            break
    if total:
        record(actor=actor, action="sync.jobs_prune", object_type="sync.syncjob",
               changes={"deleted": total, "finished_before": cutoff.isoformat()})
    return total
