"""Input rules of the broker: IP/CIDR allowlists and end-user ids."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError

MAX_NETWORKS = 100
END_USER_ID_MAX = 200
# The app's own user id: printable ASCII without spaces or quotes (ids, e-mail addresses, UUIDs, E.164).
_END_USER_ID = re.compile(rf"^[A-Za-z0-9._:@+\-=/|]{{1,{END_USER_ID_MAX}}}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_networks(values: Iterable[str]) -> list[str]:
    """IPv4/IPv6 addresses and CIDR ranges in canonical form (a bare address becomes /32 or /128,
    IPv6 compressed and lowercase), duplicates dropped, order kept.

    A range with host bits set (``10.0.0.1/8``) is refused rather than silently widened or narrowed:
    whoever typed it meant something, and we cannot know which.
    """
    result: list[str] = []
    errors: list[str] = []
    for raw in values:
        text = str(raw).strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                loose = ipaddress.ip_network(text, strict=False)
                errors.append(f"{text} has host bits set: did you mean {loose}?")
            else:
                errors.append(f"{text} is not an IPv4 or IPv6 address or CIDR range.")
            continue
        canonical = str(network)
        if canonical not in result:
            result.append(canonical)
    if errors:
        raise ValidationError(errors)
    if len(result) > MAX_NETWORKS:
        raise ValidationError(f"At most {MAX_NETWORKS} addresses or ranges.")
    return result


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
