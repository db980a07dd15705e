"""The fixed permission catalogue and the built-in roles."""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
    "workspace.view": "See the workspace and its objects",
    "workspace.manage": "Change workspace settings and environments",
    "agents.manage": "Create, change and delete agents and their connection policy",
    "sessions.mint": "Mint signed URLs and conversation tokens",
    "secrets.manage": "Create, change and delete secrets, tools, auth connections and vault entries",
    "keys.issue": "Issue and rotate API keys and manage service accounts",
    "keys.revoke": "Revoke API keys and disable service accounts",
    "roles.assign": "Assign roles (only roles within one's own permissions) and define custom roles",
    "audit.view": "Read the audit trail",
    "sync.manage": "Retry, discard and push platform sync jobs",
    "incidents.manage": "Open and work incidents and alerts",
}

ALL = frozenset(CATALOGUE)

BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "Admin": ALL,
    "Security admin": frozenset({
        "workspace.view", "agents.manage", "sessions.mint", "secrets.manage", "keys.issue", "keys.revoke",
        "audit.view", "sync.manage", "incidents.manage"}),
    "Team lead": frozenset({"workspace.view", "agents.manage", "sessions.mint", "keys.issue", "roles.assign",
                            "audit.view"}),
    "Developer": frozenset({"workspace.view", "agents.manage", "sessions.mint"}),
    "Viewer": frozenset({"workspace.view"}),
}

BUILTIN_DESCRIPTIONS: dict[str, str] = {
    "Admin": "Everything in the workspace, including assigning any role",
    "Security admin": "Secrets, keys, incidents, audit and sync; no role assignment",
    "Team lead": "Agents, sessions, key issuing and assigning roles within their own rights",
    "Developer": "Agents and sessions",
    "Viewer": "Read-only",
}

ADMIN_ROLE = "Admin"


def builtin_roles_ensure(role_model: type) -> None:
    """Create the built-in roles, or put them back as the catalogue defines them (the data migration runs this
    with its historical model; the test suite after a flush with the real one)."""
    for name, perms in BUILTIN_ROLES.items():
        role_model._default_manager.update_or_create(workspace=None, name=name, defaults={
            "permissions": sorted(perms), "is_builtin": True, "description": BUILTIN_DESCRIPTIONS[name]})
