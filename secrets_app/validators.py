"""Names and header templates: the rules that need no database.

A header value is either plain text or exactly one reference, ``{{ secret__name }}`` (a workspace secret,
sent as ``{"secret_id": ...}``), ``{{ secret__user_<provider>_token }}`` (an end user's vault token, injected
per conversation as a ``secret__`` dynamic variable, sent as ``{"variable_name": ...}``) or ``{{ name }}``
(any other dynamic variable). The platform's locators replace a *whole* header value, so mixed text such as
``Bearer {{ secret__x }}`` cannot be expressed: it is refused, and the fix is to store the whole value
(``Bearer ...``) in the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator

from project.logging import redact

# Usable as `secret__<name>`: lowercase identifier, so `secret__Name` and `secret__name` cannot both exist.
SECRET_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
validate_secret_name = RegexValidator(
    SECRET_NAME_PATTERN, "Use 1–63 lowercase letters, digits and underscores, starting with a letter "
    "(the secret is referenced as {{ secret__<name> }}).", code="secret_name")
# secret__user_<provider>_token names an end user's vault token; workspace secrets stay out of that space.
VAULT_PREFIX = "user_"
VAULT_SUFFIX = "_token"

# The platform's rule for webhook tool names.
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
validate_tool_name = RegexValidator(TOOL_NAME_PATTERN, "Use 1–64 letters, digits, underscores or hyphens "
                                    "(the platform's rule for tool names).", code="tool_name")

PROVIDER_SLUG_PATTERN = r"^[a-z][a-z0-9]{0,39}$"
validate_provider_slug = RegexValidator(
    PROVIDER_SLUG_PATTERN, "Use 1–40 lowercase letters and digits, starting with a letter (end users' tokens "
    "are injected as secret__user_<slug>_token).", code="provider_slug")

_PATH_PARAM = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]{0,63}\}")
_URL = URLValidator(schemes=["http", "https"])


def validate_tool_url(value: str) -> None:
    """An http(s) URL in which {path_params} placeholders may stand for path segments."""
    try:
        _URL(_PATH_PARAM.sub("param", value or ""))
    except ValidationError:
        raise ValidationError("Enter an http(s) URL; {name} placeholders may stand for path parameters.",
                              code="tool_url") from None


# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_WHOLE_REFERENCE = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,99})\s*\}\}\s*$")
MAX_HEADER_VALUE = 2000
MAX_HEADERS = 30


def vault_variable(provider_slug: str) -> str:
    """The dynamic variable carrying an end user's access token for a provider."""
    return f"secret__{VAULT_PREFIX}{provider_slug}{VAULT_SUFFIX}"


@dataclass(frozen=True)
class HeaderSpec:
    """One parsed header: plain text, a workspace secret, an end user's vault token or another variable."""

    name: str
    kind: str  # "text" | "secret" | "vault" | "variable"
    text: str = ""  # the plain value (kind "text") or the referenced name (secret name, provider slug, variable)


def parse_header(name: str, value: object) -> HeaderSpec:
    """Classify one header or raise ValidationError naming it."""
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        raise ValidationError(f"“{str(name)[:60]}” is not a valid header name (letters, digits and -_.!#$%&'*+^`|~).",
                              code="header_name")
    if not isinstance(value, str):
        raise ValidationError(f"Header {name}: the value must be text.", code="header_value")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValidationError(f"Header {name}: the value cannot contain line breaks.", code="header_value")
    if len(value) > MAX_HEADER_VALUE:
        raise ValidationError(f"Header {name}: at most {MAX_HEADER_VALUE} characters.", code="header_value")
    whole = _WHOLE_REFERENCE.match(value)
    if whole:
        variable = whole.group(1)
        if not variable.startswith("secret__"):
            return HeaderSpec(name, "variable", variable)
        ref = variable.removeprefix("secret__")
        if ref.startswith(VAULT_PREFIX) and ref.endswith(VAULT_SUFFIX) and len(ref) > len(VAULT_PREFIX + VAULT_SUFFIX):
            return HeaderSpec(name, "vault", ref[len(VAULT_PREFIX):-len(VAULT_SUFFIX)])
        return HeaderSpec(name, "secret", ref)
    if "{{" in value or "}}" in value:
        raise ValidationError(
            f"Header {name}: a reference must be the whole value, e.g. {{{{ secret__api_token }}}}. The platform "
            "substitutes a secret for an entire header value, so text around it (such as “Bearer ”) cannot be "
            "kept: store the whole value, “Bearer …” included, in the secret.", code="mixed_reference")
    if redact(value) != value:
        raise ValidationError(
            f"Header {name}: this value looks like a credential. Store it as a secret and write "
            "{{ secret__<name> }} here, so it is encrypted and never shown again.", code="inline_credential")
    return HeaderSpec(name, "text", value)


def parse_headers(headers: object) -> list[HeaderSpec]:
    """Every header parsed; all problems reported together, one message per header."""
    if not isinstance(headers, dict):
        raise ValidationError("Headers must be a mapping of header names to values.", code="headers")
    if len(headers) > MAX_HEADERS:
        raise ValidationError(f"At most {MAX_HEADERS} headers.", code="headers")
    specs, problems, seen = [], [], {}
    for name, value in headers.items():
        lowered = str(name).lower()
        if lowered in seen:
            problems.append(ValidationError(f"Header {name} is listed twice (header names ignore case).",
                                            code="duplicate_header"))
            continue
        seen[lowered] = name
        try:
            specs.append(parse_header(name, value))
        except ValidationError as exc:
            problems.append(exc)
    if problems:
        raise ValidationError(problems)
    return specs


def parse_header_lines(text: str) -> dict[str, str]:
    """The admin's textarea ("Name: value" per line) as a dict; raises ValidationError naming the line."""
    headers: dict[str, str] = {}
    problems = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            problems.append(ValidationError(f"Line {number}: write “Header-Name: value”.", code="header_line"))
            continue
        name, value = name.strip(), value.strip()
        if name.lower() in {k.lower() for k in headers}:
            problems.append(ValidationError(f"Line {number}: header {name} is listed twice.", code="duplicate_header"))
            continue
        headers[name] = value
    if problems:
        raise ValidationError(problems)
    return headers
