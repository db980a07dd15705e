"""The security posture dashboard (linked from the admin index): what a security admin opens first every morning."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from detection.dashboard import posture, visible_workspaces
from project import access


def posture_dashboard(request: HttpRequest) -> HttpResponse:
    """GET ?workspace=<id> narrows to one of the person's workspaces (another workspace answers 404)."""
    allowed = access.workspaces_with(request.user, "workspace.view")
    if allowed is not None and not allowed:
        raise PermissionDenied
    workspaces = list(visible_workspaces(request.user))
    selected = None
    choice = request.GET.get("workspace", "")
    if choice:
        selected = next((w for w in workspaces if str(w.pk) == choice), None)
        if selected is None:
            raise Http404("No such workspace.")
    elif len(workspaces) == 1:
        selected = workspaces[0]
    context = {**admin.site.each_context(request), "title": "Security posture",
               "posture": posture(request.user, selected, workspaces)}
    return TemplateResponse(request, "admin/detection/dashboard.html", context)
