from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        from agents import sync  # noqa: F401  (registers the outbox handler)
        from workspaces.services.platform_accounts import SYNCED_OBJECT_COUNTERS

        # A workspace whose agents are on its platform account cannot move to another account.
        SYNCED_OBJECT_COUNTERS.append(synced_agents)


def synced_agents(workspace_id: int) -> dict[str, int]:
    from agents.models import Agent

    return {"agents": Agent.objects.filter(workspace_id=workspace_id).exclude(remote_id="").count()}
