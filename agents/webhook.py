"""The conversation-initiation webhook's shared secret, and the agent settings that point the platform at it.

Each agent gets its own secret, derived, never stored::

    kw_hook_<agent uuid hex>_<HMAC-SHA256(BROKER_WEBHOOK_KEY, "conversation-initiation:" + uuid hex), hex>

Keyward stores it on the platform as a workspace secret (named ``keyward-webhook-<agent uuid hex>``) and the
agent's ``platform_settings.workspace_overrides.conversation_initiation_client_data_webhook`` sends it as a
request header by reference (``{"secret_id": …}``), so it is in no agent config anyone can read there. It is
computed when the outbox job runs (so it is in no outbox payload, audit row or database column) and checked
with ``hmac.compare_digest`` on every call. A secret read out of one agent's platform config opens the webhook
for that agent only. BROKER_WEBHOOK_KEY may list several keys: the first signs, all verify, so the key can
rotate (re-push the agents with ``manage.py broker_push_webhooks``, then drop the old key). Without it the
key is derived from SECRET_KEY (and SECRET_KEY_FALLBACKS).

The secret's ``kw_`` shape is redacted from every log line by project/logging.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from typing import Any

from django.conf import settings

HEADER = "X-Keyward-Webhook-Secret"
META_HEADER = "HTTP_X_KEYWARD_WEBHOOK_SECRET"
PATH = "/api/v1/platform/conversation-initiation"
_DERIVATION_LABEL = b"keyward broker webhook key v1"
_SHAPE = re.compile(r"^kw_hook_([0-9a-f]{32})_([0-9a-f]{64})$")


def signing_keys() -> list[bytes]:
    configured = list(getattr(settings, "BROKER_WEBHOOK_KEY", None) or [])
    if configured:
        return [k.encode("utf-8") for k in configured]
    secret_keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [hmac.new(k.encode("utf-8"), _DERIVATION_LABEL, hashlib.sha256).digest() for k in secret_keys]


def _secret(agent_uuid: uuid.UUID, key: bytes) -> str:
    mac = hmac.new(key, b"conversation-initiation:" + agent_uuid.hex.encode("ascii"), hashlib.sha256).hexdigest()
    return f"kw_hook_{agent_uuid.hex}_{mac}"


def agent_secret(agent: Any) -> str:
    """The header value the platform must send for this agent (signed with the newest key)."""
    return _secret(agent.uuid, signing_keys()[0])


def verify(presented: str | None) -> uuid.UUID | None:
    """The agent uuid a genuine secret was made for, or None. Compared in constant time with every key."""
    match = _SHAPE.match(presented or "")
    if match is None:
        return None
    agent_uuid = uuid.UUID(match.group(1))
    genuine = False
    for key in signing_keys():
        genuine |= hmac.compare_digest(_secret(agent_uuid, key), presented or "")
    return agent_uuid if genuine else None


def key_id(key: bytes | None = None) -> str:
    """A fingerprint of a signing key (the newest by default): which key signed a pushed secret, not the key."""
    key = signing_keys()[0] if key is None else key
    return hashlib.sha256(b"keyward webhook key id:" + key).hexdigest()[:16]


def secret_name(agent: Any) -> str:
    """The platform workspace secret holding this agent's webhook secret. Keyward's own workspace secrets are
    named ``<workspace slug>__<name>``; this has no double underscore, so the two never collide."""
    return f"keyward-webhook-{agent.uuid.hex}"


def webhook_url() -> str:
    return settings.BROKER_PUBLIC_URL.rstrip("/") + PATH


def platform_settings(agent: Any) -> dict[str, Any]:
    """The part of ``platform_settings`` that turns the agent's initiation webhook on (or off again). On, the
    header references the platform secret (``agent.webhook_secret_remote_id``) that the sync job keeps."""
    enabled = bool(agent.credential_webhook)
    if enabled and not agent.webhook_secret_remote_id:
        raise ValueError("the agent's webhook secret is not on the platform yet")
    hook = ({"url": webhook_url(), "request_headers": {HEADER: {"secret_id": agent.webhook_secret_remote_id}}}
            if enabled else None)
    return {
        "workspace_overrides": {"conversation_initiation_client_data_webhook": hook},
        "overrides": {"enable_conversation_initiation_client_data_from_webhook": enabled},
    }
