"""`/healthz`: is this process able to do its job? Checks the database, the broker and the platform."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    from project.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _platform() -> None:
    from project.platform.client import accounts_with_workspaces, client_for_account

    # One cheap authenticated read per platform account: proves reachability and that its key is accepted. The
    # first failure is reported (its type only); each account's own state is under "platform_accounts".
    failures = []
    for account_id in accounts_with_workspaces():
        try:
            client_for_account(account_id).list_agents(page_size=1)
        except Exception as exc:  # noqa: PERF203 - one account's failure must not hide the others' checks
            failures.append(exc)
    if failures:
        raise failures[0]


def _accounts() -> list[dict[str, object]]:
    from project.platform.client import describe_accounts

    return describe_accounts()


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker, "platform": _platform}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, 503 otherwise; each check reports ok or the error's type (never its text,
    which could carry a connection string)."""
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:  # a health check reports every failure, whatever its type
            results[name] = {"ok": False, "error": type(exc).__name__}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    healthy = all(r["ok"] for r in results.values())
    body: dict[str, object] = {"status": "ok" if healthy else "degraded", "checks": results}
    try:
        body["platform_accounts"] = _accounts()  # name, state, key age, rotation due: never a key or its hint
    except Exception as exc:  # the database check above already says why
        body["platform_accounts"] = {"error": type(exc).__name__}
    if settings.DEBUG:
        body["platform_api_url"] = settings.PLATFORM_API_URL
    return JsonResponse(body, status=200 if healthy else 503)
