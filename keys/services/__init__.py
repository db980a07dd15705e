"""Every write to API keys, key policies and environment budgets: each audited, platform changes via the outbox.

A package (issue, lifecycle, usage, policy; shared pieces in common) that re-exports every service here.

Issuing is the one place where the platform is called inside a person's request, because the platform returns
a key's secret only in its create response and the secret must reach exactly one page without being stored:

1. ``_issue_prepare`` (one transaction): checks, a *pending* row named by a fresh uuid, the audit event, and an
   outbox job deferred by ``API_KEY_ISSUE_GRACE_SECONDS``. Committed before the platform is asked, so a crash
   after the platform made the key still leaves a record.
2. The create call, outside any transaction, with the uuid in the key's name and as idempotency key.
3. ``_issue_complete`` (one transaction): the row becomes active with the hint and digest; for a rotation the
   predecessor becomes superseded. The secret goes back to the caller in memory (``IssuedKey``) and nowhere else.

If step 2 fails or its answer is lost, the row becomes *failed* and its outbox job deletes whatever the platform
made under that uuid (found by name); if the process dies, the deferred job does the same once the grace has
passed. A resubmitted form carries the same uuid and gets ``AlreadyIssued``, never a second key.
"""

from keys.services.common import (
    API_KEY_KIND,
    DIGEST_BATCH,
    KEY_FIELDS,
    MAX_OVERLAP,
    POLICY_FIELDS,
    AlreadyIssued,
    IssuedKey,
)
from keys.services.issue import (
    api_key_abandon,
    api_key_issue,
    api_key_rotate,
    api_key_rotate_now,
)
from keys.services.lifecycle import (
    api_key_expire,
    api_key_mark_gone,
    api_key_policy_restore,
    api_key_raise_hygiene_alerts,
    api_key_retire,
    api_key_revoke,
    api_key_update,
    api_key_update_check,
    api_keys_revoke_for_service_account,
)
from keys.services.policy import environment_budgets_set, key_policy_save
from keys.services.suspend import api_key_resume, api_key_suspend
from keys.services.usage import api_key_usage_ingest, api_keys_sweep

__all__ = [
    "API_KEY_KIND", "DIGEST_BATCH", "KEY_FIELDS", "MAX_OVERLAP", "POLICY_FIELDS",
    "AlreadyIssued", "IssuedKey", "api_key_abandon", "api_key_expire",
    "api_key_issue", "api_key_mark_gone", "api_key_policy_restore", "api_key_raise_hygiene_alerts",
    "api_key_retire", "api_key_revoke",
    "api_key_rotate", "api_key_rotate_now", "api_key_update", "api_key_update_check", "api_key_usage_ingest",
    "api_keys_revoke_for_service_account", "api_keys_sweep", "environment_budgets_set", "key_policy_save",
    "api_key_resume", "api_key_suspend",
]
