"""A logging filter that redacts credentials from every record before any handler formats it."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.core.exceptions import PermissionDenied

REDACTED = "[redacted]"

# Header-style credentials ("xi-api-key: ...", "Authorization: Bearer ...") and anything shaped like a key:
# platform keys (sk_ + hex), Keyward broker keys (kw_...), bearer/JWT tokens and long opaque tokens.
_PATTERNS = [
    re.compile(r"(?i)(xi-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^\s'\",}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"()\bsk_[A-Za-z0-9]{16,}"),
    re.compile(r"()\bkw_[A-Za-z0-9_]{16,}"),
    re.compile(r"()\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+"),
    re.compile(r"(?i)(conversation_signature=)[^\s&'\"]+"),
    re.compile(r"(?i)((?:secret|token|password|value)['\"]?\s*[:=]\s*['\"])[^'\"]{4,}"),
]

# Values registered at run time (decrypted secrets seen by this process) are redacted verbatim.
_known_values: set[str] = set()


def register_secret_value(value: str | None) -> None:
    """Remember a secret value this process has handled so that no log line can carry it."""
    if value and len(value) >= 6:
        _known_values.add(value)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    for value in _known_values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    return redact(repr(arg)) if not isinstance(arg, BaseException) else redact(str(arg))


class RedactingFilter(logging.Filter):
    """Rewrites msg, args and exception text so handlers only ever see redacted strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not crash logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            # A refused request is an everyday event, not a fault: one line naming what was missing, no traceback.
            record.msg = redact(f"{message}: {record.exc_info[1]}")
            record.exc_info, record.exc_text = None, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


_installed = False


def install_record_factory() -> None:
    """Redact at record creation, so every handler (including test capture handlers) sees clean text.

    Handler filters alone miss handlers added later (pytest's caplog, a library's own handler).
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        RedactingFilter().filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any `extra` fields given."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        import json

        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, default=str)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (or task id), so one request's lines can be joined."""

    def filter(self, record: logging.LogRecord) -> bool:
        from project import context

        ctx = context.current()
        if not hasattr(record, "request_id"):
            record.request_id = ctx.request_id if ctx else ""
        return True


def _exception_reporter_base() -> type:
    from django.views.debug import SafeExceptionReporterFilter

    return SafeExceptionReporterFilter


class RedactingExceptionReporterFilter(_exception_reporter_base()):  # type: ignore[misc]
    """Django's error pages and error e-mails, with Keyward's redaction on top of Django's own.

    POST fields whose names say "value", "secret", "password", "token" or "key" (the write-only form fields)
    are hidden, and so is any POST field or traceback variable whose text holds something `redact()` would
    hide (a registered secret value, a key-shaped string), in every view, not only the ones decorated with
    sensitive_post_parameters / sensitive_variables.
    """

    _SENSITIVE_FIELD = re.compile(r"(?i)value|secret|passw|token|key|credential")

    def get_post_parameters(self, request: Any) -> Any:
        params = super().get_post_parameters(request)
        if not params:
            return params
        cleansed = params.copy()
        for name, values in params.lists():
            if self._SENSITIVE_FIELD.search(name) or any(isinstance(v, str) and redact(v) != v for v in values):
                cleansed[name] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            try:
                text = value if isinstance(value, str) else repr(value)
            except Exception:  # a broken __repr__ must not break the error page
                text = ""
            cleansed.append((name, self.cleansed_substitute if redact(text) != text else value))
        return cleansed
