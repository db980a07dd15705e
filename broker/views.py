"""The broker's HTTP API: JSON in, JSON out, no cookies, no session auth, no CSRF (callers are servers).

Every answer carries ``Cache-Control: no-store``; refusals are ``{"error": <code>, "message": <text>}``
with the documented status (README, "Session broker API").
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from agents import webhook
from broker import services
from broker.auth import bearer_token, broker_key_authenticate
from broker.services.initiation import WEBHOOK_ACTOR
from broker.services.refresh import REFRESH_ACTOR
from broker.validators import validate_end_user_id
from project.audit.middleware import client_ip

logger = logging.getLogger(__name__)

MAX_BODY = 4096  # a session request is two short fields
MAX_WEBHOOK_BODY = 256 * 1024  # the platform's call carries its own call data and dynamic variables
NO_STORE = "no-store"
UNAUTHORIZED_MESSAGE = "A valid broker key is required: Authorization: Bearer kw_…"
# One body and one header set for every 401, prepared once: missing, malformed, unknown, revoked and expired keys
# (and keys of a disabled service account) are indistinguishable by content.
_UNAUTHORIZED = json.dumps({"error": "invalid_key", "message": UNAUTHORIZED_MESSAGE}).encode()


class BadRequest(Exception):
    pass


def error(status: int, code: str, message: str, *, retry_after: int | None = None,
          headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse({"error": code, "message": message}, status=status)
    response["Cache-Control"] = NO_STORE
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def unauthorized() -> HttpResponse:
    response = HttpResponse(_UNAUTHORIZED, status=401, content_type="application/json")
    response["Cache-Control"] = NO_STORE
    response["WWW-Authenticate"] = 'Bearer realm="keyward", error="invalid_token"'
    return response


def _json_object(request: HttpRequest, limit: int = MAX_BODY) -> dict[str, Any]:
    body = request.body
    if len(body) > limit:
        raise BadRequest(f"The body must be at most {limit} bytes.")
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    return data


def _session_request(data: dict[str, Any]) -> tuple[str, str]:
    unknown = sorted(set(data) - {"end_user_id", "mode"})
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(unknown)}.")
    mode = data.get("mode", "signed_url")
    if mode not in services.sessions.MODES:
        raise BadRequest("mode must be \"signed_url\" or \"conversation_token\".")
    end_user_id = data.get("end_user_id")
    if end_user_id is None:
        return mode, ""
    if not isinstance(end_user_id, str):
        raise BadRequest("end_user_id must be a string.")
    try:
        validate_end_user_id(end_user_id)
    except ValidationError as exc:  # its message states the rule and echoes no input
        raise BadRequest(" ".join(exc.messages)) from None
    return mode, end_user_id


def _token_request(data: dict[str, Any]) -> str:
    unknown = sorted(set(data) - {"end_user_id"})
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(unknown)}.")
    end_user_id = data.get("end_user_id")
    if end_user_id is None:
        return ""
    if not isinstance(end_user_id, str):
        raise BadRequest("end_user_id must be a string.")
    try:
        validate_end_user_id(end_user_id)
    except ValidationError as exc:  # its message states the rule and echoes no input
        raise BadRequest(" ".join(exc.messages)) from None
    return end_user_id


def _method_not_allowed() -> JsonResponse:
    return error(405, "method_not_allowed", "Use POST.", headers={"Allow": "POST"})


@sensitive_variables("key", "grant", "body")
def _broker_call(request: HttpRequest, grant_for: Any) -> HttpResponse:
    """A call from an app backend with a broker key (a session, a single-use token): 405, 401, 400 for a malformed
    body, the service's refusal, 503 (fail closed) when the key store or the counters are down, else the grant,
    never cached. ``grant_for(key, payload, ip)`` reads the body (BadRequest) and asks the service."""
    if request.method != "POST":
        return _method_not_allowed()
    try:
        key = broker_key_authenticate(bearer_token(request.META.get("HTTP_AUTHORIZATION")))
        if key is None:
            return unauthorized()
        try:
            payload = _json_object(request)
        except BadRequest as exc:
            return error(400, "invalid_request", str(exc))
        try:
            grant = grant_for(key, payload, client_ip(request))
        except BadRequest as exc:
            return error(400, "invalid_request", str(exc))
    except services.SessionRefused as refusal:
        if refusal.status == 401:
            return unauthorized()
        return error(refusal.status, refusal.code, refusal.message, retry_after=refusal.retry_after)
    except DatabaseError as exc:
        # Fail closed: without the key store or the counters nothing is granted.
        logger.error("session broker store unavailable: %s", type(exc).__name__)
        return error(503, "unavailable", "Keyward cannot check this request right now; try again shortly.",
                     retry_after=5)
    body = JsonResponse(grant.as_json(), status=200)
    body["Cache-Control"] = NO_STORE
    body["Pragma"] = "no-cache"
    return body


@csrf_exempt
def session(request: HttpRequest, agent: str) -> HttpResponse:
    """POST /api/v1/agents/<agent>/session: a signed URL or conversation token for the key's environment."""

    def grant_for(key: Any, payload: dict[str, Any], ip: str | None) -> Any:
        mode, end_user_id = _session_request(payload)
        return services.session_open(actor=key.service_account, key=key, agent_ref=agent, mode=mode,
                                     end_user_id=end_user_id, ip=ip)

    return _broker_call(request, grant_for)


@csrf_exempt
def single_use_token(request: HttpRequest, token_type: str) -> HttpResponse:
    """POST /api/v1/tokens/<token_type>: a single-use token for a speech client, minted through the workspace's
    platform account. The session API's shape, refusals and headers."""

    def grant_for(key: Any, payload: dict[str, Any], ip: str | None) -> Any:
        return services.single_use_token_mint(actor=key.service_account, key=key, token_type=token_type,
                                              end_user_id=_token_request(payload), ip=ip)

    return _broker_call(request, grant_for)


@sensitive_variables("answer")
def _platform_webhook(request: HttpRequest, answer_for: Any, actor: Any, store: str) -> HttpResponse:
    """A call from the platform authenticated by the agent's webhook secret header (the credential webhook and the
    token-refresh tool): 405, 401, 400 for a malformed body, the service's refusal, 503 when the store is down."""
    if request.method != "POST":
        return _method_not_allowed()
    agent_uuid = webhook.verify(request.META.get(webhook.META_HEADER))
    if agent_uuid is None:
        return error(401, "invalid_webhook_secret", f"A valid {webhook.HEADER} header is required.")
    try:
        payload = _json_object(request, MAX_WEBHOOK_BODY)
    except BadRequest as exc:
        return error(400, "invalid_request", str(exc))
    try:
        answer = answer_for(actor=actor, agent_uuid=agent_uuid, payload=payload)
    except services.WebhookRefused as refusal:
        return error(refusal.status, refusal.code, refusal.message)
    except DatabaseError as exc:
        logger.error("%s store unavailable: %s", store, type(exc).__name__)
        return error(503, "unavailable", "Keyward cannot answer right now.", retry_after=5)
    response = JsonResponse(answer, status=200)
    response["Cache-Control"] = NO_STORE
    return response


@csrf_exempt
def token_refresh(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/platform/token-refresh: the platform's token-refresh tool call during a conversation."""
    return _platform_webhook(request, services.token_refresh_answer, REFRESH_ACTOR, "token refresh")


@csrf_exempt
def conversation_initiation(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/platform/conversation-initiation: the platform asks for an end user's client data."""
    return _platform_webhook(request, services.conversation_initiation_answer, WEBHOOK_ACTOR, "credential webhook")
