"""Every write of the broker (re-exported from the part modules)."""

from broker.services.initiation import WebhookRefused, conversation_initiation_answer
from broker.services.keys import (
    IssuedKey,
    broker_key_issue,
    broker_key_revoke,
    broker_key_update,
    broker_keys_revoke_for_service_account,
)
from broker.services.refresh import refresh_tool_add, refresh_tool_remove, token_refresh_answer
from broker.services.sessions import SessionGrant, SessionRefused, broker_sessions_prune, session_open
from broker.services.tokens import TokenGrant, single_use_token_mint

__all__ = [
    "IssuedKey", "SessionGrant", "SessionRefused", "WebhookRefused", "broker_key_issue", "broker_key_revoke",
    "broker_key_update", "broker_keys_revoke_for_service_account", "broker_sessions_prune",
    "conversation_initiation_answer", "session_open", "single_use_token_mint", "TokenGrant",
    "refresh_tool_add", "refresh_tool_remove", "token_refresh_answer",
]
