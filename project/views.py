"""Project-wide error pages."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The refusal page (handler403): what was missing, in which workspace, and a way back; never a bare 403."""
    back = request.META.get("HTTP_REFERER", "")
    if not back or back == request.build_absolute_uri() or not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("admin:index")
    context = {
        **admin.site.each_context(request),
        "title": "You cannot do this here",
        "reason": str(exception) if exception and str(exception) else "You do not have the permission this page "
                                                                       "needs.",
        "permission": getattr(exception, "permission", None),
        "workspace_name": getattr(exception, "workspace_name", None),
        "back_url": back,
    }
    response = TemplateResponse(request, "403.html", context, status=403)
    return response.render()
