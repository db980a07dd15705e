from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        from agents import discovery, sync  # noqa: F401  (registers the outbox handler)

        discovery.register()
        from workspaces.services.platform_accounts import SYNCED_OBJECT_COUNTERS

        # A workspace whose agents are on its platform account cannot move to another account.
        SYNCED_OBJECT_COUNTERS.append(synced_agents)
        from project.sync.registry import MISSING_REMOTELY, DriftAction, register_drift_action

        register_drift_action(DriftAction("agent_recreate", "Recreate from Keyward (agents Keyward created)",
                                          "agent", MISSING_REMOTELY, _recreate))
        register_drift_action(DriftAction("agent_forget", "Forget in Keyward (adopted agents; the platform is not "
                                          "touched)", "agent", MISSING_REMOTELY, _forget))


def _drifted_agent(drift: object) -> object:
    from django.core.exceptions import ValidationError

    from agents.models import Agent

    agent = Agent.objects.filter(pk=getattr(drift, "object_id", None)).first()
    if agent is None:
        raise ValidationError("This agent is no longer in Keyward.")
    return agent


def _recreate(actor: object, drift: object) -> str:
    from agents.services import agent_recreate

    agent = agent_recreate(actor=actor, agent=_drifted_agent(drift))
    return f"“{agent}” will be created on the platform again."


def _forget(actor: object, drift: object) -> str:
    from django.core.exceptions import ValidationError

    from agents.models import Agent
    from agents.services import agent_delete

    agent = _drifted_agent(drift)
    if agent.origin != Agent.Origin.ADOPTED:
        raise ValidationError(f"“{agent}” was created in Keyward: recreate it, or delete it in Keyward.")
    agent_delete(actor=actor, agent=agent)
    return f"“{agent}” is forgotten in Keyward."


def synced_agents(workspace_id: int) -> dict[str, int]:
    from agents.models import Agent

    return {"agents": Agent.objects.filter(workspace_id=workspace_id).exclude(remote_id="").count()}
