"""IP allowlists: one normaliser for every list of addresses and CIDR ranges Keyward keeps (API keys on the
platform, broker keys in Keyward), so both read the same input the same way."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.core.exceptions import ValidationError

MAX_NETWORKS = 100  # the platform accepts 1..100 entries per key


def normalise_networks(values: Any, *, limit: int = MAX_NETWORKS) -> list[str]:
    """IPv4/IPv6 addresses and CIDR ranges as normalised networks, in the order given: a bare address becomes /32
    or /128, IPv6 is compressed and lowercase, an IPv4-mapped IPv6 address or range (::ffff:192.0.2.7) becomes
    its IPv4 form, so it matches the IPv4 clients it names.

    Refuses, each with the entry in the message: prefixes out of range, host bits set (10.0.0.1/24 is ambiguous:
    the network or the host?), scope ids, duplicates after normalisation (a second entry for the same range is a
    typo, never a wider limit), the whole internet (/0), and more than `limit` entries (the platform's 100).
    """
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise ValidationError("The allowlist must be a list of IP addresses or CIDR ranges.")
    errors: list[str] = []
    seen: dict[str, str] = {}
    result: list[str] = []
    for raw in values:
        text = str(raw).strip()
        if not text:
            continue
        if "%" in text:
            errors.append(f"{text}: scoped addresses (with %zone) cannot be allowlisted.")
            continue
        address, _, prefix = text.partition("/")
        try:
            host = ipaddress.ip_address(address)
        except ValueError:
            errors.append(f"{text}: “{address}” is not an IPv4 or IPv6 address.")
            continue
        if prefix:
            limit = host.max_prefixlen
            if not prefix.isdigit() or not 0 <= int(prefix) <= limit:
                errors.append(f"{text}: an IPv{host.version} prefix length is a number from 0 to {limit}.")
                continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            loose = ipaddress.ip_network(text, strict=False)
            errors.append(f"{text} has host bits set: write {loose} for the whole range, or "
                          f"{host}/{host.max_prefixlen} for that one address.")
            continue
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        if network.prefixlen == 0:
            errors.append(f"{text} allows every address; leave the allowlist empty for no network limit.")
            continue
        normal = str(network)
        if normal in seen:
            errors.append(f"{text} is listed twice (same as {seen[normal]}).")
            continue
        seen[normal] = text
        result.append(normal)
    if len(result) > limit:
        errors.append(f"At most {limit} addresses or ranges (the platform's limit); this list has {len(result)}.")
    if errors:
        raise ValidationError(errors)
    return result
