"""Workspace auth connections (``/v1/workspace/auth-connections``): credentials stored, never returned.

The five kinds Keyward manages (OAuth2 client credentials, OAuth2 JWT, basic, bearer, custom header) with the
request and response shapes of the platform's OpenAPI. Private-key JWT and mTLS are refused (Keyward does not
create them). Updates exist for four kinds; custom-header connections have no update request in the spec.
"""

from __future__ import annotations

import copy
from typing import Any

from .common import Call, check_str, invalid, is_int, not_found, random_id, require_object
from .core import EmulatorCore, Reply, route

# UNCONFIRMED: the scopes these endpoints need; emulated like the other workspace-level resources.
AUTH_READ = ("workspace_read", "workspace_write")
AUTH_WRITE = ("workspace_write",)

ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512")
# auth_type -> (required strings besides name/provider, optional fields, secret fields never returned)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "oauth2_client_credentials": (("client_id", "token_url", "client_secret"),
                                  ("scopes", "extra_params", "basic_auth_in_header", "custom_headers"),
                                  ("client_secret",)),
    "oauth2_jwt": (("issuer", "audience", "subject", "token_url", "secret_key"),
                   ("algorithm", "key_id", "expiration_seconds", "extra_params", "scopes", "token_response_field"),
                   ("secret_key",)),
    "basic_auth": (("username", "password"), (), ("password",)),
    "bearer_auth": (("token",), (), ("token",)),
    "custom_header_auth": (("header_name", "token"), (), ("token",)),
}
# The fields each Update*Request carries (no name, no token URL): anything else in a PATCH body is ignored,
# as the platform's models ignore unknown fields.
UPDATE_FIELDS: dict[str, tuple[str, ...]] = {
    "oauth2_client_credentials": ("client_id", "scopes", "extra_params", "basic_auth_in_header", "client_secret",
                                  "custom_headers"),
    "oauth2_jwt": ("algorithm", "key_id", "issuer", "audience", "subject", "expiration_seconds", "extra_params",
                   "scopes", "token_response_field", "secret_key"),
    "basic_auth": ("username", "password"),
    "bearer_auth": ("token",),
}
UPDATABLE = tuple(UPDATE_FIELDS)
DEFAULTS: dict[str, dict[str, Any]] = {
    "oauth2_client_credentials": {"scopes": [], "extra_params": {}, "basic_auth_in_header": False,
                                  "custom_headers": {}},
    "oauth2_jwt": {"algorithm": "HS256", "key_id": None, "expiration_seconds": 3600, "extra_params": {},
                   "scopes": [], "token_response_field": "access_token"},
}


class AuthConnectionRoutes(EmulatorCore):
    """Auth connections, kept apart from secrets and tools; ``auth_connection_secret()`` is for tests only."""

    def _reset_resources(self) -> None:
        super()._reset_resources()
        self._auth_connections: dict[str, dict[str, Any]] = {}

    def _object_counts(self) -> dict[str, int]:
        return {**super()._object_counts(), "auth_connections": len(self._auth_connections)}

    def auth_connection_secret(self, connection_id: str) -> dict[str, Any]:
        """The stored credential fields, for tests asserting what arrived; no HTTP route exposes them."""
        with self._lock:
            stored = self._auth_connections[connection_id]
            return {k: stored["fields"][k] for k in KINDS[stored["auth_type"]][2]}

    def auth_connections_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._auth_view(c) for c in sorted(self._auth_connections.values(), key=lambda c: c["seq"])]

    def _auth_view(self, stored: dict[str, Any]) -> dict[str, Any]:
        secret = KINDS[stored["auth_type"]][2]
        view = {"name": stored["name"], "auth_type": stored["auth_type"], "provider": stored["provider"],
                "id": stored["id"],
                "used_by": {"tools": [], "mcp_servers": [], "integration_connections": []},
                "status": "active", "status_detail": None, "status_updated_at": None}
        view.update({k: copy.deepcopy(v) for k, v in stored["fields"].items() if k not in secret})
        return view

    def _check_auth_fields(self, body: dict[str, Any], auth_type: str, *, create: bool) -> dict[str, Any]:
        loc: tuple[str | int, ...] = ("body", auth_type)
        required, optional, _ = KINDS[auth_type]
        fields: dict[str, Any] = {}
        for name in required:
            if create or body.get(name) is not None:
                check_str(body, name, loc, required=create)
                fields[name] = body[name]
        for name in optional:
            value = body.get(name)
            if value is None:
                continue
            if name in ("scopes",) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise invalid((*loc, name), "Input should be a valid list", "list_type", value)
            if name in ("extra_params", "custom_headers") and not (
                    isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                raise invalid((*loc, name), "Input should be a valid dictionary", "dict_type", value)
            if name == "algorithm" and value not in ALGORITHMS:
                raise invalid((*loc, name), f"Input should be one of {ALGORITHMS}", "enum", value)
            if name == "expiration_seconds" and not (is_int(value) and 60 <= value <= 86400):
                raise invalid((*loc, name), "Input should be between 60 and 86400", "less_than_equal", value)
            if name == "token_response_field" and value not in ("access_token", "id_token"):
                raise invalid((*loc, name), "Input should be 'access_token' or 'id_token'", "enum", value)
            if name == "basic_auth_in_header" and not isinstance(value, bool):
                raise invalid((*loc, name), "Input should be a valid boolean", "bool_type", value)
            if name == "key_id" and not isinstance(value, str):
                raise invalid((*loc, name), "Input should be a valid string", "string_type", value)
            fields[name] = copy.deepcopy(value)
        return fields

    @staticmethod
    def _auth_type(body: dict[str, Any], allowed: tuple[str, ...]) -> str:
        auth_type = body.get("auth_type")
        if auth_type not in allowed:
            raise invalid(("body", "auth_type"), f"Input tag does not match any of the expected tags: {allowed}",
                          "union_tag_invalid", auth_type)
        return str(auth_type)

    @route("POST", "/v1/workspace/auth-connections", scopes=AUTH_WRITE, create=True)
    def _auth_connection_create(self, call: Call) -> Reply:
        body = require_object(call.body)
        auth_type = self._auth_type(body, tuple(KINDS))
        check_str(body, "name", ("body", auth_type), required=True)
        check_str(body, "provider", ("body", auth_type), required=True)
        fields = {**copy.deepcopy(DEFAULTS.get(auth_type, {})),
                  **self._check_auth_fields(body, auth_type, create=True)}
        connection_id = random_id("auth_")
        self._auth_connections[connection_id] = {
            "id": connection_id, "name": body["name"], "provider": body["provider"], "auth_type": auth_type,
            "fields": fields, "seq": self._next_seq(),
        }
        return 200, self._auth_view(self._auth_connections[connection_id])

    @route("GET", "/v1/workspace/auth-connections", scopes=AUTH_READ)
    def _auth_connection_list(self, call: Call) -> Reply:
        ordered = sorted(self._auth_connections.values(), key=lambda c: c["seq"])
        return 200, {"auth_connections": [self._auth_view(c) for c in ordered]}

    @route("PATCH", "/v1/workspace/auth-connections/{auth_connection_id}", scopes=AUTH_WRITE)
    def _auth_connection_update(self, call: Call) -> Reply:
        stored = self._auth_connections.get(call.args["auth_connection_id"])
        if stored is None:
            raise not_found("auth_connection", "Auth connection not found")
        body = require_object(call.body)
        auth_type = self._auth_type(body, UPDATABLE)
        if auth_type != stored["auth_type"]:
            raise invalid(("body", "auth_type"), f"This connection is a {stored['auth_type']} connection",
                          "value_error", auth_type)
        if body.get("provider") is not None:
            check_str(body, "provider", ("body", auth_type), required=True)
            stored["provider"] = body["provider"]
        allowed = {k: v for k, v in body.items() if k in UPDATE_FIELDS[auth_type]}
        stored["fields"].update(self._check_auth_fields(allowed, auth_type, create=False))
        return 200, self._auth_view(stored)

    @route("DELETE", "/v1/workspace/auth-connections/{auth_connection_id}", scopes=AUTH_WRITE)
    def _auth_connection_delete(self, call: Call) -> Reply:
        if self._auth_connections.pop(call.args["auth_connection_id"], None) is None:
            raise not_found("auth_connection", "Auth connection not found")
        return 200, {}
