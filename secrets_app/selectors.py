"""Permission-filtered reads: one selector per model, ``<model>s_for(actor, permission)``.

Encrypted fields are deferred: a list never needs (nor decrypts) a value; a page that shows a field's
state loads it on its own (project.fields.field_state).
"""

from __future__ import annotations

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
