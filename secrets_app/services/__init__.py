"""Every write to secrets, tools, auth connections and the vault (re-exported from the part modules)."""

from secrets_app.services.auth_connections import (
    AUTH_CONNECTION_KIND,
    auth_connection_delete,
    auth_connection_mark_synced,
    auth_connection_save,
)
from secrets_app.services.secrets import (
    SECRET_KIND,
    secret_create,
    secret_delete,
    secret_mark_synced,
    secret_update,
    tools_using,
)
from secrets_app.services.tools import (
    TOOL_KIND,
    resolve_headers,
    tool_create,
    tool_delete,
    tool_mark_synced,
    tool_update,
)
from secrets_app.services.vault import (
    credential_fresh_token,
    credential_fresh_tokens,
    credential_refresh,
    credential_revoke,
    credential_store,
    credentials_due,
    credentials_refresh_due,
    provider_delete,
    provider_save,
)

__all__ = [
    "AUTH_CONNECTION_KIND", "SECRET_KIND", "TOOL_KIND", "auth_connection_delete", "auth_connection_mark_synced",
    "auth_connection_save", "credential_fresh_token", "credential_fresh_tokens",
    "credential_refresh", "credential_revoke", "credential_store", "credentials_due", "credentials_refresh_due",
    "provider_delete", "provider_save", "resolve_headers", "secret_create", "secret_delete", "secret_mark_synced",
    "secret_update", "tool_create", "tool_delete", "tool_mark_synced", "tool_update", "tools_using",
]
