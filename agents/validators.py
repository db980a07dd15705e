"""Hostname allowlist rules: exact hosts, optional port, no scheme, path, wildcard or whitespace."""

from __future__ import annotations

import ipaddress
import re

import idna
from django.core.exceptions import ValidationError

MAX_ALLOWLIST_HOSTS = 10
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CODEPOINT = re.compile(r"U\+([0-9A-F]{4,6})")


def normalize_hostname(raw: str) -> str:
    """Return the canonical form (lowercase, IDN as punycode, `host[:port]`) or raise a clear error."""
    value = (raw or "").strip()
    if not value:
        raise ValidationError("A hostname cannot be empty.", code="empty")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if any(ch.isspace() for ch in value):
        raise ValidationError(f"“{shown}” contains whitespace; enter one hostname per line.", code="whitespace")
    if "://" in value or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/", value):
        raise ValidationError(f"“{shown}” has a scheme; enter the hostname only (example.com, not https://example.com).",
                              code="scheme")
    if "*" in value:
        raise ValidationError(f"“{shown}” has a wildcard; the platform matches hostnames exactly, so list each "
                              "subdomain on its own line.", code="wildcard")
    if any(ch in value for ch in "/?#"):
        raise ValidationError(f"“{shown}” has a path or query; enter the hostname only (and an optional :port).",
                              code="path")
    if "@" in value:
        raise ValidationError(f"“{shown}” contains user information; enter the hostname only.", code="userinfo")

    host, port = _split_port(value, shown)
    host = _normalize_host(host, shown)
    return f"{host}:{port}" if port is not None else host


def _split_port(value: str, shown: str) -> tuple[str, int | None]:
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            raise ValidationError(f"“{shown}” has an unclosed IPv6 bracket.", code="invalid")
        host, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValidationError(f"“{shown}” is not a valid host.", code="invalid")
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif value.count(":") > 1:
        raise ValidationError(f"“{shown}”: write IPv6 addresses in brackets, e.g. [::1]:3000.", code="invalid")
    else:
        host, port_text = value, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValidationError(f"“{shown}” has port {port_text or '(empty)'}; a port must be a number from 1 to 65535.",
                              code="port")
    return host, int(port_text)


def _normalize_host(host: str, shown: str) -> str:
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValidationError(f"“{shown}” is not a valid IPv6 address.", code="invalid") from None
    host = host.rstrip(".")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    ascii_host = _to_ascii(host, shown)
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(f"“{shown}” is not a valid hostname (letters, digits, hyphens and dots only).",
                              code="invalid")
    return ascii_host


def _to_ascii(host: str, shown: str) -> str:
    """The host's ASCII form by IDNA 2008 with UTS #46 mapping, non-transitional, as browsers send it in the
    Origin the platform compares against: ``straße.de`` is ``xn--strae-oqa.de``, not ``strasse.de``.

    A plain ASCII name without an ``xn--`` label is only lowercased (all UTS #46 does to ASCII letters):
    IDNA 2008's hyphen rule would otherwise refuse names such as ``r3--sn.example`` that browsers accept.
    """
    labels = host.split(".")
    if host.isascii() and not any(label.lower().startswith("xn--") for label in labels):
        return host.lower()
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationError(f"“{shown}” is not a valid hostname: {_idna_problem(exc)}.", code="invalid") from None


def _idna_problem(exc: idna.IDNAError) -> str:
    """The idna package's reason, said for a person."""
    text = str(exc)
    found = _CODEPOINT.search(text)
    if isinstance(exc, idna.InvalidCodepoint) and found:
        return f"“{chr(int(found.group(1), 16))}” (U+{found.group(1)}) cannot appear in a hostname"
    if text == "Invalid A-label":
        return "a label starting with xn-- is not valid punycode"
    if text == "Empty Label":
        return "it has an empty label (two dots in a row)"
    if text == "Label too long":
        return "a label (the part between dots) is longer than 63 characters once encoded"
    return text[:1].lower() + text[1:]


def normalize_allowlist(entries: list[str]) -> list[str]:
    """Normalise every entry, refuse duplicates (case-insensitively) and more than 10 hosts.

    All problems are collected, one message per bad line, so the person can fix them in one go.
    """
    problems: list[ValidationError] = []
    seen: dict[str, int] = {}
    result: list[str] = []
    for line_no, raw in enumerate(entries, start=1):
        try:
            host = normalize_hostname(raw)
        except ValidationError as exc:
            problems.append(ValidationError(f"Line {line_no}: {exc.messages[0]}", code=exc.code))
            continue
        if host in seen:
            problems.append(ValidationError(
                f"Line {line_no}: “{raw.strip()}” duplicates line {seen[host]} ({host}); hostnames are compared "
                "without regard to case.", code="duplicate"))
            continue
        seen[host] = line_no
        result.append(host)
    if len(entries) > MAX_ALLOWLIST_HOSTS:
        problems.append(ValidationError(
            f"An allowlist holds at most {MAX_ALLOWLIST_HOSTS} hostnames; this one has {len(entries)}.",
            code="too_many"))
    if problems:
        raise ValidationError(problems)
    return result
