"""Every write of the broker (re-exported from the part modules)."""

from broker.services.initiation import WebhookRefused, conversation_initiation_answer
from broker.services.keys import (
    IssuedKey,
    broker_key_issue,
    broker_key_revoke,
    broker_key_update,
    broker_keys_revoke_for_service_account,
)
from broker.services.sessions import SessionGrant, SessionRefused, broker_sessions_prune, session_open

__all__ = [
    "IssuedKey", "SessionGrant", "SessionRefused", "WebhookRefused", "broker_key_issue", "broker_key_revoke",
    "broker_key_update", "broker_keys_revoke_for_service_account", "broker_sessions_prune",
    "conversation_initiation_answer", "session_open",
]
