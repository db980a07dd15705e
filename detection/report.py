"""An incident as a Markdown post-mortem: summary, timeline, blast radius, related secrets, root cause, controls.
Built only from recorded figures and names: no secret value was ever stored, so none can appear."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from detection.incidents import CONTROLS
from detection.models import Incident, IncidentStep
from detection.selectors import latest_steps, timeline


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _cell(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def incident_markdown(incident: Incident) -> str:
    """The whole incident as Markdown (UTC times)."""
    steps = latest_steps(incident)
    lines = [f"# Incident #{incident.pk}: {incident.title}", "",
             f"- **Workspace:** {incident.workspace}",
             f"- **State:** {incident.get_state_display()}",
             f"- **Severity:** {incident.get_severity_display()}",
             f"- **Source:** {incident.get_source_display()}"
             + (f" (alert: {incident.alert.title})" if incident.alert_id and incident.alert else ""),
             f"- **Subject:** {incident.subject_repr or '—'}",
             f"- **Exposure window:** {_when(incident.exposure_start)} → {_when(incident.exposure_end)}",
             f"- **Opened:** {_when(incident.created_at)} by {incident.opened_by or 'system'}"]
    if incident.closed_at:
        lines.append(f"- **Closed:** {_when(incident.closed_at)} by {incident.closed_by or 'system'}")
    if incident.replacement_key_id:
        lines.append(f"- **Replacement:** {incident.replacement_key}")
    if incident.summary:
        lines += ["", "## Summary", "", incident.summary]

    lines += ["", "## Timeline", "", "| when (UTC) | who | what | notes |", "|---|---|---|---|"]
    for event in timeline(incident):
        lines.append(f"| {_when(event.at)} | {_cell(event.who)} | {_cell(event.what)} | {_cell(event.notes)} |")

    radius = steps.get(IncidentStep.Kind.BLAST_RADIUS)
    lines += ["", "## Blast radius", ""]
    if radius is None:
        lines.append("_Not assessed._")
    else:
        figures = radius.figures
        window = figures.get("window", {})
        lines.append(f"Assessed {_when(radius.created_at)} by {radius.actor_label} for the window "
                     f"{_when(window.get('start'))} → {_when(window.get('end'))} ({window.get('hours')} h).")
        lines += [""] + [f"- {item}" for item in figures.get("reach", [])]
        usage = figures.get("usage")
        if usage is not None:
            lines += ["", "| day (UTC) | credits | requests |", "|---|---:|---:|"]
            lines += [f"| {d['day']} | {_number(d['credits'])} | {_number(d['requests'])} |" for d in usage["by_day"]]
            lines += [f"| **total** | **{_number(usage['total_credits'])}** | **{_number(usage['total_requests'])}** |",
                      "", "Days are whole UTC days touching the window; inside the window itself (hourly data): "
                      f"{_number(usage['hourly_credits'])} credits, {_number(usage['hourly_requests'])} requests."]
        for tool in figures.get("used_by_tools", []):
            lines.append(f"- tool `{tool['tool']}` sends it in header `{tool['header']}` to {tool['url']}")
        if radius.notes:
            lines += ["", radius.notes]

    related = steps.get(IncidentStep.Kind.RELATED_SECRETS)
    lines += ["", "## Related secrets to rotate", ""]
    if related is None:
        lines.append("_Not listed._")
    else:
        chosen = related.figures.get("to_rotate", [])
        lines += [f"- {item['kind'].replace('_', ' ')} **{_cell(item['name'])}**: {_cell(item['reason'])}"
                  for item in chosen] or ["None needed."]
        if related.notes:
            lines += ["", related.notes]

    lines += ["", "## Root cause", "", incident.root_cause or "_Not written yet._",
              "", "## Controls added", ""]
    controls = [CONTROLS[c] for c in incident.controls_added if c in CONTROLS]
    lines += [f"- {c}" for c in controls] or ([] if incident.controls_notes else ["_None recorded._"])
    if incident.controls_notes:
        lines += ["", incident.controls_notes]
    return "\n".join(lines) + "\n"
