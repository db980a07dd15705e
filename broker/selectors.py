"""Every permission-filtered read of the broker: one restricted queryset per model."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from agents.models import Agent
from broker.models import BrokerKey, WebhookAgent
from project.actors import Actor
from workspaces.models import Environment, ServiceAccount


def broker_keys_for(actor: Actor, permission: str) -> QuerySet:
    """Keys of the workspaces where the actor holds `permission`, with what the admin list shows."""
    return (BrokerKey.objects.select_related("workspace", "service_account", "environment__workspace", "usage")
            .annotate(agent_count=Count("agents", distinct=True)).restrict(actor, permission))


def webhook_agents_for(actor: Actor, permission: str) -> QuerySet:
    return WebhookAgent.objects.select_related("workspace").restrict(actor, permission)


def issue_choices_for(actor: Actor) -> dict[str, QuerySet]:
    """What the issue form may offer: objects of the workspaces where the actor may issue keys."""
    return {
        "service_account": ServiceAccount.objects.filter(is_active=True).select_related("workspace")
        .restrict(actor, "keys.issue"),
        "environment": Environment.objects.select_related("workspace").restrict(actor, "keys.issue"),
        "agents": Agent.objects.filter(auth_mode=Agent.AuthMode.SIGNED).select_related("workspace")
        .restrict(actor, "keys.issue"),
    }
