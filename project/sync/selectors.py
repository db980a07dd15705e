"""Reads of sync state for other apps' admin pages."""

from __future__ import annotations

from django.db.models import CharField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Cast

from project.sync.models import SyncJob


def with_sync_state(queryset: QuerySet, kind: str) -> QuerySet:
    """Annotate each row with its newest sync job's state, error and time, in the same query."""
    newest = (SyncJob.objects.filter(kind=kind, object_id=Cast(OuterRef("pk"), CharField()))
              .order_by("-id"))
    return queryset.annotate(
        sync_state=Subquery(newest.values("state")[:1]),
        sync_error=Subquery(newest.values("last_error")[:1]),
        sync_updated_at=Subquery(newest.values("updated_at")[:1]),
    )


def jobs_for_object(kind: str, object_id: object, limit: int = 10) -> list[SyncJob]:
    return list(SyncJob.objects.filter(kind=kind, object_id=str(object_id)).order_by("-id")[:limit])
