"""The leak check: find key-shaped strings in pasted text and match them, by SHA-256 digest, to the API keys of
the workspaces the person may see.

The text lives only in this call's memory: it is not stored, logged, audited, put in the session or echoed back
(the view marks the POST parameter sensitive for error reports). What is recorded is the finding: one audit event
per matched key, and an alert for a key that still works.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys.models import ApiKey, key_digest
from project import access
from project.actors import Actor
from project.alerts.models import Alert
from project.alerts.services import alert_build, alerts_raise_many
from project.audit.services import event, record_many

BATCH = 1000  # digests per IN (...) lookup: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class KeyPattern:
    kind: str
    regex: re.Pattern[str]
    label: str


# Platform keys: sk_ + 48 lowercase hex (observed format), not glued to more word characters.
PLATFORM_KEY = KeyPattern("platform", re.compile(r"(?<![A-Za-z0-9_])sk_[0-9a-f]{48}(?![A-Za-z0-9_])"),
                          "platform API key")
KEY_PATTERNS: list[KeyPattern] = [PLATFORM_KEY]


def register_key_pattern(pattern: KeyPattern) -> None:
    """Let another part (Keyward's kw_ broker keys) have its key shape counted; only platform keys are matched
    against ApiKey digests here."""
    if all(p.kind != pattern.kind for p in KEY_PATTERNS):
        KEY_PATTERNS.append(pattern)


@dataclass
class LeakMatch:
    key: ApiKey
    occurrences: int
    can_rotate_now: bool


@dataclass
class LeakReport:
    candidates: int = 0  # distinct key-shaped strings
    occurrences: int = 0
    matches: list[LeakMatch] = field(default_factory=list)
    unmatched: int = 0  # key-shaped strings matching no key this person may see
    other_kinds: dict[str, int] = field(default_factory=dict)


@sensitive_variables("text", "found")
def extract(text: str) -> tuple[Counter[str], dict[str, int]]:
    """Digests of the platform-key-shaped strings (with their counts), and counts of other registered shapes."""
    found = Counter(m.group(0) for m in PLATFORM_KEY.regex.finditer(text))
    digests: Counter[str] = Counter()
    for candidate, count in found.items():
        digests[key_digest(candidate)] += count
    others = {p.label: len(set(p.regex.findall(text))) for p in KEY_PATTERNS if p is not PLATFORM_KEY}
    return digests, {label: n for label, n in others.items() if n}


def _may_rotate(actor: Actor, workspace_id: int) -> bool:
    return access.has_perm(actor, "keys.issue", workspace_id) and access.has_perm(actor, "keys.revoke", workspace_id)


@sensitive_variables("text")
@transaction.atomic
def leak_check(*, actor: Actor, text: str) -> LeakReport:
    """Match every platform-key-shaped string in `text` against the keys of the workspaces where `actor` holds
    workspace.view. Audits ``api_key.exposure_reported`` per matched key and raises a high alert (once a day per
    key) for a key that still works. The text is not kept. The queries do not grow with the matches (a few per
    thousand: the lookups, one audit insert, the alerts raised in bulk)."""
    digests, others = extract(text)
    del text
    report = LeakReport(candidates=len(digests), occurrences=sum(digests.values()), other_kinds=others)
    ordered = sorted(digests)
    keys: list[ApiKey] = []
    for i in range(0, len(ordered), BATCH):
        # exclude(digest="") lets PostgreSQL use the partial unique index on digest instead of a table scan.
        keys.extend(ApiKey.objects.restrict(actor, "workspace.view").filter(digest__in=ordered[i:i + BATCH])
                    .exclude(digest="").order_by().select_related("workspace", "service_account", "environment"))
    keys.sort(key=lambda k: (k.state not in ApiKey.USABLE_STATES, k.workspace.name, k.name, k.pk))
    today = timezone.now().date().isoformat()
    can_rotate: dict[int, bool] = {}  # per workspace: the permissions are the actor's there, not the key's
    events, alerts = [], []
    for key in keys:
        occurrences = digests[key.digest]
        if key.workspace_id not in can_rotate:
            can_rotate[key.workspace_id] = _may_rotate(actor, key.workspace_id)
        rotatable = can_rotate[key.workspace_id] and key.state in (
            *ApiKey.USABLE_STATES, ApiKey.State.REVOKED, ApiKey.State.EXPIRED)
        report.matches.append(LeakMatch(key, occurrences, rotatable))
        events.append(event(actor=actor, action="api_key.exposure_reported", target=key,
                            workspace_id=key.workspace_id, changes={"occurrences": occurrences, "state": key.state}))
        if key.state in ApiKey.USABLE_STATES:
            alerts.append(alert_build(
                workspace=key.workspace, kind="api_key_exposed", severity=Alert.Severity.HIGH,
                title=f"Key “{key}” of {key.service_account} was found in pasted text",
                dedup_key=f"api_key.exposed:{key.uuid}:{today}", target=key,
                details={"environment": key.environment.name, "occurrences": occurrences,
                         "advice": "Rotate it now: the old key is revoked at once and a successor issued."}))
    record_many(events)
    alerts_raise_many(actor=actor, alerts=alerts)  # once a day per key: those raised today change nothing
    report.unmatched = report.candidates - len(keys)
    return report
