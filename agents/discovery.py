"""What discovery reads of an account's agents (and of its workspace-wide initiation webhook), and how an agent
built on the platform is adopted: a local row linked to its remote id, holding its current security settings,
marked as adopted so that Keyward never sends its name, prompt, voice, tools or other settings.

Facts of an agent observation (the guardrails read them): ``enable_auth``, ``allowlist`` (the hostnames as the
platform holds them), ``require_origin_header``, ``shareable`` (a shareable link is open; never the token),
``max_duration_seconds`` (None when the platform's copy has none), ``webhook_url`` (the agent's initiation
webhook, "" when none), ``tags``, ``archived``, ``tool_ids``. Facts of the workspace-wide settings observation:
``webhook_url``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from agents.models import MAX_DURATION_LIMIT, Agent
from agents.sync import DEFAULT_MAX_DURATION, TAG_PREFIX
from project.actors import is_system
from project.bulk import bulk_insert
from project.platform import errors
from project.sync.kinds import SyncKind
from project.sync.registry import Adopted, Discoverable, Observed, register_discoverable

# Agents read at once during discovery (each a GET), and how many reads are queued ahead of the one handed on.
READERS = 8
PAGE = 100
SETTINGS_KIND = "convai_settings"
SETTINGS_REMOTE_ID = "workspace"


def agent_facts(detail: Mapping[str, Any], archived: bool) -> dict[str, Any]:
    """The security facts of an agent's full record (GET /v1/convai/agents/{id}); no credential among them."""
    platform_settings = detail.get("platform_settings") or {}
    auth = platform_settings.get("auth") or {}
    allowlist = [entry.get("hostname", "") if isinstance(entry, dict) else str(entry)
                 for entry in auth.get("allowlist") or []]
    config = detail.get("conversation_config") or {}
    duration = (config.get("conversation") or {}).get("max_duration_seconds")
    hook = (platform_settings.get("workspace_overrides") or {}).get("conversation_initiation_client_data_webhook")
    prompt = (config.get("agent") or {}).get("prompt") or {}
    return {
        "enable_auth": bool(auth.get("enable_auth")),
        "allowlist": allowlist,
        "require_origin_header": bool(auth.get("require_origin_header")),
        "shareable": bool(auth.get("shareable_token")),
        "max_duration_seconds": duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
        "webhook_url": (hook or {}).get("url") or "" if isinstance(hook, dict) else "",
        "tags": [str(tag) for tag in detail.get("tags") or []],
        "archived": bool(archived or platform_settings.get("archived")),
        "tool_ids": [str(t) for t in prompt.get("tool_ids") or []],
    }


def observe_agents(client: Any) -> Iterator[Observed]:
    """Every agent, archived ones too, each read once in full (the list's summaries lack the settings). The agents are
    fetched READERS at once over the client's pool as their summaries arrive: the reads wait on the network,
    not on Python, so overlapping them (with each other and with the caller's storing) is most of the speed on a
    large account."""
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="discover-agents") as pool:
        # Reads start as the summaries arrive, and a page of them stays queued ahead of the result handed on, so
        # the readers keep going while the caller stores a batch (at most a page of reads in memory).
        queue: deque[Future[Observed | None]] = deque()
        try:
            for archived in (False, True):
                for summary in client.iter_agents(archived=archived):
                    queue.append(pool.submit(_read, client, summary, archived))
                    if len(queue) > PAGE:
                        observed = queue.popleft().result()
                        if observed is not None:
                            yield observed
            while queue:
                observed = queue.popleft().result()
                if observed is not None:
                    yield observed
        finally:
            for future in queue:  # stopped early (an error, the caller gave up): no reads left to run
                future.cancel()


def _read(client: Any, summary: dict[str, Any], archived: bool) -> Observed | None:
    agent_id = str(summary["agent_id"])
    try:
        detail = client.get_agent(agent_id)
    except errors.NotFound:
        return None  # deleted between the list and the read
    return Observed(agent_id, str(detail.get("name") or summary.get("name") or ""), agent_facts(detail, archived))


def governed_agents(remote_ids: list[str]) -> dict[str, tuple[str, int | None]]:
    return {remote_id: (str(pk), workspace_id) for remote_id, pk, workspace_id in
            Agent.objects.filter(remote_id__in=remote_ids).values_list("remote_id", "pk", "workspace_id")}


def local_policy(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The local policy of an adopted agent: what the platform holds, read the strict way. Signed URLs win over an
    allowlist held with them (the allowlist is dropped locally: Keyward refuses both at once); allowlist entries
    are kept as the platform holds them, so one Keyward would refuse shows on the agent's page; a public agent
    without a usable duration gets the platform's default as Keyward's limit. Nothing is pushed: the guardrails
    report what the platform holds until someone changes the agent."""
    duration = facts.get("max_duration_seconds")
    duration = duration if isinstance(duration, int) and 1 <= duration <= MAX_DURATION_LIMIT else None
    hosts = [str(h) for h in facts.get("allowlist") or []]
    if facts.get("enable_auth"):
        mode, hosts = Agent.AuthMode.SIGNED, []
    elif hosts:
        mode = Agent.AuthMode.ALLOWLIST
    else:
        mode = Agent.AuthMode.PUBLIC
        duration = duration or DEFAULT_MAX_DURATION
    return {"auth_mode": mode, "allowlist": hosts, "max_duration_seconds": duration,
            "require_origin_header": bool(facts.get("require_origin_header")) if mode == Agent.AuthMode.ALLOWLIST
            else True,
            "allow_shareable_link": bool(facts.get("shareable"))}


def unique_name(wanted: str, taken: set[str], limit: int) -> str:
    """``wanted`` (cut to ``limit``), or ``wanted (2)``, ``(3)``… when a local object has the name."""
    base = (wanted.strip() or "unnamed")[:limit]
    name, n = base, 1
    while name.casefold() in taken:
        n += 1
        suffix = f" ({n})"
        name = base[:limit - len(suffix)] + suffix
    taken.add(name.casefold())
    return name


def adopt_agents(actor: Any, workspace_id: int, observations: list[Any]) -> Adopted:
    taken = {name.casefold() for name in Agent.objects.filter(workspace_id=workspace_id).values_list("name", flat=True)}
    ours = {f"{TAG_PREFIX}{uuid}": name for uuid, name in Agent.objects.values_list("uuid", "name")} if any(
        tag.startswith(TAG_PREFIX) for o in observations for tag in o.facts.get("tags", [])) else {}
    created_by = None if is_system(actor) or not getattr(actor, "is_authenticated", False) else actor
    rows, refused = [], {}
    for observation in observations:
        made_for = next((ours[tag] for tag in observation.facts.get("tags", []) if tag in ours), None)
        if made_for is not None:
            refused[observation.remote_id] = (f"Keyward made this agent for its agent “{made_for}” (its tag says so); "
                                              "the next push of that agent links it.")
            continue
        rows.append(Agent(workspace_id=workspace_id, name=unique_name(observation.label, taken, 120),
                          remote_id=observation.remote_id, origin=Agent.Origin.ADOPTED, created_by=created_by,
                          **local_policy(observation.facts)))
    bulk_insert(Agent, rows, batch_size=500)
    return Adopted(adopted={agent.remote_id: str(agent.pk) for agent in rows}, refused=refused)


def observe_settings(client: Any) -> Iterator[Observed]:
    """The workspace-wide conversation-initiation webhook (convai settings)."""
    settings = client.get_convai_settings()
    hook = settings.get("conversation_initiation_client_data_webhook") or {}
    yield Observed(SETTINGS_REMOTE_ID, "Workspace-wide conversation-initiation webhook",
                   {"webhook_url": (hook.get("url") or "") if isinstance(hook, dict) else ""})


def register() -> None:
    register_discoverable(Discoverable(
        kind=SyncKind.AGENT, title="Agents", order=40, object_type="agents.agent", observe=observe_agents,
        governed=governed_agents, adopt=adopt_agents))
    register_discoverable(Discoverable(
        kind=SETTINGS_KIND, title="Workspace settings", order=70, object_type="", observe=observe_settings,
        governed=lambda remote_ids: {}))
