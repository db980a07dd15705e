"""Reads of the audit trail for other apps."""

from __future__ import annotations

from project.audit.models import AuditEvent


def earlier_values(*, object_type: str, object_id: object, action: str, field: str, current: str,
                   limit: int = 10) -> list[str]:
    """The values ``field`` had before the object's latest ``action`` events changed it (newest first, without
    ``current`` and without repeats), from the audit trail, which outlives the object. A sync handler looking for
    what a create whose answer was lost made uses them: that create may have sent a value changed since."""
    values: list[str] = []
    for changes in (AuditEvent.objects.filter(object_type=object_type, object_id=str(object_id), action=action)
                    .order_by("-id").values_list("changes", flat=True)[:limit]):
        old = (changes or {}).get(field)
        if isinstance(old, list) and old and isinstance(old[0], str) and old[0] != current:
            values.append(old[0])
    return list(dict.fromkeys(values))
