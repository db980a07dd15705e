"""Shared pieces of the emulator: the request record, error replies, validation and pagination helpers."""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import json
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from project.platform.scopes import PERMISSION_TYPES  # noqa: E402,F401  (re-exported)

# Every object in the emulator is owned by the one workspace admin the admin key stands for.
ACCESS_INFO: dict[str, Any] = {
    "is_creator": True,
    "creator_name": "Emulator Admin",
    "creator_email": "admin@emulator.invalid",
    "role": "admin",
    "anonymous_access_level_override": None,
    "access_source": "creator",
}

NO_BODY = object()  # a reply with no content (204, or a 200 the spec leaves empty)

_ALNUM_LOWER = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str = "", length: int = 28, alphabet: str = _ALNUM_LOWER) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def mixed_id(length: int = 20) -> str:
    """Legacy-style ids (e.g. ``J3Pbu5gP6NNKBscdCdwB``) for objects whose format the docs do not pin."""
    return random_id("", length, _ALNUM)


@dataclass
class Call:
    """One parsed request as the route handlers see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: httpx.Headers
    body: Any
    client_ip: str
    args: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by handlers; becomes an HTTP response with this status and JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def invalid(loc: Iterable[str | int], msg: str, type_: str = "value_error", input_: Any = None) -> ApiError:
    """A FastAPI-style 422. ``input`` is echoed like pydantic does, which is why clients must not."""
    item: dict[str, Any] = {"loc": list(loc), "msg": msg, "type": type_}
    if input_ is not None:
        item["input"] = input_
    return ApiError(422, {"detail": [item]})


def not_found(thing: str, message: str) -> ApiError:
    # The legacy shape, as observed live for agent_not_found.
    return ApiError(404, {"detail": {"status": f"{thing}_not_found", "message": message}})


def platform_error(status: int, type_: str, code: str, message: str, **extra: Any) -> ApiError:
    # The current envelope; ``status`` duplicates ``code`` as the docs describe the legacy field.
    return ApiError(status, {"detail": {"type": type_, "code": code, "status": code, "message": message, **extra}})


def require_object(body: Any, loc: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
    if body is None:
        raise invalid(loc, "Field required", "missing")
    if not isinstance(body, dict):
        raise invalid(loc, "Input should be a valid dictionary", "dict_type", body)
    return body


def check_str(
    obj: dict[str, Any], name: str, loc: tuple[str | int, ...], *, required: bool, nullable: bool = False
) -> None:
    if name not in obj:
        if required:
            raise invalid((*loc, name), "Field required", "missing")
        return
    value = obj[name]
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise invalid((*loc, name), "Input should be a valid string", "string_type", value)


def check_literal(obj: dict[str, Any], name: str, expected: str, loc: tuple[str | int, ...]) -> None:
    if name not in obj:
        raise invalid((*loc, name), "Field required", "missing")
    if obj[name] != expected:
        raise invalid((*loc, name), f"Input should be '{expected}'", "literal_error", obj[name])


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_bool(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise invalid(("query", name), "Input should be a valid boolean", "bool_parsing", raw)


def parse_page_size(query: dict[str, str], default: int | None) -> int | None:
    raw = query.get("page_size")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid(("query", "page_size"), "Input should be a valid integer", "int_parsing", raw) from None
    if not 1 <= size <= 100:
        raise invalid(("query", "page_size"), "Input should be between 1 and 100", "less_than_equal", raw)
    return size


def encode_cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        raise invalid(("query", "cursor"), "Invalid cursor", "value_error", cursor) from None
    if not isinstance(value, list):
        raise invalid(("query", "cursor"), "Invalid cursor", "value_error", cursor)
    return tuple(value)


def paginate(
    items: list[dict[str, Any]],
    sort_key: Callable[[dict[str, Any]], tuple[Any, ...]],
    *,
    descending: bool,
    page_size: int | None,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Keyset pagination: the cursor is the last item's sort key, so deletes between pages skip nothing."""
    # Each item's key is computed once, and the cursor is found by bisection: a large account's lists are read a
    # page at a time, and re-filtering every item per page made reading them quadratic.
    keyed = sorted(((sort_key(i), n) for n, i in enumerate(items)), reverse=descending)
    keys = [k for k, _ in keyed]
    start = 0
    if cursor:
        last = _decode_cursor(cursor)
        if descending:  # first position whose key is below the cursor's
            start = len(keys) - bisect.bisect_left(keys[::-1], last)
        else:  # first position whose key is above the cursor's
            start = bisect.bisect_right(keys, last)
    end = len(keyed) if page_size is None else min(len(keyed), start + page_size)
    page = [items[n] for _, n in keyed[start:end]]
    if end >= len(keyed):
        return page, None
    return page, encode_cursor(keys[end - 1])


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Dicts merge key by key; lists and scalars (None included) replace. Returns a new dict."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def normalise_networks(values: Any, loc: tuple[str | int, ...]) -> list[str]:
    """``allowed_ips``: 1..100 IPs or CIDRs; bare IPs become /32 or /128, as the platform documents."""
    if not isinstance(values, list):
        raise invalid(loc, "Input should be a valid list", "list_type", values)
    if not 1 <= len(values) <= 100:
        raise invalid(loc, "List should have between 1 and 100 items", "too_long" if values else "too_short")
    networks = []
    for index, raw in enumerate(values):
        try:
            networks.append(str(ipaddress.ip_network(str(raw), strict=False)))
        except ValueError:
            raise invalid((*loc, index), "Invalid IP address or CIDR range", "value_error", raw) from None
    return networks


def ip_allowed(client_ip: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in networks)


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
