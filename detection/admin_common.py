"""Pieces shared by the detection admin pages (the workspace filter is project.admin_base.WorkspaceFilter)."""

from __future__ import annotations

from django.utils.html import format_html

SEVERITY_COLOURS = {"info": "#555", "low": "#1565c0", "medium": "#b8860b", "high": "#c62828", "critical": "#8b0000"}


def severity_badge(severity: str, label: str) -> str:
    return format_html('<strong style="color:{}">{}</strong>', SEVERITY_COLOURS.get(severity, "#555"), label)
