"""Keys the platform disabled on its own (the key list's ``disable_reason``: for example ``exposed_publicly``, a
key it found in a public place): a critical alert and an incident on that key, opened automatically.

One key-list read per platform account (``GET /v1/service-accounts`` lists every account with its keys); the same
read records the platform's hash of each key (``keys.services.platform_hash``), so usage finds keys whose
read-back after issuing failed.
"""

from __future__ import annotations

import logging
from typing import Any

from detection.incidents import incident_open
from detection.models import Incident
from keys.models import ApiKey
from keys.services.platform_hash import api_keys_record_platform_hashes
from project.actors import SYSTEM
from project.alerts.models import Alert
from project.alerts.services import alert_raise
from project.platform import errors

logger = logging.getLogger(__name__)

ALERT_KIND = "api_key_disabled_by_platform"
REASONS = {
    "exposed_publicly": "the platform found it exposed publicly",
    "trial_ended": "the account's trial ended",
    "subscription_downgrade": "the account's plan was downgraded",
    "self_disabled": "its holder disabled it with the key itself",
}


def platform_disabled_keys_check(*, client: Any = None) -> dict[str, int]:
    """For each key Keyward holds as usable that the platform lists with a ``disable_reason``: raise a critical
    alert (once per key and reason) and open an incident on the key (an open one is reused). Returns counts.
    A platform account that cannot be read is skipped (logged); the next pass looks again."""
    from project.platform.client import accounts_with_workspaces, client_for_account

    clients = [client] if client is not None else [client_for_account(a) for a in accounts_with_workspaces()]
    listed: list[dict[str, Any]] = []
    for account_client in clients:
        try:
            for account in account_client.list_service_accounts():
                listed.extend(account.get("api-keys") or [])
        except errors.PlatformError as exc:
            logger.warning("key lists unreadable (%s): keys the platform disabled are checked next pass", exc.code)
    api_keys_record_platform_hashes(listed)
    disabled = {str(k["key_id"]): str(k["disable_reason"]) for k in listed if k.get("disable_reason")}
    result = {"disabled_by_platform": 0, "alerts": 0, "incidents": 0}
    if not disabled:
        return result
    for key in ApiKey.objects.filter(remote_key_id__in=sorted(disabled), state__in=ApiKey.USABLE_STATES) \
            .select_related("workspace").order_by("pk"):
        reason = disabled[key.remote_key_id]
        if key.suspended_at is not None and reason != "exposed_publicly":
            continue  # Keyward suspended it (POST …/disable): whatever reason the platform lists, it is expected
        result["disabled_by_platform"] += 1
        why = REASONS.get(reason, reason)
        alert, created = alert_raise(
            actor=SYSTEM, workspace=key.workspace, kind=ALERT_KIND, severity=Alert.Severity.CRITICAL,
            title=f"The platform disabled key “{key}”: {why}", dedup_key=f"{ALERT_KIND}:{key.pk}:{reason}",
            details={"disable_reason": reason, "remote_key_id": key.remote_key_id}, target=key)
        result["alerts"] += created
        _incident, opened = incident_open(
            actor=SYSTEM, source=Incident.Source.ALERT, api_key=key, alert=alert, severity=Alert.Severity.CRITICAL,
            title=f"Key “{key}” disabled by the platform: {why}",
            summary=f"The platform's key list reports disable_reason={reason}. Revoke it, issue a replacement and "
                    "find where the secret went.")
        result["incidents"] += opened
    return result
