"""Service accounts, their API keys (which also authenticate against the emulator) and usage."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from .common import (
    PERMISSION_TYPES,
    Call,
    check_str,
    invalid,
    is_int,
    mixed_id,
    normalise_networks,
    not_found,
    platform_error,
    random_id,
    require_object,
)
from .core import SERVICE_ACCOUNTS, WORKSPACE_READ, EmulatorCore, Reply, hash_key, route

USAGE_GROUP_BY = (
    "product_type", "model", "voice_id", "user_id", "fiat_currency", "fiat_charge_type", "region",
    "reporting_workspace_id", "request_source", "resource_id", "subresource_id", "request_queue_type",
    "voice_multiplier", "hashed_xi_api_key", "billing_group_id", "surface", "actor",
)  # fmt: skip
COST_USAGE_GROUP_BY = (
    "model", "request_source", "fiat_charge_type", "fiat_currency", "user_id", "hashed_xi_api_key", "region",
    "reporting_workspace_id", "billing_group_id", "product_type", "surface", "actor",
)  # fmt: skip
MIN_USAGE_TIME_MS = 1577836800000  # the spec's floor: 2020-01-01


def _check_permissions(value: Any, loc: tuple[str | int, ...], *, sentinels: tuple[str, ...]) -> None:
    if isinstance(value, str):
        if value not in sentinels:
            raise invalid(loc, f"Input should be a list of permissions or one of {sentinels}", "literal_error", value)
        return
    if not isinstance(value, list):
        raise invalid(loc, "Input should be a valid list", "list_type", value)
    for index, item in enumerate(value):
        if item not in PERMISSION_TYPES:
            raise invalid((*loc, index), "Input should be a valid PermissionType", "enum", item)


MIN_KEY_LIFETIME, MAX_KEY_LIFETIME = 15 * 60, 90 * 86400  # expires_at_unix bounds, as the SDK documents them


def _check_expiry(value: Any, now: int, *, sentinels: tuple[str, ...]) -> int | None | str:
    """``expires_at_unix``: None (never), an int 15 minutes to 90 days ahead, or one of the update sentinels."""
    if value is None or value in sentinels:
        return value
    if not is_int(value):
        raise invalid(("body", "expires_at_unix"), "Input should be a valid integer", "int_type", value)
    if not now + MIN_KEY_LIFETIME <= value <= now + MAX_KEY_LIFETIME:
        raise platform_error(400, "invalid_request_error", "invalid_expiry",
                             "expires_at_unix must be at least 15 minutes and at most 90 days in the future.")
    return int(value)


class AccountRoutes(EmulatorCore):
    """Service accounts and keys. Only a key's hash is kept; the secret leaves once, at creation."""

    #: How the key list shows a key with every permission, which the platform leaves UNCONFIRMED: "null" (what the
    #: schema suggests) or "list" (every PermissionType, in catalogue order). Keyward must read both as "all".
    all_permissions_listed_as = "null"
    #: "credits" (usage-by-product answers) or "cost" (it refuses; /v1/workspace/analytics/usage answers instead).
    billing = "credits"
    #: The usage answer's columns: "plain" (time in ms, credits, requests) or "labelled" (other names, date-time
    #: strings): the platform fixes neither, so Keyward must pick columns by type and unit.
    usage_answer_style = "plain"

    def _reset_resources(self) -> None:
        super()._reset_resources()
        self._service_accounts: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, dict[str, Any]] = {}
        self._key_ids_by_hash: dict[str, str] = {}
        self._usage: list[dict[str, Any]] = []

    def _object_counts(self) -> dict[str, int]:
        return {
            **super()._object_counts(),
            "service_accounts": len(self._service_accounts),
            "api_keys": len(self._keys),
            "usage_rows": len(self._usage),
        }

    def _key_for_hash(self, hashed: str) -> dict[str, Any] | None:
        key_id = self._key_ids_by_hash.get(hashed)
        return self._keys.get(key_id) if key_id else None

    def owns_key(self, presented: str) -> bool:
        """Whether a presented key belongs to this account (its admin key, or a key issued in it, even disabled)."""
        with self._lock:
            return presented == self.api_key or self._key_for_hash(hash_key(presented)) is not None

    def install_key(self, secret: str, *, service_account: str, name: str = "admin key",
                    permissions: Any = "all") -> dict[str, str]:
        """Put a known key into a service account (made if missing), as if issued in the dashboard: how a test
        or the demo gives Keyward a key it can see on the account's key list, and so rotate itself."""
        with self._lock:
            account = next((a for a in self._service_accounts.values() if a["name"] == service_account), None)
            if account is None:
                sa_id = random_id("", 28, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                account = {"service_account_user_id": sa_id, "name": service_account, "created_at_unix": self._now(),
                           "seq": self._next_seq()}
                self._service_accounts[account["service_account_user_id"]] = account
            key_id, hashed = mixed_id(), hash_key(secret)
            self._keys[key_id] = {
                "key_id": key_id, "service_account_user_id": account["service_account_user_id"], "name": name,
                "hint": secret[-4:], "hashed_xi_api_key": hashed, "permissions": permissions,
                "character_limit": None, "allowed_ips": [], "is_disabled": False,
                "third_party_disable_allowed": None, "created_at_unix": self._now(), "seq": self._next_seq(),
            }
            self._key_ids_by_hash[hashed] = key_id
            return {"service_account_user_id": account["service_account_user_id"], "key_id": key_id}

    def _service_account(self, sa_id: str) -> dict[str, Any]:
        account = self._service_accounts.get(sa_id)
        if account is None:
            raise not_found("service_account", "Service account not found")
        return account

    def _key(self, sa_id: str, key_id: str) -> dict[str, Any]:
        self._service_account(sa_id)
        key = self._keys.get(key_id)
        if key is None or key["service_account_user_id"] != sa_id:
            raise not_found("api_key", "API key not found")
        return key

    def _key_view(self, key: dict[str, Any]) -> dict[str, Any]:
        spent = sum(row["credits"] for row in self._usage if row["hashed_xi_api_key"] == key["hashed_xi_api_key"])
        return {
            "name": key["name"],
            "hint": key["hint"],
            "key_id": key["key_id"],
            "service_account_user_id": key["service_account_user_id"],
            "created_at_unix": key["created_at_unix"],
            "is_disabled": key["is_disabled"],
            # UNCONFIRMED how "all" is listed; the schema allows only a list or null (all_permissions_listed_as).
            "permissions": (list(PERMISSION_TYPES) if self.all_permissions_listed_as == "list" else None)
            if key["permissions"] == "all" else list(key["permissions"]),
            "disable_reason": key.get("disable_reason"),
            "character_limit": key["character_limit"],
            "character_count": int(spent),
            "hashed_xi_api_key": key["hashed_xi_api_key"],
            "allowed_ips": list(key["allowed_ips"]) if key["allowed_ips"] else None,
            "third_party_disable_allowed": key["third_party_disable_allowed"],
            "expires_at_unix": key.get("expires_at_unix"),
        }

    def _keys_of(self, sa_id: str) -> list[dict[str, Any]]:
        keys = [k for k in self._keys.values() if k["service_account_user_id"] == sa_id]
        return [self._key_view(k) for k in sorted(keys, key=lambda k: k["seq"])]

    # --- service accounts ------------------------------------------------------------------------

    @route("GET", "/v1/service-accounts", scopes=SERVICE_ACCOUNTS)
    def _sa_list(self, call: Call) -> Reply:
        accounts = sorted(self._service_accounts.values(), key=lambda a: a["seq"])
        return 200, {
            "service-accounts": [
                {
                    "service_account_user_id": a["service_account_user_id"],
                    "name": a["name"],
                    "created_at_unix": a["created_at_unix"],
                    "api-keys": self._keys_of(a["service_account_user_id"]),
                    "default_sharing_groups": [],
                }
                for a in accounts
            ]
        }

    @route("POST", "/v1/service-accounts", scopes=SERVICE_ACCOUNTS, create=True)
    def _sa_create(self, call: Call) -> Reply:
        body = require_object(call.body)
        check_str(body, "name", ("body",), required=True)
        groups = body.get("default_sharing_groups")
        if groups is not None and not isinstance(groups, list):
            raise invalid(("body", "default_sharing_groups"), "Input should be a valid list", "list_type", groups)
        if len(self._service_accounts) >= self.max_service_accounts:
            # The documented default limit is 20; the error body is UNCONFIRMED.
            raise platform_error(
                400,
                "validation_error",
                "service_account_limit_reached",
                f"A workspace can have up to {self.max_service_accounts} service accounts.",
            )
        sa_id = random_id("", 28, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        self._service_accounts[sa_id] = {
            "service_account_user_id": sa_id,
            "name": body["name"],
            "created_at_unix": self._now(),
            "seq": self._next_seq(),
        }
        return 200, {"service-account-user-id": sa_id}

    # --- API keys --------------------------------------------------------------------------------

    @route("GET", "/v1/service-accounts/{service_account_user_id}/api-keys", scopes=SERVICE_ACCOUNTS)
    def _key_list(self, call: Call) -> Reply:
        self._service_account(call.args["service_account_user_id"])
        return 200, {"api-keys": self._keys_of(call.args["service_account_user_id"])}

    @route(
        "POST",
        "/v1/service-accounts/{service_account_user_id}/api-keys",
        scopes=SERVICE_ACCOUNTS,
        create=True,
    )
    def _key_create(self, call: Call) -> Reply:
        sa_id = call.args["service_account_user_id"]
        self._service_account(sa_id)
        body = require_object(call.body)
        check_str(body, "name", ("body",), required=True)
        if "permissions" not in body:
            raise invalid(("body", "permissions"), "Field required", "missing")
        _check_permissions(body["permissions"], ("body", "permissions"), sentinels=("all",))
        limit = body.get("character_limit")
        if limit is not None and not is_int(limit):
            raise invalid(("body", "character_limit"), "Input should be a valid integer", "int_type", limit)
        ips = body.get("allowed_ips")
        networks = normalise_networks(ips, ("body", "allowed_ips")) if ips is not None else []
        third_party = body.get("third_party_disable_allowed")
        if third_party is not None and not isinstance(third_party, bool):
            raise invalid(("body", "third_party_disable_allowed"), "Input should be a valid boolean", "bool_type")
        expires = _check_expiry(body.get("expires_at_unix"), self._now(), sentinels=())
        secret = "sk_" + secrets.token_hex(24)  # sk_ + 48 hex, the observed format
        key_id = mixed_id()
        hashed = hash_key(secret)
        self._keys[key_id] = {
            "key_id": key_id,
            "service_account_user_id": sa_id,
            "name": body["name"],
            "hint": secret[-4:],
            "hashed_xi_api_key": hashed,
            "permissions": body["permissions"],
            "character_limit": limit,
            "allowed_ips": networks,
            "is_disabled": False,
            "third_party_disable_allowed": third_party,
            "created_at_unix": self._now(),
            "expires_at_unix": expires,
            "disable_reason": None,
            "seq": self._next_seq(),
        }
        self._key_ids_by_hash[hashed] = key_id
        return 200, {"xi-api-key": secret, "key_id": key_id}

    @route(
        "PATCH",
        "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}",
        scopes=SERVICE_ACCOUNTS,
    )
    def _key_update(self, call: Call) -> Reply:
        key = self._key(call.args["service_account_user_id"], call.args["api_key_id"])
        body = require_object(call.body)
        changes: dict[str, Any] = {}
        # Every field defaults to "no_update"; validate all of them before changing anything.
        enabled = body.get("is_enabled", "no_update")
        if enabled != "no_update":
            if not isinstance(enabled, bool):
                raise invalid(("body", "is_enabled"), "Input should be a valid boolean", "bool_type", enabled)
            changes["is_disabled"] = not enabled
        if body.get("name") is not None:
            check_str(body, "name", ("body",), required=True)
            changes["name"] = body["name"]
        permissions = body.get("permissions", "no_update")
        if permissions != "no_update":
            _check_permissions(permissions, ("body", "permissions"), sentinels=("all", "no_update"))
            changes["permissions"] = permissions
        limit = body.get("character_limit", "no_update")
        if limit != "no_update":
            if limit is not None and limit != "clear" and not is_int(limit):
                raise invalid(
                    ("body", "character_limit"),
                    "Input should be an integer, 'clear' or 'no_update'",
                    "union_error",
                    limit,
                )
            changes["character_limit"] = None if limit in (None, "clear") else limit
        ips = body.get("allowed_ips", "no_update")
        if ips != "no_update":
            changes["allowed_ips"] = [] if ips == "clear" else normalise_networks(ips, ("body", "allowed_ips"))
        third_party = body.get("third_party_disable_allowed", "no_update")
        if third_party != "no_update":
            if third_party != "clear" and not isinstance(third_party, bool):
                raise invalid(
                    ("body", "third_party_disable_allowed"),
                    "Input should be a boolean, 'clear' or 'no_update'",
                    "union_error",
                    third_party,
                )
            changes["third_party_disable_allowed"] = None if third_party == "clear" else third_party
        expires = body.get("expires_at_unix", "no_update")
        if expires != "no_update":
            checked = _check_expiry(expires, self._now(), sentinels=("clear",))
            changes["expires_at_unix"] = None if checked in (None, "clear") else checked
        if changes.get("is_disabled") is False:
            changes["disable_reason"] = None
        key.update(changes)
        return 200, {}

    @route(
        "POST",
        "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}/disable",
        scopes=SERVICE_ACCOUNTS,
    )
    def _key_disable(self, call: Call) -> Reply:
        key = self._key(call.args["service_account_user_id"], call.args["api_key_id"])
        key["is_disabled"] = True
        return 200, {}

    def disable_key_for(self, key_id: str, reason: str = "exposed_publicly") -> None:
        """The platform disables a key itself and says why in the key list's ``disable_reason`` (LockReason:
        trial_ended, subscription_downgrade, exposed_publicly, self_disabled), e.g. a key found in a public repo."""
        with self._lock:
            self._keys[key_id].update(is_disabled=True, disable_reason=reason)
            self.changes += 1

    @route(
        "DELETE",
        "/v1/service-accounts/{service_account_user_id}/api-keys/{api_key_id}",
        scopes=SERVICE_ACCOUNTS,
    )
    def _key_delete(self, call: Call) -> Reply:
        key = self._key(call.args["service_account_user_id"], call.args["api_key_id"])
        del self._keys[key["key_id"]]
        self._key_ids_by_hash.pop(key["hashed_xi_api_key"], None)
        return 200, {}

    # --- usage -----------------------------------------------------------------------------------

    def add_usage(self, rows: list[dict[str, Any]]) -> int:
        """Inject usage rows ``{hashed_xi_api_key, time_ms, credits, requests}``; returns the total held."""
        clean = [
            {
                "hashed_xi_api_key": str(r["hashed_xi_api_key"]),
                "time_ms": int(r["time_ms"]),
                "credits": float(r.get("credits", 0)),
                "requests": int(r.get("requests", 0)),
            }
            for r in rows
        ]
        with self._lock:
            self._usage.extend(clean)
            return len(self._usage)

    @route("GET", "/v1/user/subscription", scopes=("user_read",))
    def _subscription(self, call: Call) -> Reply:
        """The account's plan, as ExtendedSubscriptionResponseModel (what Keyward shows of an account)."""
        used = int(sum(float(row.get("credits") or 0) for row in self._usage))
        return 200, {
            "tier": self.tier, "character_count": used, "character_limit": 2_000_000,
            "max_character_limit_extension": None, "max_credit_limit_extension": 0,
            "can_extend_character_limit": False, "allowed_to_extend_character_limit": False,
            "next_character_count_reset_unix": None, "voice_slots_used": 0, "professional_voice_slots_used": 0,
            "professional_voice_slots_used_in_workspace": 0, "voice_limit": 160, "max_voice_add_edits": None,
            "voice_add_edit_counter": 0, "professional_voice_limit": 1, "can_extend_voice_limit": False,
            "can_use_instant_voice_cloning": True, "can_use_professional_voice_cloning": True,
            "currency": "usd", "current_overage": {"amount": "0.00", "currency": "usd"}, "status": "active",
            "billing_period": "monthly_period",
            "character_refresh_period": "monthly_period", "next_invoice": None, "open_invoices": [],
            "has_open_invoices": False, "pending_change": None, "has_used_starter_coupon_on_account": False,
            "has_used_creator_coupon_on_account": False,
        }

    def _check_usage_times(self, body: dict[str, Any]) -> None:
        for name in ("start_time", "end_time"):
            if name not in body:
                raise invalid(("body", name), "Field required", "missing")
            if not is_int(body[name]) or body[name] < MIN_USAGE_TIME_MS:
                raise invalid(
                    ("body", name),
                    f"Input should be an integer >= {MIN_USAGE_TIME_MS}",
                    "greater_than_equal",
                    body[name],
                )

    def _usage_totals(self, body: dict[str, Any], group_by: list[str], interval: int) -> list[list[Any]]:
        # Filters and time_zone are accepted and ignored: buckets are UTC-aligned multiples of the interval.
        bucket_ms = interval * 1000
        totals: dict[tuple[Any, ...], list[float]] = {}
        for row in self._usage:
            if not body["start_time"] <= row["time_ms"] < body["end_time"]:
                continue
            group = (row["time_ms"] // bucket_ms * bucket_ms, *(row.get(g) for g in group_by))
            credits_requests = totals.setdefault(group, [0.0, 0])
            credits_requests[0] += row["credits"]
            credits_requests[1] += row["requests"]
        ordered = sorted(totals.items(), key=lambda item: (item[0][0], *(str(p or "") for p in item[0][1:])))
        return [[*group, credits, int(requests)] for group, (credits, requests) in ordered]

    @staticmethod
    def _iso(time_ms: int) -> str:
        return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")

    @route("POST", "/v1/workspace/analytics/query/usage-by-product-over-time", scopes=WORKSPACE_READ)
    def _usage_query(self, call: Call) -> Reply:
        body = require_object(call.body)
        self._check_usage_times(body)
        interval = body.get("interval_seconds", 60)
        if not is_int(interval) or interval < 1:
            raise invalid(
                ("body", "interval_seconds"),
                "Input should be an integer >= 1",
                "greater_than_equal",
                interval,
            )
        group_by = body.get("group_by") or []
        if not isinstance(group_by, list) or any(g not in USAGE_GROUP_BY for g in group_by):
            raise invalid(("body", "group_by"), "Input should be a list of supported columns", "enum", group_by)
        if self.billing == "cost":
            # UNCONFIRMED code and wording; the SDK says only that cost-billed workspaces get an error here.
            raise platform_error(400, "invalid_request_error", "cost_billed_workspace",
                                 "This workspace is billed by cost; usage by product over time is not available. "
                                 "Use /v1/workspace/analytics/usage instead.")
        rows = self._usage_totals(body, group_by, interval)
        if self.usage_answer_style == "labelled":
            # Column names are not fixed by the platform, and time cells may be date-time strings: read by type/unit.
            return 200, {
                "columns": ["time_bucket", *group_by, "credits_used", "request_count"],
                "column_types": ["DateTime", *(["String"] * len(group_by)), "Float", "Int"],
                "rows": [[self._iso(r[0]), *r[1:]] for r in rows],
                "column_units": [None, *([None] * len(group_by)), "credits", None],
            }
        # UNCONFIRMED column names: time (ms) first, then each group_by column, then credits and requests.
        return 200, {
            "columns": ["time", *group_by, "credits", "requests"],
            "column_types": ["Int", *(["String"] * len(group_by)), "Float", "Int"],
            "rows": rows,
            "column_units": ["ms", *([None] * len(group_by)), "credits", None],
        }

    @route("POST", "/v1/workspace/analytics/usage", scopes=WORKSPACE_READ)
    def _cost_usage_query(self, call: Call) -> Reply:
        """Cost-billed workspaces' usage (BodyGetWorkspaceCostUsage): whole UTC-day buckets, cost and charge count."""
        body = require_object(call.body)
        self._check_usage_times(body)
        interval = body.get("interval_seconds")
        if not is_int(interval) or interval < 86400 or interval % 86400:
            raise invalid(("body", "interval_seconds"), "Input should be a whole number of days in seconds",
                          "value_error", interval)
        group_by = body.get("group_by") or []
        if not isinstance(group_by, list) or any(g not in COST_USAGE_GROUP_BY for g in group_by):
            raise invalid(("body", "group_by"), "Input should be a list of supported columns", "enum", group_by)
        if self.billing != "cost":
            raise platform_error(400, "invalid_request_error", "credit_billed_workspace",
                                 "This workspace is billed in credits; use "
                                 "/v1/workspace/analytics/query/usage-by-product-over-time instead.")
        rows = self._usage_totals(body, group_by, interval)
        # One unit of cost per 1,000 credits: the emulator's made-up price.
        return 200, {
            "columns": ["date", *group_by, "total_cost", "total_charge_count"],
            "column_types": ["DateTime", *(["String"] * len(group_by)), "Float", "Float"],
            "rows": [[self._iso(r[0]), *r[1:-2], round(r[-2] / 1000, 6), float(r[-1])] for r in rows],
            "column_units": [None, *([None] * len(group_by)), "usd", None],
        }
