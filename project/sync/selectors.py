"""Reads of sync state for other apps' admin pages and for sync handlers."""

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


def attempted_before(job: SyncJob) -> bool:
    """Might an earlier attempt for this object have reached the platform without its answer being recorded?

    True when this job was tried before (a retry, a lease taken back, an admin retry) or an older job of the
    same object was ever claimed (a superseded job whose worker died mid-create). Handlers then look for the
    object a lost create may have made before creating another.
    """
    if job.attempts > 1 or job.last_error or job.last_status is not None:
        return True
    annotated = getattr(job, "older_job_tried", None)  # set by jobs_claim for the whole batch
    if annotated is not None:
        return bool(annotated)
    return (SyncJob.objects.filter(kind=job.kind, object_id=job.object_id, id__lt=job.pk, attempts__gt=0)
            .exists())


def remote_id_of_older_job(job: SyncJob) -> str:
    """The platform id an older job of the object recorded when it finished, or "": its create answered after the
    object was deleted here, so the object's row never got the id (the delete's payload has none)."""
    return (SyncJob.objects.filter(kind=job.kind, object_id=job.object_id, id__lt=job.pk).exclude(remote_id="")
            .order_by("-id").values_list("remote_id", flat=True).first() or "")
