"""Input rules of the broker: IP/CIDR allowlists and end-user ids."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError

END_USER_ID_MAX = 200
# The app's own user id: printable ASCII without spaces or quotes (ids, e-mail addresses, UUIDs, E.164).
_END_USER_ID = re.compile(rf"^[A-Za-z0-9._:@+\-=/|]{{1,{END_USER_ID_MAX}}}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def address_allowed(networks: list[str], address: str | None) -> bool:
    """True when the list is empty (no restriction) or the address is inside one of the networks.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a dual-stack socket reports) is matched as
    the IPv4 address it carries. No address, or an unparseable one, is refused when a list exists.
    """
    if not networks:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in parse_networks(networks))


def validate_end_user_id(value: str) -> None:
    if not _END_USER_ID.match(value or ""):
        raise ValidationError(
            f"end_user_id must be 1–{END_USER_ID_MAX} characters of letters, digits and . _ : @ + - = / |")
