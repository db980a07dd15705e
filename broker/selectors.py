"""Every permission-filtered read of the broker: one restricted queryset per model."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from agents.models import Agent
from broker.models import BrokerKey, WebhookAgent
from project import access
from workspaces.models import Environment, ServiceAccount


def _scope(queryset: QuerySet, actor: Any, permission: str, lookup: str = "workspace_id") -> QuerySet:
    allowed = access.workspaces_with(actor, permission)
    if allowed is None:
        return queryset
    return queryset.filter(**{f"{lookup}__in": allowed})


def broker_keys_for(actor: Any, permission: str) -> QuerySet:
    """Keys of the workspaces where the actor holds `permission`, with what the admin list shows."""
    return _scope(BrokerKey.objects.select_related("workspace", "service_account", "environment__workspace", "usage")
                  .annotate(agent_count=Count("agents", distinct=True)), actor, permission)


def webhook_agents_for(actor: Any, permission: str) -> QuerySet:
    return _scope(WebhookAgent.objects.select_related("workspace"), actor, permission)


def issue_choices_for(actor: Any) -> dict[str, QuerySet]:
    """What the issue form may offer: objects of the workspaces where the actor may issue keys."""
    return {
        "service_account": _scope(ServiceAccount.objects.filter(is_active=True).select_related("workspace"),
                                  actor, "keys.issue"),
        "environment": _scope(Environment.objects.select_related("workspace"), actor, "keys.issue"),
        "agents": _scope(Agent.objects.filter(auth_mode=Agent.AuthMode.SIGNED).select_related("workspace"),
                         actor, "keys.issue"),
    }
