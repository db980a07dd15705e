"""The platform's name for a key in its usage answers (``hashed_xi_api_key``), and the one join of usage to keys.

Nothing the platform documents says ``hashed_xi_api_key`` is sha256 of the secret, so Keyward never computes it:
it reads each key back from its service account's key list (right after issuing, and later for any usable key
still without one) and stores it as ``ApiKey.platform_hash``. Usage is joined on that column only, through
``keys_by_platform_hash``; the local ``digest`` serves the leak check. Discovery (adopted keys) records what it
lists through ``api_keys_record_platform_hashes`` too, so every writer and reader goes through this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from keys.models import ApiKey
from keys.services.common import DIGEST_BATCH
from project.platform import errors

logger = logging.getLogger(__name__)


def platform_hash_read(client: Any, account_remote_id: str, key_id: str) -> str:
    """The platform's ``hashed_xi_api_key`` of one key, read from its service account's key list; "" when the
    list does not show it (yet) or cannot be read now (a later fill pass will find it)."""
    try:
        listed = client.list_api_keys(account_remote_id)
    except errors.PlatformError as exc:
        logger.info("key list of %s unreadable (%s): the key's platform hash is filled later", account_remote_id,
                    exc.code)
        return ""
    return next((str(k.get("hashed_xi_api_key") or "") for k in listed if str(k.get("key_id")) == key_id), "")


@transaction.atomic
def api_keys_record_platform_hashes(listed: Iterable[dict[str, Any]]) -> int:
    """Store each listed platform key's ``hashed_xi_api_key`` on the row with its remote key id (rows without
    one, or with a different one, only). Platform data, not anyone's change: no audit, nothing enqueued. Returns
    how many rows changed."""
    wanted = {str(k["key_id"]): str(k.get("hashed_xi_api_key") or "") for k in listed if k.get("key_id")}
    wanted = {key_id: hashed for key_id, hashed in wanted.items() if hashed}
    ids = sorted(wanted)
    changed = []
    for i in range(0, len(ids), DIGEST_BATCH):
        for key in ApiKey.objects.filter(remote_key_id__in=ids[i:i + DIGEST_BATCH]).order_by() \
                .only("pk", "remote_key_id", "platform_hash"):
            if key.platform_hash != wanted[key.remote_key_id]:
                key.platform_hash = wanted[key.remote_key_id]
                changed.append(key)
    ApiKey.objects.bulk_update(changed, ["platform_hash"], batch_size=DIGEST_BATCH)
    return len(changed)


def api_keys_fill_platform_hashes(*, client: Any = None) -> int:
    """Usable keys still without a platform hash (its read-back failed, or issued before Keyward stored it): read
    their service accounts' key lists, one call per account, and record what they show. Nothing to do (no call)
    when every usable key has one. Returns how many rows changed."""
    from project.platform.client import client_for_workspace

    missing = (ApiKey.objects.filter(state__in=ApiKey.USABLE_STATES, platform_hash="").exclude(remote_key_id="")
               .exclude(service_account__remote_id="").order_by()
               .values_list("workspace_id", "service_account__remote_id").distinct())
    changed = 0
    for workspace_id, account_remote_id in sorted(set(missing)):
        account_client = client or client_for_workspace(workspace_id)
        try:
            changed += api_keys_record_platform_hashes(account_client.list_api_keys(account_remote_id))
        except errors.PlatformError as exc:
            logger.warning("key list of service account %s unreadable (%s): its keys' usage waits", account_remote_id,
                           exc.code)
    return changed


def keys_by_platform_hash(hashes: Iterable[str], fields: tuple[str, ...] = ("pk", "platform_hash",
                                                                            "last_used_at")) -> dict[str, ApiKey]:
    """The keys the platform's usage rows name, by ``hashed_xi_api_key``: the one join of usage to keys (never on
    the local digest). Keys without a platform hash match nothing."""
    hashes = sorted({h for h in hashes if h})
    keys: dict[str, ApiKey] = {}
    for i in range(0, len(hashes), DIGEST_BATCH):
        # exclude(platform_hash="") matches the partial index on platform_hash.
        keys.update((k.platform_hash, k) for k in ApiKey.objects.filter(platform_hash__in=hashes[i:i + DIGEST_BATCH])
                    .exclude(platform_hash="").order_by().only(*fields))
    return keys
