"""Who is calling the session API: a broker key from the Authorization header, or nobody.

Every failure returns None and the view answers one fixed 401, so a caller cannot tell a missing,
malformed, unknown, revoked or expired key (or a disabled service account) apart by content. Malformed
keys stop before the database (their checksum is public arithmetic, so that shortcut tells an attacker
nothing); every well-formed key takes the same path: one indexed lookup by digest, one constant-time
comparison, then the state checks in memory.

There is no cache: every request reads the key row, so a revocation is in force from the moment it commits
(well inside the 5 seconds promised).
"""

from __future__ import annotations

import functools
import hmac
from datetime import datetime

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from broker import keyformat, rows
from broker.models import BrokerKey
from workspaces.models import Environment, ServiceAccount

_NO_DIGEST = "0" * 64


def bearer_token(header: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header, else None."""
    if not header:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credential = credential.strip()
    return credential or None


@functools.cache
def _lookup_sql(alias: str = "default") -> str:
    return (f"SELECT {rows.columns(BrokerKey, 'k', alias)}, {rows.columns(ServiceAccount, 's', alias)}, "  # noqa: S608 - names from model metadata
            f"{rows.columns(Environment, 'e', alias)} FROM {rows.table(BrokerKey, alias)} k "
            f"JOIN {rows.table(ServiceAccount, alias)} s ON s.id = k.service_account_id "
            f"JOIN {rows.table(Environment, alias)} e ON e.id = k.environment_id WHERE k.digest = %s")


def _lookup(digest: str) -> BrokerKey | None:
    """The key with its service account and environment, in one indexed query (the unique digest index); as the
    request's first statement it is also the connection's health check (rows.first_read)."""
    row = rows.first_read(_lookup_sql(), [digest])
    if row is None:
        return None
    split1 = rows.width(BrokerKey, "k")
    split2 = split1 + rows.width(ServiceAccount, "s")
    key = rows.build(BrokerKey, "k", row[:split1])
    key.service_account = rows.build(ServiceAccount, "s", row[split1:split2])
    key.environment = rows.build(Environment, "e", row[split2:])
    return key


@sensitive_variables("presented")
def broker_key_authenticate(presented: str | None, *, now: datetime | None = None) -> BrokerKey | None:
    """The usable key the caller presented (service account and environment loaded), or None."""
    if presented is None or not keyformat.is_well_formed(presented):
        return None
    digest = keyformat.digest(presented)
    key = _lookup(digest)
    genuine = hmac.compare_digest(key.digest if key is not None else _NO_DIGEST, digest)
    if key is None or not genuine:
        return None
    if not key.is_usable(now or timezone.now()) or not key.service_account.is_active:
        return None
    return key
