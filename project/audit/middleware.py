from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from project import context

request_logger = logging.getLogger("keyward.request")


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None


class RequestContextMiddleware:
    """Gives every request an id and makes it and the caller's address available to the audit trail."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ctx = context.RequestContext(
            request_id=context.new_request_id(),
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:200],
        )
        request.request_id = ctx.request_id  # type: ignore[attr-defined]
        token = context.activate(ctx)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            # Query strings are left out: they can carry tokens (a signed URL's signature, say).
            request_logger.info("%s %s %s", request.method, request.path, response.status_code, extra={
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1), "ip": ctx.ip,
                "user_id": getattr(getattr(request, "user", None), "pk", None)})
        finally:
            context.deactivate(token)
        response["X-Request-ID"] = ctx.request_id
        return response
