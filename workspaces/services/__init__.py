"""Every write of the tenancy and access app, re-exported from its parts: workspaces and environments, roles and
role assignments, service accounts, people."""

from workspaces.services.people import (
    USER_FIELDS,
    person_create,
    person_create_check,
    user_set_password,
    user_update,
)
from workspaces.services.roles import (
    ROLE_FIELDS,
    other_active_admins,
    role_assign,
    role_assign_check,
    role_check,
    role_create,
    role_delete,
    role_delete_check,
    role_grant_check,
    role_revoke,
    role_revoke_check,
    role_update,
)
from workspaces.services.service_accounts import (
    SERVICE_ACCOUNT_DISABLE_HOOKS,
    SERVICE_ACCOUNT_FIELDS,
    SERVICE_ACCOUNT_KIND,
    service_account_create,
    service_account_disable,
    service_account_enable,
    service_account_ensure_remote,
    service_account_mark_synced,
    service_account_remote_name,
    service_account_remote_tag,
    service_account_update,
)
from workspaces.services.workspaces import (
    DEFAULT_ENVIRONMENTS,
    ENV_FIELDS,
    environment_save,
    workspace_create,
    workspace_update,
)

__all__ = [
    "DEFAULT_ENVIRONMENTS", "ENV_FIELDS", "ROLE_FIELDS", "SERVICE_ACCOUNT_DISABLE_HOOKS", "SERVICE_ACCOUNT_FIELDS",
    "SERVICE_ACCOUNT_KIND", "USER_FIELDS", "environment_save", "other_active_admins", "person_create",
    "person_create_check", "role_assign", "role_assign_check", "role_check", "role_create", "role_delete",
    "role_delete_check", "role_grant_check", "role_revoke", "role_revoke_check", "role_update",
    "service_account_create", "service_account_disable", "service_account_enable",
    "service_account_ensure_remote", "service_account_mark_synced", "service_account_remote_name",
    "service_account_remote_tag", "service_account_update", "user_set_password", "user_update",
    "workspace_create", "workspace_update",
]
