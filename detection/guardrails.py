"""Guardrails on the live state: rules over what a platform account actually holds, as the last discovery or
guardrail refresh read it (the Observation rows), and over Keyward's own API keys.

A pass over one account (``guardrails_evaluate``) judges every observation and writes the rules it breaks onto
``Observation.findings`` (the Discover list and the agent page show them), then makes the account's guardrail
alerts match: one alert per object and rule (dedup key ``guardrail:<account>:<kind>:<remote id>:<rule>``) in the
workspace of the object (every workspace bound to the account when that is not clear), with the object and the
evidence; an alert whose finding has gone away is resolved by the system and its dedup key freed, so the same
finding coming back later raises a new alert. An alert a person resolved while its finding stays is left
resolved (the risk was accepted) until the finding goes away. New alerts are raised in bulk
(``alerts_raise_many``: audited and delivered as alert_raise's); a resolution is audited and told to the channels
that were told of the alert, as a person's would be.

Each rule is *alert* or *enforce* per workspace (``DetectionPolicy.guardrail_enforce``, alert by default).
Enforce pushes Keyward's policy back through the outbox (audited as the system with the rule's name) for an
object Keyward governs whose local policy does not break the rule itself, once per alert.

Runs after every discovery or refresh of the account and after every adoption (the observation listener
registered in ``apps.ready``), and after every reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import MAX_DURATION_LIMIT, Agent
from agents.validators import normalize_allowlist, normalize_hostname
from detection.models import ENFORCEABLE_GUARDRAILS, Guardrail
from detection.services import detection_policies_ensure
from keys.discovery import OWN_KEY
from keys.models import ALL_SCOPES, ApiKey, KeyPolicy
from project.actors import SYSTEM
from project.alerts import notify
from project.alerts.models import Alert, Delivery
from project.alerts.services import alert_build, alerts_raise_many
from project.audit.services import event, record_many
from project.sync.models import Observation
from workspaces.models import Workspace

logger = logging.getLogger("detection.guardrails")

BATCH = 1000
# Room for the suffix a resolved alert's dedup key gets (RESOLVED_MARK and its id) within the column's 200.
DEDUP_MAX = 170
RESOLVED_MARK = "#resolved-"
KIND_PREFIX = "guardrail_"
ALERT_KINDS = {f"{KIND_PREFIX}{rule.value}": f"Guardrail: {rule.label}" for rule in Guardrail}
SEVERITY = {
    Guardrail.PUBLIC_NO_DURATION: Alert.Severity.HIGH,
    Guardrail.SIGNED_AND_ALLOWLIST: Alert.Severity.MEDIUM,
    Guardrail.SHAREABLE_OPEN: Alert.Severity.HIGH,
    Guardrail.ALLOWLIST_ENTRY: Alert.Severity.MEDIUM,
    Guardrail.NO_ACCEPTABLE_POLICY: Alert.Severity.MEDIUM,
    Guardrail.KEY_ALL_PERMISSIONS: Alert.Severity.HIGH,
    Guardrail.KEY_UNBOUNDED: Alert.Severity.MEDIUM,
    Guardrail.KEY_IDLE: Alert.Severity.LOW,
    Guardrail.FOREIGN_WEBHOOK: Alert.Severity.HIGH,
}
AGENT_KIND, KEY_KIND, SETTINGS_KIND = "agent", "api_key", "convai_settings"
# Allowlist entries the platform matches literally, so they never match a browser's Origin as meant.
MALFORMED_CODES = {"scheme", "wildcard", "path"}

Findings = dict[str, dict[str, Any]]  # rule code → evidence (plain JSON, never a secret value)


# --- the rules: plain functions of facts -----------------------------------------------------------------------
def _duration(facts: Mapping[str, Any]) -> int | None:
    value = facts.get("max_duration_seconds")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def agent_findings(facts: Mapping[str, Any]) -> Findings:
    """The agent rules over an agent's facts (agents.discovery.agent_facts). An archived agent takes no
    conversations: it breaks none."""
    if facts.get("archived"):
        return {}
    signed = bool(facts.get("enable_auth"))
    hosts = [str(h) for h in facts.get("allowlist") or []]
    duration = _duration(facts)
    found: Findings = {}
    if not signed and not hosts and (duration is None or duration <= 0):
        found[Guardrail.PUBLIC_NO_DURATION] = {"max_duration_seconds": duration,
                                               "why": "anyone may start a conversation, and none is cut short"}
    if signed and hosts:
        found[Guardrail.SIGNED_AND_ALLOWLIST] = {"allowlist": hosts}
    if facts.get("shareable") and (signed or hosts):
        found[Guardrail.SHAREABLE_OPEN] = {"policy": "signed URLs" if signed else "allowlist",
                                           "why": "anyone holding the link can talk to the agent"}
    malformed = []
    for host in hosts:
        try:
            normalize_hostname(host)
        except ValidationError as exc:
            if exc.code in MALFORMED_CODES:
                malformed.append(host)
    if malformed:
        found[Guardrail.ALLOWLIST_ENTRY] = {"entries": malformed}
    if not found:
        problems = _policy_problems(signed, hosts, duration)
        if problems:
            found[Guardrail.NO_ACCEPTABLE_POLICY] = {"problems": problems}
    return found


def _policy_problems(signed: bool, hosts: list[str], duration: int | None) -> list[str]:
    """Why Keyward would refuse the platform's settings read as one policy (an empty list: it would accept): the
    checks of ``Agent.clean`` for the policy the settings amount to (signed with an allowlist is a rule of its own;
    a public agent without a limit too), without building a model per agent."""
    problems = []
    if hosts and not signed:
        try:
            normalize_allowlist(hosts)
        except ValidationError as exc:
            problems += exc.messages
    if duration is not None and duration > MAX_DURATION_LIMIT:
        problems.append(f"The maximum duration ({duration} s) is above Keyward's limit ({MAX_DURATION_LIMIT} s).")
    return problems


def webhook_findings(facts: Mapping[str, Any], keyward_host: str) -> Findings:
    """The workspace-wide initiation webhook: the platform sends every conversation's start to it."""
    url = str(facts.get("webhook_url") or "")
    if not url:
        return {}
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == keyward_host:
        return {}
    # The address without its query: a query string may carry a token.
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" if parts.scheme else url.split("?")[0]
    return {Guardrail.FOREIGN_WEBHOOK: {"webhook_host": host or "(none)", "webhook_url": shown[:200],
                                        "keyward_host": keyward_host}}


@dataclass(frozen=True)
class KeyState:
    """What the key rules judge: the platform's copy where it was read, Keyward's row where it governs the key."""

    permissions: Any
    allowed_ips: list[str]
    expires_at: datetime | None
    disabled: bool
    production: bool
    last_used_at: datetime | None
    born: datetime | None
    idle_days: int


def key_findings(key: KeyState, now: datetime) -> Findings:
    if key.disabled:
        return {}
    found: Findings = {}
    if key.production and (key.permissions is None or key.permissions == ALL_SCOPES):
        found[Guardrail.KEY_ALL_PERMISSIONS] = {"permissions": "all"}
    if key.production and (not key.allowed_ips or key.expires_at is None):
        missing = [what for what, absent in (("IP limits", not key.allowed_ips), ("expiry", key.expires_at is None))
                   if absent]
        found[Guardrail.KEY_UNBOUNDED] = {"missing": missing}
    since = key.last_used_at or key.born
    if since is not None and since < now - timedelta(days=key.idle_days):
        found[Guardrail.KEY_IDLE] = {"last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                                     "idle_days": key.idle_days}
    return found


def _when(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str) and value:
        return parse_datetime(value)
    return None


# --- one pass over an account --------------------------------------------------------------------------------
@dataclass
class Wanted:
    """An alert the live state calls for."""

    workspace_id: int
    dedup_key: str
    rule: str
    title: str
    details: dict[str, Any]
    object_type: str
    object_id: str
    object_repr: str
    # The governed object enforce would push (agent or key pk), and whether Keyward's own policy breaks the rule.
    governed: tuple[str, int] | None = None


@dataclass
class GuardrailReport:
    judged: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    raised: int = 0
    resolved: int = 0
    enforced: int = 0


@dataclass
class _Context:
    account_id: int
    workspaces: list[int]
    enforce: dict[int, set[str]]
    idle_days: dict[int, int]
    keyward_host: str
    now: datetime
    wanted: dict[tuple[int, str], Wanted] = field(default_factory=dict)
    report: GuardrailReport = field(default_factory=GuardrailReport)

    def add(self, *, workspace_id: int | None, kind: str, remote_id: str, label: str, found: Findings,
            target: tuple[str, str], managed: bool, governed: tuple[str, int] | None = None,
            local: Findings | None = None) -> None:
        what = {"agent": "agent", "api_key": "API key", "convai_settings": "workspace settings"}.get(kind, kind)
        for rule, evidence in found.items():
            self.report.findings[rule] = self.report.findings.get(rule, 0) + 1
            dedup = f"guardrail:{self.account_id}:{kind}:{remote_id}:{rule}"[:DEDUP_MAX]
            details = {"rule": Guardrail(rule).label, "platform_account": self.account_id, "object": label,
                       "remote_id": remote_id, "managed_by_keyward": managed, **evidence}
            can_enforce = governed is not None and rule in ENFORCEABLE_GUARDRAILS
            if can_enforce and local is not None and rule in local:
                details["keyward_policy_breaks_it_too"] = True
            for ws in ([workspace_id] if workspace_id is not None else self.workspaces):
                self.wanted[(ws, dedup)] = Wanted(
                    ws, dedup, rule, f"Guardrail: {Guardrail(rule).label} ({what} “{label or remote_id}”)",
                    details, target[0], target[1], (label or remote_id)[:200],
                    governed if can_enforce and not details.get("keyward_policy_breaks_it_too") else None)


def _local_agent_facts(agent: Agent) -> dict[str, Any]:
    return {"enable_auth": agent.auth_mode == Agent.AuthMode.SIGNED,
            "allowlist": list(agent.allowlist) if agent.auth_mode == Agent.AuthMode.ALLOWLIST else [],
            "shareable": agent.allow_shareable_link, "max_duration_seconds": agent.max_duration_seconds}


def _observations(account_id: int) -> Iterator[list[dict[str, Any]]]:
    last = 0
    fields = ("pk", "kind", "remote_id", "label", "facts", "object_id", "workspace_id", "findings")
    while True:
        rows = list(Observation.objects.filter(account_id=account_id, pk__gt=last).order_by("pk").values(*fields)
                    [:BATCH])
        if not rows:
            return
        yield rows
        last = rows[-1]["pk"]


def _judge_batch(ctx: _Context, rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[int]]:
    """Judge a batch of observations; returns the observations whose findings changed, grouped by new findings."""
    agent_ids = [int(r["object_id"]) for r in rows if r["kind"] == AGENT_KIND and r["object_id"].isdigit()]
    key_ids = [int(r["object_id"]) for r in rows if r["kind"] == KEY_KIND and r["object_id"].isdigit()]
    agents = {a.pk: a for a in Agent.objects.filter(pk__in=agent_ids).only(
        "workspace_id", "auth_mode", "allowlist", "allow_shareable_link", "max_duration_seconds")} if agent_ids else {}
    keys = {k["pk"]: k for k in ApiKey.objects.filter(pk__in=key_ids).values(*_KEY_ROW)} if key_ids else {}
    changed: dict[tuple[str, ...], list[int]] = {}
    for row in rows:
        kind, facts = row["kind"], row["facts"] or {}
        managed = bool(row["object_id"])
        target = ("sync.observation", str(row["pk"]))
        governed, local, workspace_id = None, None, row["workspace_id"]
        if kind == AGENT_KIND:
            found = agent_findings(facts)
            agent = agents.get(int(row["object_id"])) if row["object_id"].isdigit() else None
            if agent is not None:
                target, governed = ("agents.agent", str(agent.pk)), ("agent", agent.pk)
                local, workspace_id = agent_findings(_local_agent_facts(agent)), agent.workspace_id
        elif kind == SETTINGS_KIND:
            found = webhook_findings(facts, ctx.keyward_host)
        elif kind == KEY_KIND:
            key = keys.get(int(row["object_id"])) if row["object_id"].isdigit() else None
            found = _observed_key(ctx, facts, key, row["object_id"], workspace_id)
            if key is not None:
                target, governed, workspace_id = ("keys.apikey", str(key["pk"])), ("key", key["pk"]), \
                    key["workspace_id"]
                # Whether Keyward's own policy breaks an enforceable finding too (then it is not enforced): read
                # from the same row, only where there is something to enforce.
                if any(rule in ENFORCEABLE_GUARDRAILS for rule in found):
                    local = key_findings(_row_state(key, ctx.idle_days.get(key["workspace_id"], 30)), ctx.now)
        else:
            found = {}
        ctx.report.judged += 1
        codes = sorted(found)
        if codes != list(row["findings"] or []):
            changed.setdefault(tuple(codes), []).append(row["pk"])
        ctx.add(workspace_id=workspace_id, kind=kind, remote_id=row["remote_id"], label=row["label"], found=found,
                target=target, managed=managed, governed=governed, local=local)
    return changed


def _observed_key(ctx: _Context, facts: Mapping[str, Any], key: dict[str, Any] | None, object_id: str,
                  workspace_id: int | None) -> Findings:
    """A key read on the platform: its permissions, network limit and disabled state as the platform holds them;
    its environment, expiry and last use from Keyward's row when Keyward governs it (facts of keys.discovery:
    ``permissions``, ``allowed_ips``, ``expires_at_unix``, ``is_disabled``). A key Keyward does not manage has no
    known environment: it is judged as production (the cautious reading) until adopted; its last use is not known,
    so it is never judged idle. Keyward's own platform-account key is the account page's business (its rotation),
    not these rules'."""
    if object_id.startswith(OWN_KEY) or (key is not None and key["state"] not in ApiKey.USABLE_STATES):
        return {}
    idle_days = ctx.idle_days.get(key["workspace_id"] if key else workspace_id or 0, 30)
    live = KeyState(
        permissions=facts.get("permissions"), allowed_ips=list(facts.get("allowed_ips") or []),
        expires_at=(key or {}).get("expires_at") or _when(facts.get("expires_at_unix")),
        disabled=bool(facts.get("is_disabled")),
        production=bool(key["environment__is_production"]) if key else True,
        last_used_at=key["last_used_at"] if key else None,
        born=(key["activated_at"] or key["created_at"]) if key else None, idle_days=idle_days)
    return key_findings(live, ctx.now)


# The columns of a key row the rules read (_row_state, _observed_key).
_KEY_ROW = ("pk", "workspace_id", "state", "scopes", "allowed_ips", "expires_at", "suspended_at", "last_used_at",
            "activated_at", "created_at", "environment__is_production")


def _row_state(row: dict[str, Any], idle_days: int) -> KeyState:
    return KeyState(permissions=row["scopes"], allowed_ips=list(row["allowed_ips"] or []),
                    expires_at=row["expires_at"], disabled=row["suspended_at"] is not None,
                    production=bool(row["environment__is_production"]), last_used_at=row["last_used_at"],
                    born=row["activated_at"] or row["created_at"], idle_days=idle_days)


def _keyward_keys(ctx: _Context) -> None:
    """Keyward's own usable keys of the account's workspaces that no observation covers (the platform's key list
    not read yet): judged from their rows. Those an observation covers are left out by the database."""
    observed = Observation.objects.filter(account_id=ctx.account_id, kind=KEY_KIND).values("remote_id")
    rows = (ApiKey.objects.filter(workspace_id__in=ctx.workspaces, state__in=ApiKey.USABLE_STATES)
            .exclude(~Q(remote_key_id="") & Q(remote_key_id__in=observed))
            .values("uuid", "name", "hint", "remote_key_id", *_KEY_ROW))
    for row in rows.iterator(chunk_size=BATCH):
        found = key_findings(_row_state(row, ctx.idle_days.get(row["workspace_id"], 30)), ctx.now)
        label = f"{row['name']} (…{row['hint']})" if row["hint"] else row["name"]
        ctx.report.judged += 1
        ctx.add(workspace_id=row["workspace_id"], kind=KEY_KIND, remote_id=row["remote_key_id"] or str(row["uuid"]),
                label=label, found=found, target=("keys.apikey", str(row["pk"])), managed=True,
                governed=None)


def _context(account_id: int, now: datetime) -> _Context:
    workspaces = list(Workspace.objects.filter(platform_account_id=account_id).order_by("pk")
                      .values_list("pk", flat=True))
    policies = detection_policies_ensure(workspace_ids=workspaces) if workspaces else {}
    idle = dict(KeyPolicy.objects.filter(workspace_id__in=workspaces).values_list("workspace_id", "idle_days"))
    return _Context(account_id=account_id, workspaces=workspaces,
                    enforce={ws: set(p.guardrail_enforce or []) for ws, p in policies.items()},
                    idle_days={ws: idle.get(ws, KeyPolicy._meta.get_field("idle_days").default) for ws in workspaces},
                    keyward_host=(urlsplit(settings.BROKER_PUBLIC_URL).hostname or "").lower(), now=now)


def guardrails_evaluate(*, account_id: int, now: datetime | None = None) -> GuardrailReport:
    """Judge everything the account holds (see the module docstring): write the findings onto the observations,
    raise the alerts the live state calls for, resolve those it no longer does, enforce where a workspace says so.
    Returns what it did."""
    ctx = _context(account_id, now or timezone.now())
    for rows in _observations(account_id):
        changed = _judge_batch(ctx, rows)
        for codes, pks in changed.items():
            Observation.objects.filter(pk__in=pks).update(findings=list(codes))
    _keyward_keys(ctx)
    _sync_alerts(ctx)
    return ctx.report


def _existing(ctx: _Context) -> dict[tuple[int, str], tuple[int, str, Any, tuple[str, str]]]:
    prefix = f"guardrail:{ctx.account_id}:"
    rows = Alert.objects.filter(workspace_id__in=ctx.workspaces, kind__in=list(ALERT_KINDS)).values_list(
        "pk", "workspace_id", "dedup_key", "state", "details__enforced_at", "object_type", "object_id")
    return {(ws, key): (pk, state, enforced, (object_type, object_id))
            for pk, ws, key, state, enforced, object_type, object_id in rows.iterator(chunk_size=BATCH)
            if key.startswith(prefix) and RESOLVED_MARK not in key}


def _sync_alerts(ctx: _Context) -> None:
    if not ctx.workspaces:
        return
    existing = _existing(ctx)
    to_enforce: list[Wanted] = []
    fresh, moved = [], []
    for key, wanted in ctx.wanted.items():
        mode = "enforce" if wanted.rule in ctx.enforce.get(wanted.workspace_id, set()) else "alert"
        wanted.details["mode"] = mode
        enforce = mode == "enforce" and wanted.governed is not None
        current = existing.get(key)
        if current is None:
            fresh.append(wanted)
            if enforce:
                to_enforce.append(wanted)
        else:
            if enforce and current[1] != Alert.State.RESOLVED and not current[2]:
                to_enforce.append(wanted)
            if current[3] != (wanted.object_type, wanted.object_id):  # adopted since: the alert is about the row
                moved.append(Alert(pk=current[0], object_type=wanted.object_type, object_id=wanted.object_id,
                                   object_repr=wanted.object_repr))
    Alert.objects.bulk_update(moved, ["object_type", "object_id", "object_repr"], batch_size=500)
    enforced = _enforce(ctx, to_enforce)
    for i in range(0, len(fresh), BATCH):  # a thousand alert rows in memory at a time
        ctx.report.raised += _raise(fresh[i:i + BATCH])
    if enforced:
        stamp = ctx.now.isoformat()
        for wanted in enforced:
            current = existing.get((wanted.workspace_id, wanted.dedup_key))
            if current is not None:
                alert = Alert.objects.get(pk=current[0])
                alert.details = {**alert.details, "enforced_at": stamp, "mode": "enforce"}
                alert.save(update_fields=["details", "updated_at"])
    gone = [(pk, state) for key, (pk, state, *_) in existing.items() if key not in ctx.wanted]
    for i in range(0, len(gone), BATCH):
        ctx.report.resolved += _resolve(gone[i:i + BATCH], ctx.now)


def _enforce(ctx: _Context, wanted: list[Wanted]) -> list[Wanted]:
    """Push Keyward's policy back for each governed object once (several workspaces' alerts: one push)."""
    from agents.services import agent_policy_restore
    from keys.services import api_key_policy_restore

    done: dict[tuple[str, int], bool] = {}
    enforced = []
    for item in wanted:
        assert item.governed is not None
        reason = f"guardrail “{Guardrail(item.rule).label}” in enforce mode"
        if item.governed not in done:
            what, pk = item.governed
            try:
                if what == "agent":
                    agent = Agent.objects.filter(pk=pk).first()
                    done[item.governed] = bool(agent) and agent_policy_restore(actor=SYSTEM, agent=agent,
                                                                               reason=reason)
                else:
                    key = ApiKey.objects.filter(pk=pk).first()
                    done[item.governed] = bool(key) and api_key_policy_restore(actor=SYSTEM, key=key, reason=reason)
            except ValidationError as exc:  # refused (the object changed meanwhile): the alert says so
                item.details["enforce_refused"] = "; ".join(exc.messages)[:300]
                done[item.governed] = False
        if done[item.governed]:
            item.details["enforced_at"] = ctx.now.isoformat()
            enforced.append(item)
            ctx.report.enforced += 1
    return enforced


def _raise(wanted: list[Wanted]) -> int:
    """Raise the new alerts as alert_raise raises each (audited, delivered to their routed channels), in bulk:
    a first pass over a large account may call for tens of thousands. One raised meanwhile by another pass is
    skipped."""
    workspaces = {pk: Workspace(pk=pk) for pk in {w.workspace_id for w in wanted}}
    alerts = []
    for w in wanted:
        alert = alert_build(workspace=workspaces[w.workspace_id], kind=f"{KIND_PREFIX}{w.rule}", title=w.title,
                            dedup_key=w.dedup_key, severity=SEVERITY[w.rule], details=w.details)
        alert.object_type, alert.object_id, alert.object_repr = w.object_type, w.object_id, w.object_repr
        alerts.append(alert)
    return len(alerts_raise_many(actor=SYSTEM, alerts=alerts))


@transaction.atomic
def _resolve(batch: list[tuple[int, str]], now: datetime) -> int:
    """The finding went away: resolve (system) and free the dedup key (suffix ``#resolved-<id>``) for a later
    recurrence."""
    pks = [pk for pk, _ in batch]
    unresolved = [pk for pk, state in batch if state != Alert.State.RESOLVED]
    states = dict(batch)
    if unresolved:
        Alert.objects.filter(pk__in=unresolved).update(state=Alert.State.RESOLVED, resolved_at=now, updated_at=now)
        rows = Alert.objects.filter(pk__in=unresolved).values_list("pk", "workspace_id", "title", "kind")
        record_many([event(actor=SYSTEM, action="alert.resolved", object_type="alerts.alert", object_id=pk,
                           object_repr=title, workspace_id=ws,
                           changes={"state": [states[pk], Alert.State.RESOLVED], "kind": kind,
                                    "reason": "the finding went away on the platform"})
                     for pk, ws, title, kind in rows])
    told = set(Delivery.objects.filter(alert_id__in=unresolved).values_list("alert_id", flat=True).distinct())
    for alert in Alert.objects.filter(pk__in=told):
        notify.on_transition(alert, Delivery.Event.RESOLVE)
    Alert.objects.filter(pk__in=pks).update(
        dedup_key=Concat(F("dedup_key"), Value(RESOLVED_MARK), Cast(F("pk"), CharField()), output_field=CharField()))
    return len(unresolved)


# --- when it runs ----------------------------------------------------------------------------------------------
def on_observations_changed(account_id: int, workspace_ids: set[int] | None) -> None:
    """The observation listener: after a discovery or refresh of the account, after an adoption, after a
    reconcile. The whole account is judged again (an adoption moves objects between workspaces' alerts)."""
    report = guardrails_evaluate(account_id=account_id)
    logger.info("guardrails of platform account %s: %s judged, %s raised, %s resolved, %s enforced", account_id,
                report.judged, report.raised, report.resolved, report.enforced)
