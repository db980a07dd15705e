"""Pieces shared by the detection admin pages (the workspace filter is project.admin_base.WorkspaceFilter)."""

from __future__ import annotations

from project.admin_base import badge

SEVERITY_TONES = {"info": "quiet", "low": "info", "medium": "warn", "high": "bad", "critical": "critical"}


def severity_badge(severity: str, label: str) -> str:
    return badge(label, SEVERITY_TONES.get(severity, "quiet"), tag="strong")
