"""Permission-filtered reads: one selector per model, ``<model>s_for(actor, permission)``.

Encrypted fields are deferred: a list never needs (nor decrypts) a value; a page that shows a field's
state loads it on its own (project.fields.field_state).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet

from project.actors import Actor
from secrets_app.models import AuthConnection, OAuthProvider, Secret, Tool, UserCredential

VIEW = "workspace.view"


def _scoped(model: type[Model], actor: Actor, permission: str, *deferred: str) -> QuerySet:
    queryset = model._default_manager.restrict(actor, permission)
    return queryset.defer(*deferred) if deferred else queryset


def secrets_for(actor: Actor, permission: str = VIEW) -> QuerySet:
    return _scoped(Secret, actor, permission, "value")


def tools_for(actor: Actor, permission: str = VIEW) -> QuerySet:
    return _scoped(Tool, actor, permission)


def auth_connections_for(actor: Actor, permission: str = VIEW) -> QuerySet:
    return _scoped(AuthConnection, actor, permission, *AuthConnection.SECRET_FIELDS)


def oauth_providers_for(actor: Actor, permission: str = VIEW) -> QuerySet:
    return _scoped(OAuthProvider, actor, permission, "client_secret")


def user_credentials_for(actor: Actor, permission: str = VIEW) -> QuerySet:
    return _scoped(UserCredential, actor, permission, "access_token", "refresh_token")


SELECTORS = {Secret: secrets_for, Tool: tools_for, AuthConnection: auth_connections_for,
             OAuthProvider: oauth_providers_for, UserCredential: user_credentials_for}


def agents_using_tools(tools: list[Tool]) -> list[Any]:
    """The agents that call any of `tools` on the platform, from the platform's own tool ids on each agent (as
    the last discovery or guardrail refresh read them: Observation facts `tool_ids`). Keyward's agent rows where
    it governs the agent; otherwise the observation (an agent Keyward does not manage yet) stands in for it."""
    from agents.models import Agent
    from project.sync.models import Observation

    remote = {t.remote_id for t in tools if t.remote_id}
    workspaces = {t.workspace_id for t in tools}
    if not remote:
        return []
    seen = (Observation.objects.filter(kind="agent", workspace_id__in=workspaces)
            .values_list("remote_id", "label", "facts"))
    hits = {rid: label for rid, label, facts in seen if remote & set((facts or {}).get("tool_ids") or [])}
    governed = list(Agent.objects.filter(workspace_id__in=workspaces, remote_id__in=hits).order_by("name"))
    known = {a.remote_id for a in governed}
    return governed + [_Unmanaged(rid, label) for rid, label in sorted(hits.items(), key=lambda i: i[1])
                       if rid not in known]


class _Unmanaged:
    """An agent seen on the platform that Keyward does not govern (not adopted)."""

    pk = None

    def __init__(self, remote_id: str, label: str) -> None:
        self.remote_id, self.name = remote_id, label or remote_id

    def __str__(self) -> str:
        return f"{self.name} (not managed by Keyward)"
