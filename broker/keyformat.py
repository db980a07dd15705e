"""The shape of a Keyward broker key: ``kw_<environment>_<43 base62 random chars><6 base62 checksum chars>``.

- 32 random bytes (256 bits) written in base62, so a key is one "word" that copies and greps well;
- the environment label makes a leaked key's reach obvious at a glance (``kw_prod_...``);
- the checksum (CRC32 of everything before it) refuses a mistyped or truncated key before any database
  read. It is public arithmetic, not a secret: it only tells typos from keys.

Only ``digest()`` (SHA-256, hex) is stored. A fast hash is the right tool here: the key carries 256 bits of
randomness, so nothing can be guessed offline, and verification stays in microseconds (a password hasher
is for low-entropy secrets and costs ~1,000 times more; see bench/broker_bench.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

PREFIX = "kw_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_BYTES = 32
BODY_LENGTH = 43  # 62**43 > 2**256
CHECK_LENGTH = 6  # 62**6 > 2**32
LABEL_LENGTH = 16
MAX_LENGTH = len(PREFIX) + LABEL_LENGTH + 1 + BODY_LENGTH + CHECK_LENGTH

_SHAPE = re.compile(rf"^kw_([a-z0-9]{{1,{LABEL_LENGTH}}})_([0-9A-Za-z]{{{BODY_LENGTH + CHECK_LENGTH}}})$")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def environment_label(name: str) -> str:
    """The environment as it appears in a key: lowercase letters and digits only (``my-env`` -> ``myenv``),
    so the whole key matches the log redaction's ``kw_[A-Za-z0-9_]+`` pattern."""
    label = re.sub(r"[^a-z0-9]", "", name.lower())[:LABEL_LENGTH]
    return label or "env"


def checksum(head: str) -> str:
    return _base62(zlib.crc32(head.encode("ascii")), CHECK_LENGTH)


def generate(environment_name: str) -> str:
    head = f"{PREFIX}{environment_label(environment_name)}_" + _base62(
        int.from_bytes(secrets.token_bytes(RANDOM_BYTES), "big"), BODY_LENGTH)
    return head + checksum(head)


def is_well_formed(key: str) -> bool:
    """Shape and checksum only; no database. False for anything that cannot be a key Keyward issued."""
    if not isinstance(key, str) or len(key) > MAX_LENGTH or not _SHAPE.match(key):
        return False
    return hmac.compare_digest(key[-CHECK_LENGTH:], checksum(key[:-CHECK_LENGTH]))


def digest(key: str) -> str:
    """What is stored (unique index) and what a leak check compares: SHA-256 of the whole key, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def hint(key: str) -> str:
    """Enough to recognise a key in a list, far too little to use it: the prefix, 4 characters, the last 4."""
    head = key[: key.index("_", len(PREFIX)) + 1]
    return f"{head}{key[len(head):len(head) + 4]}…{key[-4:]}"
