"""Incidents: opened from an alert, a leak-check match or by hand, then walked revoke → replace → blast radius →
related secrets → post-mortem → closed. Each step is one IncidentStep row with who, when and the figures of that
moment, plus an audit event, in the same transaction. Nothing here reaches the platform itself: revoking and
replacing keys go through keys' services (which enqueue the platform changes), secrets through secrets_app's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from detection.models import Incident, IncidentStep
from keys import services as key_services
from keys.models import ApiKey
from project import access
from project.actors import Actor
from project.alerts.models import Alert
from project.alerts.services import alert_acknowledge, alert_resolve
from project.audit.services import actor_fields, diff, record
from workspaces.models import PlatformAccount, Workspace

PERMISSION = "incidents.manage"
UPDATE_FIELDS = ("title", "summary", "severity")

#: Controls a post-mortem can record (the seed's list), besides free text.
CONTROLS: dict[str, str] = {
    "scope_tightened": "Scopes tightened to what the job needs",
    "ip_allowlist": "IP allowlist added",
    "quota_lowered": "Credit quota lowered",
    "secret_scanner": "Secret scanner in CI / pre-commit",
    "faster_rotation": "Faster rotation cadence",
    "log_redaction": "xi-api-key redacted from logs and traces",
    "history_purged": "File added to .gitignore and history purged",
    "build_artifact": "Secret moved out of the build artifact",
    "ci_access": "Access to the CI system tightened",
    "server_side_only": "Key moved server-side (single-use tokens for clients)",
}


def _person(actor: Actor) -> Any:
    return actor if actor_fields(actor)["actor_user"] is not None else None


def _step(incident: Incident, kind: str, actor: Actor, *, notes: str = "", figures: dict[str, Any] | None = None
          ) -> IncidentStep:
    step = IncidentStep(incident=incident, kind=kind, created_at=timezone.now(), actor=_person(actor),
                        actor_label=actor_fields(actor)["actor_label"], notes=(notes or "").strip(),
                        figures=figures or {})
    step.full_clean(exclude=["incident"])
    step.save()
    return step


def _audit(actor: Actor, incident: Incident, verb: str, changes: dict[str, Any]) -> None:
    record(actor=actor, action=f"incident.{verb}", target=incident, workspace_id=incident.workspace_id,
           changes=changes)


def _lock(actor: Actor, incident: Incident, *, open_only: bool = True) -> Incident:
    access.require(actor, PERMISSION, incident.workspace_id)
    locked = Incident.objects.select_for_update().get(pk=incident.pk)
    if open_only and locked.is_closed:
        raise ValidationError("This incident is closed; add a note instead.")
    return locked


def _done(incident: Incident, kind: str) -> IncidentStep | None:
    return incident.steps.filter(kind=kind).order_by("-created_at", "-id").first()


def key_figures(key: ApiKey) -> dict[str, Any]:
    """What the key could reach: never its secret, only what identifies it and bounds it."""
    return {"id": key.pk, "name": key.name, "hint": key.hint, "state": key.state,
            "service_account": key.service_account.name, "environment": key.environment.name,
            "is_production": key.environment.is_production,
            "scopes": "all" if key.has_all_scopes else list(key.scopes or []),
            "credit_quota": key.credit_quota, "environment_budget": key.environment.credit_budget,
            "allowed_ips": list(key.allowed_ips or []),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "activated_at": key.activated_at.isoformat() if key.activated_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            "suspended": key.suspended_at is not None}


# --- open ----------------------------------------------------------------------------------------------------
def _subject_from_alert(alert: Alert) -> tuple[ApiKey | None, Any]:
    if alert.object_type == "keys.apikey" and alert.object_id.isdigit():
        return ApiKey.objects.filter(pk=int(alert.object_id), workspace_id=alert.workspace_id).first(), None
    if alert.object_type == "secrets_app.secret" and alert.object_id.isdigit():
        from secrets_app.models import Secret

        return None, Secret.objects.filter(pk=int(alert.object_id), workspace_id=alert.workspace_id).first()
    return None, None


def _window_start_from_alert(alert: Alert) -> datetime | None:
    for name in ("hour", "quiet_since", "since"):
        value = (alert.details or {}).get(name)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                continue
    return alert.created_at


@transaction.atomic
def incident_open(*, actor: Actor, source: str = Incident.Source.MANUAL, api_key: ApiKey | None = None,
                  secret: Any = None, alert: Alert | None = None, workspace: Workspace | None = None,
                  title: str = "", summary: str = "", severity: str | None = None,
                  exposure_start: datetime | None = None,
                  platform_account: PlatformAccount | None = None) -> tuple[Incident, bool]:
    """Open an incident about a key, a secret, an alert's subject, Keyward's own key for a platform account
    (``platform_account``, recorded in ``workspace``, one bound to it) or (by hand) nothing in particular, and
    record the first step (incidents.manage in the subject's workspace). An incident still open for the same
    subject (or alert) is returned instead of a second one: (incident, created). Acknowledges the source alert;
    audited."""
    if platform_account is not None:
        return _open_on_account(actor=actor, account=platform_account, workspace=workspace, title=title,
                                summary=summary, severity=severity, exposure_start=exposure_start)
    if alert is not None and api_key is None and secret is None:
        api_key, secret = _subject_from_alert(alert)
    if alert is None and api_key is not None and source == Incident.Source.LEAK_CHECK:
        # The leak check raised its own alert for this key: the incident answers it.
        alert = (Alert.objects.filter(workspace_id=api_key.workspace_id, kind="api_key_exposed",
                                      object_type="keys.apikey", object_id=str(api_key.pk))
                 .exclude(state=Alert.State.RESOLVED).order_by("-created_at").first())
    if api_key is not None and secret is not None:
        raise ValidationError("An incident is about one API key or one secret, not both.")
    subject = api_key or secret
    workspace_id = (subject.workspace_id if subject is not None else alert.workspace_id if alert is not None
                    else workspace.pk if workspace is not None else None)
    if workspace_id is None:
        raise ValidationError("Choose the workspace, key or secret the incident is about.")
    access.require(actor, PERMISSION, workspace_id)
    if alert is not None and alert.workspace_id != workspace_id:
        raise ValidationError("The alert belongs to another workspace than the subject.")
    ongoing = Incident.objects.exclude(state=Incident.State.CLOSED).filter(workspace_id=workspace_id)
    existing = (ongoing.filter(api_key=api_key).first() if api_key is not None
                else ongoing.filter(secret=secret).first() if secret is not None
                else ongoing.filter(alert=alert).first() if alert is not None else None)
    if existing is not None:
        return existing, False
    if api_key is not None:
        api_key = ApiKey.objects.select_related("service_account", "environment").get(pk=api_key.pk)
        default_title = f"Exposure of key “{api_key}” of {api_key.service_account} ({api_key.environment.name})"
        subject_repr = f"API key {api_key} of {api_key.service_account} in {api_key.environment.name}"
    elif secret is not None:
        default_title, subject_repr = f"Exposure of secret “{secret.name}”", f"secret {secret.name}"
    else:
        default_title, subject_repr = (alert.title if alert is not None else "Security incident"), ""
    if severity is None:
        # A production key found outside is the worst case the walk exists for.
        severity = (Alert.Severity.CRITICAL if api_key is not None and api_key.environment.is_production
                    and source == Incident.Source.LEAK_CHECK
                    else alert.severity if alert is not None else Alert.Severity.HIGH)
    if exposure_start is None:
        exposure_start = (_window_start_from_alert(alert) if alert is not None
                          else (api_key.activated_at or api_key.created_at) if api_key is not None
                          and source == Incident.Source.LEAK_CHECK else None)
    incident = Incident(workspace_id=workspace_id, title=(title or default_title)[:200], summary=summary or "",
                        source=source, severity=severity, alert=alert, api_key=api_key, secret=secret,
                        subject_repr=subject_repr[:200], exposure_start=exposure_start, opened_by=_person(actor))
    incident.full_clean()
    incident.save()
    figures: dict[str, Any] = {"source": source, "subject": subject_repr or None}
    if alert is not None:
        figures["alert"] = {"id": alert.pk, "kind": alert.kind, "title": alert.title, "severity": alert.severity,
                            "raised_at": alert.created_at.isoformat(), "details": alert.details}
    if api_key is not None:
        figures["key"] = key_figures(api_key)
    _step(incident, IncidentStep.Kind.OPENED, actor, notes=summary, figures=figures)
    _audit(actor, incident, "open", {"source": source, "subject": subject_repr or None,
                                     "alert": alert.pk if alert is not None else None, "severity": severity})
    if alert is not None and alert.state == Alert.State.OPEN:
        alert_acknowledge(actor=actor, alert=alert)
    return incident, True


def _open_on_account(*, actor: Actor, account: PlatformAccount, workspace: Workspace | None, title: str,
                     summary: str, severity: str | None, exposure_start: datetime | None) -> tuple[Incident, bool]:
    """"Keyward's platform key exposed": the incident lives in one of the account's workspaces (its people walk
    it); the subject is the account's key, whose reach is everything on the account."""
    if workspace is None:
        raise ValidationError({"workspace": "Choose the workspace (bound to this platform account) where the "
                                            "incident is handled."})
    if workspace.platform_account_id != account.pk:
        raise ValidationError({"workspace": f"Workspace “{workspace}” is not bound to platform account "
                                            f"“{account}”."})
    access.require(actor, PERMISSION, workspace.pk)
    existing = Incident.objects.exclude(state=Incident.State.CLOSED).filter(platform_account=account).first()
    if existing is not None:
        return existing, False
    subject_repr = f"Keyward's key …{account.key_hint} for platform account {account}"
    incident = Incident(workspace=workspace, title=(title or f"Keyward's platform key exposed: {account}")[:200],
                        summary=summary or "", source=Incident.Source.MANUAL,
                        # It reaches every agent, secret and key of the account: the worst case there is.
                        severity=severity or Alert.Severity.CRITICAL, platform_account=account,
                        subject_repr=subject_repr[:200], exposure_start=exposure_start or account.key_set_at,
                        opened_by=_person(actor))
    incident.full_clean()
    incident.save()
    _step(incident, IncidentStep.Kind.OPENED, actor, notes=summary,
          figures={"source": Incident.Source.MANUAL, "subject": subject_repr, "account": account_figures(account)})
    _audit(actor, incident, "open", {"source": Incident.Source.MANUAL, "subject": subject_repr,
                                     "platform_account": account.pk, "severity": incident.severity})
    return incident, True


def account_figures(account: PlatformAccount) -> dict[str, Any]:
    """The account's key as the walk records it: never the key, only its hint and where it is listed."""
    return {"id": account.pk, "name": account.name, "key_hint": account.key_hint,
            "key_set_at": account.key_set_at.isoformat() if account.key_set_at else None,
            "key_remote_id": account.key_remote_id or None,
            "previous_key_hint": account.previous_key_hint or None,
            "workspaces": sorted(account.workspaces.values_list("name", flat=True))}


@transaction.atomic
def incident_update(*, actor: Actor, incident: Incident, **fields: Any) -> Incident:
    """Change an incident's title, summary or severity (incidents.manage). Audited."""
    unknown = set(fields) - set(UPDATE_FIELDS)
    if unknown:
        raise TypeError(f"incident_update() got unexpected fields {sorted(unknown)}")
    incident = _lock(actor, incident, open_only=False)
    before = {f: getattr(incident, f) for f in UPDATE_FIELDS}
    for name, value in fields.items():
        setattr(incident, name, value)
    incident.full_clean()
    changes = diff(before, {f: getattr(incident, f) for f in UPDATE_FIELDS})
    if changes:
        incident.save()
        _audit(actor, incident, "update", changes)
    return incident


# --- the walk ----------------------------------------------------------------------------------------------
def incident_revoke(*, actor: Actor, incident: Incident, reason: str = "", successor_key: str = "") -> IncidentStep:
    """Step 1. A key is revoked now through keys' api_key_revoke (keys.revoke too; the platform is told through the
    outbox); a key already ended is recorded as such. A secret's step records that it was revoked where it was
    issued (the notes say how). Keyward's own platform key is replaced and deleted at once (see
    ``_revoke_account_key``; ``successor_key`` is a successor pasted where Keyward cannot issue one). Sets the end
    of the exposure window. Audited."""
    if incident.platform_account_id:
        return _revoke_account_key(actor=actor, incident=incident, reason=reason, successor_key=successor_key)
    return _revoke(actor=actor, incident=incident, reason=reason)


def _revoke_account_key(*, actor: Actor, incident: Incident, reason: str, successor_key: str) -> IncidentStep:
    """Keyward cannot revoke the key it works with before it has another: the account's key is rotated with no
    overlap (Keyward issues the successor itself where the platform lists the key, else takes the pasted one,
    verified first), then the exposed key is deleted on the platform at once, and a key still in an earlier
    rotation's overlap with it. Records both the revoke and the replace steps. Platform calls happen between
    commits, as the account services do; call it outside any transaction."""
    from project.platform.errors import PlatformError
    from workspaces.services import platform_accounts as account_services

    access.require(actor, PERMISSION, incident.workspace_id)
    if incident.is_closed:
        raise ValidationError("This incident is closed; add a note instead.")
    if _done(incident, IncidentStep.Kind.REVOKE):
        raise ValidationError("The revoke step is already recorded.")
    account = PlatformAccount.objects.get(pk=incident.platform_account_id)
    try:
        account_services._require_account_admin(actor, account)
    except PermissionDenied:
        raise ValidationError("Only superusers and Admins of every workspace bound to this platform account may "
                              "replace Keyward's key for it.") from None
    exposed, older = account.key_hint, account.previous_key_hint
    try:
        if account.previous_api_key or account.overlap_until:
            account = account_services.platform_account_revoke_previous(actor=actor, account=account)
        account = account_services.platform_account_rotate_key(actor=actor, account=account,
                                                               pasted_key=successor_key, overlap=timedelta(0))
        deleted_remotely = bool(account.previous_key_remote_id)
        account = account_services.platform_account_revoke_previous(actor=actor, account=account)
    except PlatformError as exc:
        raise ValidationError(f"The platform refused or did not answer ({exc.code}): {exc.message}. Nothing more "
                              "was changed; try again (a successor an earlier attempt made is found first).") from None
    except ValidationError as exc:
        if getattr(exc, "error_dict", None) and "api_key" in exc.error_dict:
            raise ValidationError({"successor_key": exc.error_dict["api_key"]}) from None
        raise
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(actor, incident)
        locked.exposure_end = locked.exposure_end or now
        if locked.exposure_start and locked.exposure_start > locked.exposure_end:
            locked.exposure_start = locked.exposure_end
        locked.state = Incident.State.CONTAINED
        locked.save(update_fields=["exposure_end", "exposure_start", "state", "updated_at"])
        how = "pasted successor" if successor_key.strip() else "issued by Keyward"
        step = _step(locked, IncidentStep.Kind.REVOKE, actor, notes=reason,
                     figures={"account": account.name, "exposed_key_hint": exposed,
                              "deleted_on_platform": deleted_remotely, "older_overlap_key_revoked": older or None})
        _step(locked, IncidentStep.Kind.REPLACE, actor,
              notes=f"Keyward uses a new key (…{account.key_hint}, {how}) since the revoke step; every worker "
                    "picked it up within seconds.",
              figures={"account": account_figures(account), "how": how})
        _audit(actor, locked, "revoke", {"state": [Incident.State.OPEN, Incident.State.CONTAINED],
                                         "exposure_end": locked.exposure_end.isoformat(),
                                         "platform_account": account.pk, "exposed_key_hint": exposed})
    return step


@transaction.atomic
def _revoke(*, actor: Actor, incident: Incident, reason: str = "") -> IncidentStep:
    incident = _lock(actor, incident)
    if _done(incident, IncidentStep.Kind.REVOKE):
        raise ValidationError("The revoke step is already recorded.")
    reason = (reason or "").strip()
    now = timezone.now()
    if incident.api_key_id:
        key = ApiKey.objects.select_related("service_account", "environment").get(pk=incident.api_key_id)
        before = key.state
        if not key.is_final:
            key = key_services.api_key_revoke(actor=actor, key=key,
                                              reason=f"incident #{incident.pk}: {reason or incident.title}")
        figures = {"key": key_figures(key), "state_before": before,
                   "revoked_here": before not in ApiKey.FINAL_STATES}
        ended = key.revoked_at or now
    elif incident.subject_kind == "secret":
        if not reason:
            raise ValidationError({"reason": "Say where and how the secret was revoked (it cannot be revoked "
                                             "from Keyward: its issuer holds it)."})
        figures, ended = {"secret": incident.subject_repr}, now
    else:
        raise ValidationError("This incident has no key or secret to revoke.")
    incident.exposure_end = incident.exposure_end or ended
    if incident.exposure_start and incident.exposure_start > incident.exposure_end:
        incident.exposure_start = incident.exposure_end
    incident.state = Incident.State.CONTAINED
    incident.save(update_fields=["exposure_end", "exposure_start", "state", "updated_at"])
    step = _step(incident, IncidentStep.Kind.REVOKE, actor, notes=reason, figures=figures)
    _audit(actor, incident, "revoke", {"state": [Incident.State.OPEN, Incident.State.CONTAINED],
                                       "exposure_end": incident.exposure_end.isoformat()})
    return step


@transaction.atomic
def _record_replacement(*, actor: Actor, incident_pk: int, successor: ApiKey | None, notes: str,
                        figures: dict[str, Any]) -> IncidentStep:
    incident = Incident.objects.select_for_update().get(pk=incident_pk)
    if successor is not None:
        incident.replacement_key = successor
        incident.save(update_fields=["replacement_key", "updated_at"])
    step = _step(incident, IncidentStep.Kind.REPLACE, actor, notes=notes, figures=figures)
    _audit(actor, incident, "replace", {"replacement": successor.pk if successor is not None else None})
    return step


def incident_replace(*, actor: Actor, incident: Incident, request_uuid: uuid.UUID | None = None,
                     new_value: str | None = None, client: Any = None) -> key_services.IssuedKey | None:
    """Step 2, after the revoke step. A key: keys' api_key_rotate_now issues its successor with the same scopes,
    quota, network limits and expiry (keys.issue and keys.revoke) and the secret comes back in memory, for the one
    page that shows it; a key already rotated keeps its live successor (returns None). A secret: its new value is
    stored through secrets_app's secret_update (secrets.manage) and synced; the value is never recorded.

    Not one transaction: the key is issued on the platform between two commits, as keys' services do. Call it
    outside any transaction. Raises ValidationError (or keys' AlreadyIssued for a resubmitted form)."""
    access.require(actor, PERMISSION, incident.workspace_id)
    incident = Incident.objects.select_related("api_key__service_account", "api_key__environment").get(
        pk=incident.pk)
    if incident.is_closed:
        raise ValidationError("This incident is closed; add a note instead.")
    if not _done(incident, IncidentStep.Kind.REVOKE):
        raise ValidationError("Revoke first: the exposed credential must stop working before its replacement "
                              "is issued.")
    if _done(incident, IncidentStep.Kind.REPLACE):
        raise ValidationError("The replacement is already recorded.")
    if incident.platform_account_id:
        raise ValidationError("Keyward's key for the account was replaced in the revoke step.")
    if incident.api_key_id:
        key = incident.api_key
        issued = key_services.api_key_rotate_now(actor=actor, key=key, request_uuid=request_uuid, client=client)
        if issued is not None:
            successor, notes = issued.key, f"Successor “{issued.key}” issued; its secret was shown once."
        else:
            successor = key.successors.filter(state__in=ApiKey.LIVE_STATES).order_by("-created_at").first()
            notes = f"The successor from an earlier rotation stays in use: “{successor}”." if successor else ""
        figures = {"successor": {"id": successor.pk, "name": successor.name, "hint": successor.hint,
                                 "environment": key.environment.name, "state": successor.state}
                   if successor is not None else None}
        _record_replacement(actor=actor, incident_pk=incident.pk, successor=successor, notes=notes, figures=figures)
        return issued
    if incident.secret_id:
        from secrets_app import services as secret_services

        if not new_value:
            raise ValidationError({"new_value": "Enter the new value of the secret (it is stored encrypted and "
                                                "never shown)."})
        with transaction.atomic():
            secret = secret_services.secret_update(actor=actor, secret=incident.secret, value=new_value)
            _record_replacement(actor=actor, incident_pk=incident.pk, successor=None,
                                notes=f"New value of secret “{secret.name}” stored and queued for the platform.",
                                figures={"secret": secret.name, "value_changed": True})
        return None
    raise ValidationError("This incident has no key or secret to replace.")


@transaction.atomic
def incident_assess(*, actor: Actor, incident: Incident, exposure_start: datetime,
                    exposure_end: datetime | None = None, notes: str = "") -> IncidentStep:
    """Step 3, the blast radius: sets the exposure window and records what the subject could reach and, for a key,
    what it spent during the window (credits and requests by day) as figures of that moment. Audited."""
    from detection.selectors import blast_radius

    incident = _lock(actor, incident)
    end = exposure_end or incident.exposure_end or timezone.now()
    if exposure_start is None or exposure_start > end:
        raise ValidationError({"exposure_start": "The exposure window must start before it ends."})
    before = {"exposure_start": incident.exposure_start, "exposure_end": incident.exposure_end}
    incident.exposure_start, incident.exposure_end = exposure_start, exposure_end or incident.exposure_end
    incident.full_clean()
    incident.save(update_fields=["exposure_start", "exposure_end", "updated_at"])
    figures = blast_radius(incident, exposure_start, end)
    step = _step(incident, IncidentStep.Kind.BLAST_RADIUS, actor, notes=notes, figures=figures)
    _audit(actor, incident, "assess", diff(before, {"exposure_start": incident.exposure_start,
                                                    "exposure_end": incident.exposure_end}))
    return step


@transaction.atomic
def incident_list_related(*, actor: Actor, incident: Incident, refs: list[str], notes: str = "") -> IncidentStep:
    """Step 4: the related secrets and keys to rotate, chosen among the candidates detection.selectors offers
    (same service account, same environment, the workspace's secrets). Records names and links, never values.
    Rotating them happens on their own pages; this step is the list to work through. Audited."""
    from detection.selectors import related_candidates

    incident = _lock(actor, incident)
    candidates = {c["ref"]: c for c in related_candidates(incident)}
    unknown = [r for r in refs if r not in candidates]
    if unknown:
        raise ValidationError(f"Not a candidate of this incident: {', '.join(unknown)}.")
    chosen = [{k: candidates[r][k] for k in ("ref", "kind", "id", "name", "reason")} for r in refs]
    step = _step(incident, IncidentStep.Kind.RELATED_SECRETS, actor, notes=notes,
                 figures={"to_rotate": chosen, "candidates": len(candidates)})
    _audit(actor, incident, "related", {"to_rotate": [c["ref"] for c in chosen]})
    return step


@transaction.atomic
def incident_postmortem(*, actor: Actor, incident: Incident, root_cause: str, controls: list[str],
                        controls_notes: str = "", notes: str = "") -> IncidentStep:
    """Step 5: root cause and the controls added (from CONTROLS, plus free text). Audited."""
    incident = _lock(actor, incident)
    root_cause = (root_cause or "").strip()
    if not root_cause:
        raise ValidationError({"root_cause": "Say how the credential escaped: the post-mortem's point is to "
                                             "close that path."})
    unknown = sorted(set(controls) - set(CONTROLS))
    if unknown:
        raise ValidationError({"controls": f"Unknown controls: {', '.join(unknown)}."})
    if not controls and not (controls_notes or "").strip():
        raise ValidationError({"controls": "Record at least one control added (or describe it)."})
    before = {"root_cause": incident.root_cause, "controls_added": incident.controls_added,
              "controls_notes": incident.controls_notes}
    incident.root_cause, incident.controls_notes = root_cause, (controls_notes or "").strip()
    incident.controls_added = [c for c in CONTROLS if c in set(controls)]
    incident.save(update_fields=["root_cause", "controls_added", "controls_notes", "updated_at"])
    step = _step(incident, IncidentStep.Kind.POSTMORTEM, actor, notes=notes,
                 figures={"root_cause": root_cause, "controls": [CONTROLS[c] for c in incident.controls_added],
                          "controls_notes": incident.controls_notes})
    _audit(actor, incident, "postmortem", diff(before, {"root_cause": incident.root_cause,
                                                        "controls_added": incident.controls_added,
                                                        "controls_notes": incident.controls_notes}))
    return step


@transaction.atomic
def incident_close(*, actor: Actor, incident: Incident, notes: str = "") -> Incident:
    """Close the incident once its post-mortem is written (and, for a key or secret, once it was revoked);
    resolves the alert it came from. Audited."""
    incident = _lock(actor, incident)
    missing = [label for kind, label in ((IncidentStep.Kind.POSTMORTEM, "the post-mortem"),)
               if not _done(incident, kind)]
    if incident.subject_kind != "none" and not _done(incident, IncidentStep.Kind.REVOKE):
        missing.insert(0, "the revoke step")
    if missing:
        raise ValidationError(f"Record {' and '.join(missing)} before closing.")
    old = incident.state
    incident.state, incident.closed_at, incident.closed_by = Incident.State.CLOSED, timezone.now(), _person(actor)
    incident.save(update_fields=["state", "closed_at", "closed_by", "updated_at"])
    _step(incident, IncidentStep.Kind.CLOSED, actor, notes=notes)
    _audit(actor, incident, "close", {"state": [old, Incident.State.CLOSED]})
    if incident.alert_id:
        alert = Alert.objects.get(pk=incident.alert_id)
        if alert.state != Alert.State.RESOLVED:
            alert_resolve(actor=actor, alert=alert)
    return incident


@transaction.atomic
def incident_note(*, actor: Actor, incident: Incident, text: str) -> IncidentStep:
    """Add a note to the timeline (also on a closed incident). Audited (without the text)."""
    incident = _lock(actor, incident, open_only=False)
    if not (text or "").strip():
        raise ValidationError({"text": "Write the note."})
    step = _step(incident, IncidentStep.Kind.NOTE, actor, notes=text)
    _audit(actor, incident, "note", {"step": step.pk})
    return step
