"""The leak check writes its findings in bulk: the same report, audit events and alerts as the per-match logic it
replaced (kept here as the reference), in a number of queries that does not grow with the matches."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys import leaks
from keys.models import ApiKey, key_digest
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.audit.models import AuditEvent
from project.audit.services import record
from tests.factories import make_api_key_row

pytestmark = pytest.mark.django_db


class _Rollback(Exception):
    pass


def _per_match_reference(*, actor, text):
    """The leak check as it was: an audit event and an alert_raise per matched key (five queries a match)."""
    digests, others = leaks.extract(text)
    report = leaks.LeakReport(candidates=len(digests), occurrences=sum(digests.values()), other_kinds=others)
    keys = list(ApiKey.objects.restrict(actor, "workspace.view").filter(digest__in=sorted(digests))
                .exclude(digest="").select_related("workspace", "service_account", "environment"))
    keys.sort(key=lambda k: (k.state not in ApiKey.USABLE_STATES, k.workspace.name, k.name, k.pk))
    today = timezone.now().date().isoformat()
    for key in keys:
        occurrences = digests[key.digest]
        rotatable = (key.state in (*ApiKey.USABLE_STATES, ApiKey.State.REVOKED, ApiKey.State.EXPIRED)
                     and leaks.access.has_perm(actor, "keys.issue", key.workspace_id)
                     and leaks.access.has_perm(actor, "keys.revoke", key.workspace_id))
        report.matches.append(leaks.LeakMatch(key, occurrences, rotatable))
        record(actor=actor, action="api_key.exposure_reported", target=key, workspace_id=key.workspace_id,
               changes={"occurrences": occurrences, "state": key.state})
        if key.state in ApiKey.USABLE_STATES:
            alert_raise(actor=actor, workspace=key.workspace, kind="api_key_exposed", severity=Alert.Severity.HIGH,
                        title=f"Key “{key}” of {key.service_account} was found in pasted text",
                        dedup_key=f"api_key.exposed:{key.uuid}:{today}", target=key,
                        details={"environment": key.environment.name, "occurrences": occurrences,
                                 "advice": "Rotate it now: the old key is revoked at once and a successor issued."})
    report.unmatched = report.candidates - len(keys)
    return report


def _outcome(check, actor, text):
    """What a check reports and writes, then undone, so both checks start from the same data."""
    before = (AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
              Alert.objects.order_by("-pk").values_list("pk", flat=True).first() or 0)
    try:
        with transaction.atomic():
            report = check(actor=actor, text=text)
            seen = {
                "report": (report.candidates, report.occurrences, report.unmatched, report.other_kinds,
                           [(m.key.pk, m.occurrences, m.can_rotate_now) for m in report.matches]),
                "audit": sorted(AuditEvent.objects.filter(pk__gt=before[0]).values_list(
                    "action", "actor_type", "actor_label", "object_type", "object_repr", "workspace_id", "changes")
                    .order_by(), key=repr),
                "alerts": sorted(Alert.objects.filter(pk__gt=before[1]).values_list(
                    "workspace_id", "kind", "severity", "state", "title", "details", "object_type", "object_id",
                    "object_repr", "dedup_key").order_by(), key=repr),
            }
            raise _Rollback
    except _Rollback:
        pass
    return seen


def _keys(workspace, n, prefix):
    secrets = []
    for i in range(n):
        secret = f"sk_{prefix}{i:047x}"
        key = make_api_key_row(workspace, name=f"leaky-{prefix}-{i}")
        ApiKey.objects.filter(pk=key.pk).update(digest=key_digest(secret))
        secrets.append(secret)
    return secrets


def test_bulk_leak_check_finds_and_writes_what_the_per_match_logic_did(owner, member, workspace, other_workspace):
    mine, theirs = _keys(workspace, 6, "a"), _keys(other_workspace, 2, "b")
    keys = list(ApiKey.objects.filter(workspace=workspace).order_by("pk"))
    ApiKey.objects.filter(pk=keys[1].pk).update(state=ApiKey.State.REVOKED, revoked_at=timezone.now())  # no alert
    # Raised already today: the check audits the match and raises nothing new for it.
    alert_raise(actor=owner, workspace=workspace, kind="api_key_exposed", title="earlier",
                dedup_key=f"api_key.exposed:{keys[2].uuid}:{timezone.now().date().isoformat()}")
    text = "\n".join([f"key={s} again={s}" if i % 2 else f"key={s}" for i, s in enumerate(mine + theirs)]
                     + ["sk_" + "0" * 48])
    for actor, matches, alerts in ((owner, 6, 4), (member, 6, 4)):
        old = _outcome(_per_match_reference, actor, text)
        new = _outcome(leaks.leak_check, actor, text)
        assert new == old
        assert len(new["report"][4]) == matches and len(new["alerts"]) == alerts


def test_leak_check_queries_do_not_grow_with_the_matches(owner, workspace):
    secrets = _keys(workspace, 12, "c")

    def queries(secrets):
        with CaptureQueriesContext(connection) as ctx, transaction.atomic():
            report = leaks.leak_check(actor=owner, text=" ".join(secrets))
            transaction.set_rollback(True)
        assert len(report.matches) == len(secrets)
        return len(ctx)

    queries(secrets[:1])  # the actor's permissions, read once per request
    assert queries(secrets[:2]) == queries(secrets)
