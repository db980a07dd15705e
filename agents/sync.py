"""Turns an agent row into platform calls for the outbox, and compares agents with the platform's copies."""

from __future__ import annotations

import copy
import hmac
import logging
from collections.abc import Iterator
from typing import Any

from agents.models import Agent
from agents.services import AGENT_KIND, agent_mark_missing, agent_mark_synced
from project.audit.selectors import earlier_values
from project.platform import errors
from project.sync.models import SyncJob
from project.sync.registry import (
    DIFFERS,
    MISSING_REMOTELY,
    UNKNOWN_LOCALLY,
    DriftItem,
    LocalObject,
    in_scope,
    register,
    register_objects,
    register_reconciler,
    report_progress,
)
from project.sync.selectors import attempted_before, remote_id_of_older_job

logger = logging.getLogger(__name__)

DEFAULT_MAX_DURATION = 600  # the platform's default; sent explicitly so a removed limit is removed remotely
# A retried create looks for what an earlier, unanswered attempt may have made: by name through the platform's
# search, at most this many list pages (so a retry costs at most this plus the create).
LOOKUP_PAGES = 2


def agent_payload(agent: Agent) -> dict[str, Any]:
    """The create body of an agent Keyward made: its name and first message, its security settings, its tag."""
    conversation_config: dict[str, Any] = {
        "conversation": {"max_duration_seconds": agent.max_duration_seconds or DEFAULT_MAX_DURATION},
    }
    if agent.first_message:
        conversation_config["agent"] = {"first_message": agent.first_message}
    platform_settings: dict[str, Any] = {"auth": agent.platform_auth()}
    if agent.credential_webhook_changed_at is not None:
        # Only once Keyward has managed the initiation webhook: a webhook set by hand on the platform survives.
        from agents.webhook import platform_settings as webhook_settings

        platform_settings.update(webhook_settings(agent))
    return {
        "name": agent.name,
        "conversation_config": conversation_config,
        "platform_settings": platform_settings,
        "tags": [agent.sync_tag],
    }


def _merged(remote: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of the remote object with only `changes` applied, key by key into nested dicts."""
    merged = copy.deepcopy(remote) if isinstance(remote, dict) else {}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def security_update(agent: Agent, remote: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body that puts Keyward's security settings on the remote agent and nothing else.

    Each top-level object it sends (``platform_settings``, ``conversation_config``) is the remote copy, complete,
    with only Keyward's keys changed: right whether the platform deep-merges nested objects or replaces them.
    Keyward's keys: the auth policy (enable_auth, allowlist, require_origin_header), the shareable link (closed
    unless allowed), the maximum conversation duration, the initiation webhook once Keyward manages it, its own
    tag among the agent's tags; the name and first message only for an agent Keyward created. An object that
    would not change is not sent; an empty body means the agent is in step.
    """
    ps_remote = remote.get("platform_settings") or {}
    cc_remote = remote.get("conversation_config") or {}
    auth = dict(agent.platform_auth())
    if not agent.allow_shareable_link:
        auth["shareable_token"] = None
    ps_changes: dict[str, Any] = {"auth": auth}
    if agent.credential_webhook_changed_at is not None:
        from agents.webhook import platform_settings as webhook_settings

        ps_changes.update(webhook_settings(agent))
    cc_changes: dict[str, Any] = {}
    keyward_made = agent.origin == Agent.Origin.KEYWARD
    if agent.max_duration_seconds or keyward_made:
        cc_changes["conversation"] = {"max_duration_seconds": agent.max_duration_seconds or DEFAULT_MAX_DURATION}
    if keyward_made and agent.first_message:
        cc_changes["agent"] = {"first_message": agent.first_message}
    body: dict[str, Any] = {}
    platform_settings = _merged(ps_remote, ps_changes)
    if platform_settings != ps_remote:
        body["platform_settings"] = platform_settings
    conversation_config = _merged(cc_remote, cc_changes)
    if conversation_config != cc_remote:
        body["conversation_config"] = conversation_config
    tags = list(remote.get("tags") or [])
    if agent.sync_tag not in tags:
        body["tags"] = [*tags, agent.sync_tag]  # the team's own tags stay
    if keyward_made and remote.get("name") != agent.name:
        body["name"] = agent.name
    return body


# --- the credential webhook's secret, kept on the platform as a workspace secret ---------------------------------
def _ensure_webhook_secret(agent: Agent, client: Any, *, outcome_unknown: bool = False) -> None:
    """Make sure the platform holds this agent's current webhook secret: rewritten on every push (so a push
    repairs a secret deleted or changed on the platform, and carries a new BROKER_WEBHOOK_KEY), created (or
    adopted by name after a lost answer) when missing. The id and key fingerprint are stored before the agent
    is pushed, so a failure after this loses nothing. When an earlier attempt's outcome is unknown (its answer
    never came), the secret is looked up by name first (targeted, bounded): the platform honours no idempotency
    key and may not refuse a duplicate name."""
    from agents import webhook

    current = webhook.key_id()
    name, value = webhook.secret_name(agent), webhook.agent_secret(agent)
    secret_id = agent.webhook_secret_remote_id
    if secret_id:
        try:
            client.update_secret(secret_id, name=name, value=value)
        except errors.NotFound:
            secret_id = ""  # deleted on the platform behind Keyward's back: make it again
    if not secret_id and outcome_unknown:
        secret_id = client.secret_id_named(name) or ""
        if secret_id:
            client.update_secret(secret_id, name=name, value=value)
    if not secret_id:
        try:
            secret_id = str(client.create_secret(name=name, value=value)["secret_id"])
        except errors.PlatformError as exc:
            if not errors.is_duplicate_name_refusal(exc):
                raise
            # The name exists already (an earlier create whose answer was lost): adopt it and write the value.
            secret_id = client.secret_id_named(name) or ""
            if not secret_id:
                raise
            client.update_secret(secret_id, name=name, value=value)
    agent.webhook_secret_remote_id, agent.webhook_secret_key_id = secret_id, current
    if not Agent.objects.filter(pk=agent.pk).update(webhook_secret_remote_id=secret_id,
                                                    webhook_secret_key_id=current):
        _drop_webhook_secret(client, secret_id)  # the agent was deleted meanwhile: leave nothing behind
        raise Agent.DoesNotExist


def _drop_webhook_secret(client: Any, secret_id: str) -> None:
    try:
        client.delete_secret(secret_id)
    except errors.NotFound:
        pass  # already gone
    except errors.PlatformError as exc:
        if not errors.is_in_use_refusal(exc):
            raise
        # Something set up by hand on the platform still references it: leave it; the secrets drift report
        # lists it as unknown to Keyward for a person to look at. The agent itself is in step.
        logger.warning("webhook secret %s left on the platform: %s", secret_id, exc.message)


def _find_by_tag(client: Any, tag: str, name: str, *, earlier_names: list[str] | None = None) -> str | None:
    """An earlier attempt may have created the agent and lost the answer: find it by its tag among the agents the
    platform's search finds by name, reading at most LOOKUP_PAGES pages in all (so a retried create costs at most
    LOOKUP_PAGES + 1 calls). The current name first, then a name the agent had before a rename (the lost attempt
    may have sent it), then archived agents. A failed read raises LookupUnfinished: the outcome stays unknown."""
    searches = [(n, False) for n in dict.fromkeys([name, *(earlier_names or [])]) if n] + [(name, True)]
    pages = 0
    try:
        for search, archived in searches:
            cursor = None
            while pages < LOOKUP_PAGES:
                page = client.list_agents(search=search, page_size=100, cursor=cursor, archived=archived)
                pages += 1
                for summary in page.get("agents", []):
                    if tag in (summary.get("tags") or []):
                        return summary["agent_id"]
                cursor = page.get("next_cursor")
                if not page.get("has_more") or not cursor:
                    break
            if pages >= LOOKUP_PAGES:
                break
    except errors.PlatformError as exc:
        raise LookupUnfinished(f"looking for what an earlier attempt made: {exc.message}",
                               retry_after=exc.retry_after) from None
    return None


class LookupUnfinished(errors.Unavailable):
    """The lookup for an earlier attempt's object failed: the earlier outcome is still unknown. No status is
    recorded (last_status stays None), so the next attempt looks again instead of creating a duplicate."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=None, code="lookup_unfinished", retry_after=retry_after)


def _earlier_names(agent_id: int | str, name: str) -> list[str]:
    """Names the agent (named `name` now) had before its latest renames (newest first), from its audit trail,
    which outlives the agent: a create whose answer was lost may have sent one of them."""
    return earlier_values(object_type="agents.agent", object_id=agent_id, action="agent.update", field="name",
                          current=name)


def _outcome_unknown(job: SyncJob) -> bool:
    """An earlier attempt may have made the agent without its answer arriving (a timeout, a lost connection, a
    worker that died mid-call, or a lookup for it that failed). Not after the platform answered with a refusal, a
    503 or a 429: it made nothing."""
    return attempted_before(job) and job.last_status is None


class MissingOnPlatform(errors.PlatformError):
    """The agent is gone from the platform; Keyward does not recreate it on its own."""


@register(AGENT_KIND)
def push_agent(job: SyncJob, client: Any) -> str | None:
    if job.op == SyncJob.Op.DELETE:
        remote_id = job.payload.get("remote_id")
        if job.payload.get("forget"):
            return remote_id  # an adopted agent forgotten in Keyward stays on the platform, untouched
        if not remote_id and attempted_before(job):
            # A create may have landed unrecorded; an agent no job ever tried was never created (no listing). Any
            # attempt before counts, not only the last: a pending job that took the delete in may have had its
            # create lost and then a refusal. Under the name that create sent, which a rename may have changed.
            name = job.payload.get("name", "")
            remote_id = remote_id_of_older_job(job) or _find_by_tag(
                client, job.payload.get("sync_tag", ""), name, earlier_names=_earlier_names(job.object_id, name))
        if remote_id:
            try:
                client.delete_agent(remote_id)
            except errors.NotFound:
                pass  # already gone: the delete is done
        if job.payload.get("webhook_secret_id"):
            _drop_webhook_secret(client, job.payload["webhook_secret_id"])  # no agent uses it any more
        return remote_id
    try:
        # get(), not first(): first() would order by the model's ordering, a join with the workspace per job.
        agent = Agent.objects.get(pk=job.object_id)
    except Agent.DoesNotExist:
        return None  # deleted since; its delete job carries the remote id
    if agent.credential_webhook and agent.credential_webhook_changed_at is not None:
        try:
            _ensure_webhook_secret(agent, client, outcome_unknown=_outcome_unknown(job))
        except Agent.DoesNotExist:
            return None  # deleted meanwhile; its delete job carries the remote id
    remote_id = agent.remote_id
    if not remote_id and agent.origin == Agent.Origin.KEYWARD:
        if _outcome_unknown(job):
            remote_id = _find_by_tag(client, agent.sync_tag, agent.name,
                                         earlier_names=_earlier_names(agent.pk, agent.name)) or ""
        if not remote_id:
            remote_id = client.create_agent(**agent_payload(agent))
            agent_mark_synced(agent_id=agent.pk, remote_id=remote_id)
            _after_push(agent, client)
            return remote_id
        agent_mark_synced(agent_id=agent.pk, remote_id=remote_id)
    if not remote_id:
        return None  # an adopted agent always has its remote id; nothing to do without one
    try:
        # Read first, then change only Keyward's settings on that copy: the team's prompt, voice, tools, knowledge
        # base, name and tags stay as they are, whether PATCH merges nested objects or replaces them.
        remote = client.get_agent(remote_id)
    except errors.NotFound:
        agent_mark_missing(agent_id=agent.pk)
        raise MissingOnPlatform(
            "The agent is gone from the platform (deleted there); Keyward does not recreate it on its own. "
            "Recreate it from Keyward or forget it on the drift page.", status=404, code="agent_missing") from None
    body = security_update(agent, remote)
    if body:
        client.update_agent(remote_id, **body)
    if agent.missing_since is not None:
        agent_mark_missing(agent_id=agent.pk, missing=False)
    _after_push(agent, client)
    return remote_id


def _after_push(agent: Agent, client: Any) -> None:
    """Webhook turned off: once the agent no longer references its secret, delete the secret."""
    if agent.credential_webhook or not agent.webhook_secret_remote_id:
        return
    _drop_webhook_secret(client, agent.webhook_secret_remote_id)
    Agent.objects.filter(pk=agent.pk, webhook_secret_remote_id=agent.webhook_secret_remote_id).update(
        webhook_secret_remote_id="", webhook_secret_key_id="")


# --- reconcile -----------------------------------------------------------------------------------------------
TAG_PREFIX = "keyward-"
AUTH_FIELDS = ("enable_auth", "allowlist", "require_origin_header")


WEBHOOK_ENABLED = "platform_settings.overrides.enable_conversation_initiation_client_data_from_webhook"
WEBHOOK_URL = "platform_settings.workspace_overrides.conversation_initiation_client_data_webhook.url"
WEBHOOK_SECRET = "platform_settings.workspace_overrides.conversation_initiation_client_data_webhook.secret_header"
# The webhook's secret header is compared, never reported: drift shows one of these labels, not a value.
SECRET_CURRENT = "Keyward's secret, current key"
SECRET_OLDER = "Keyward's secret, older key"
SECRET_MISSING = "a secret no longer on the platform"
SECRET_OTHER = "another secret"
SECRET_PLAIN = "a plain-text value"
SECRET_NONE = "none"


SHAREABLE = "platform_settings.auth.shareable_link"
ARCHIVED = "platform_settings.archived"


def _comparable(agent: Agent) -> dict[str, Any]:
    auth = agent.platform_auth()
    state: dict[str, Any] = {}
    if agent.origin == Agent.Origin.KEYWARD:
        state["name"] = agent.name  # an adopted agent's name is the team's, not Keyward's
    if agent.max_duration_seconds or agent.origin == Agent.Origin.KEYWARD:
        state["max_duration_seconds"] = agent.max_duration_seconds or DEFAULT_MAX_DURATION
    for name in AUTH_FIELDS:
        state[f"platform_settings.auth.{name}"] = auth[name]
    if not agent.allow_shareable_link:
        state[SHAREABLE] = "closed"
    state[ARCHIVED] = False
    if agent.credential_webhook_changed_at is not None:
        # Compared only once Keyward manages the initiation webhook (as agent_payload sends it only then).
        from agents.webhook import webhook_url

        enabled = bool(agent.credential_webhook)
        state[WEBHOOK_ENABLED] = enabled
        state[WEBHOOK_URL] = webhook_url() if enabled else None
        state[WEBHOOK_SECRET] = SECRET_CURRENT if enabled else SECRET_NONE
    return state


def _secret_label(agent: Agent, presented: Any, platform_secret_ids: set[str] | None) -> str:
    from agents.webhook import key_id

    if not presented:
        return SECRET_NONE
    if isinstance(presented, str):
        return SECRET_PLAIN  # readable by anyone who can read the agent on the platform
    secret_id = presented.get("secret_id") if isinstance(presented, dict) else None
    if not secret_id or secret_id != agent.webhook_secret_remote_id:
        return SECRET_OTHER
    if platform_secret_ids is not None and secret_id not in platform_secret_ids:
        return SECRET_MISSING
    # A secret signed with an older BROKER_WEBHOOK_KEY still verifies, but is reported so the agent is re-pushed
    # before that key is dropped.
    return SECRET_CURRENT if hmac.compare_digest(agent.webhook_secret_key_id, key_id()) else SECRET_OLDER


def _remote_comparable(remote: dict[str, Any], agent: Agent,
                       platform_secret_ids: set[str] | None = None) -> dict[str, Any]:
    # Only what Keyward owns; shareable_token and the rest of the agent are the platform's business.
    platform_settings = remote.get("platform_settings") or {}
    auth = platform_settings.get("auth") or {}
    conversation = (remote.get("conversation_config") or {}).get("conversation") or {}
    state: dict[str, Any] = {"name": remote.get("name"),
                             "max_duration_seconds": conversation.get("max_duration_seconds")}
    for name in AUTH_FIELDS:
        state[f"platform_settings.auth.{name}"] = auth.get(name)
    # Whether the link is open, never the token itself.
    state[SHAREABLE] = "open" if auth.get("shareable_token") else "closed"
    state[ARCHIVED] = bool(platform_settings.get("archived"))
    if agent.credential_webhook_changed_at is not None:
        from agents.webhook import HEADER

        overrides = platform_settings.get("overrides") or {}
        hook = (platform_settings.get("workspace_overrides") or {}).get("conversation_initiation_client_data_webhook")
        hook = hook if isinstance(hook, dict) else {}
        headers = hook.get("request_headers") or {}
        presented = next((v for k, v in headers.items() if k.lower() == HEADER.lower()), None)
        state[WEBHOOK_ENABLED] = bool(overrides.get("enable_conversation_initiation_client_data_from_webhook"))
        state[WEBHOOK_URL] = hook.get("url") or None
        state[WEBHOOK_SECRET] = _secret_label(agent, presented, platform_secret_ids)
    return state


def _normalised(field: str, value: Any) -> Any:
    if field == "platform_settings.auth.allowlist":
        # Order carries no meaning on the platform; compare the hostnames as a set, report them sorted.
        return sorted(h.get("hostname", "") if isinstance(h, dict) else str(h) for h in (value or []))
    return value


def agent_differences(agent: Agent, remote: dict[str, Any],
                      platform_secret_ids: set[str] | None = None) -> dict[str, list[Any]]:
    """{field: [local, remote]} for the fields Keyward sets on the platform (no secret among them: the
    webhook's secret header is reported as a label, never as a value). With `platform_secret_ids`, a webhook
    secret that is no longer on the platform is reported too."""
    local, theirs = _comparable(agent), _remote_comparable(remote, agent, platform_secret_ids)
    differences = {}
    for field, value in local.items():
        mine, other = _normalised(field, value), _normalised(field, theirs[field])
        if mine != other:
            differences[field] = [mine, other]
    return differences


@register_reconciler(AGENT_KIND)
def reconcile_agents(client: Any, workspace_ids: set[int] | None = None) -> Iterator[DriftItem]:
    """Every local agent against its remote copy (by remote id, else by its Keyward tag), then every remote
    agent no local agent accounts for: untagged, tagged for an agent Keyward no longer has, or a duplicate."""
    # Archived agents too: the platform lists them only when asked, and one archived there is drift, not missing.
    remote = {summary["agent_id"]: summary for archived in (False, True)
              for summary in client.iter_agents(archived=archived)}
    by_tag: dict[str, list[str]] = {}
    for agent_id, summary in remote.items():
        for tag in summary.get("tags") or []:
            if tag.startswith(TAG_PREFIX):
                by_tag.setdefault(tag, []).append(agent_id)
    local = list(in_scope(Agent.objects.order_by("pk"), workspace_ids))
    # One secrets listing, only when some agent keeps its webhook secret there.
    platform_secret_ids = ({str(s["secret_id"]) for s in client.list_secrets()}
                           if any(a.webhook_secret_remote_id for a in local) else None)
    matched: set[str] = set()
    report_progress(0, len(local))
    for done, agent in enumerate(local, 1):
        remote_id = agent.remote_id or next(iter(by_tag.get(agent.sync_tag, [])), "")
        found = None
        if remote_id:
            try:
                # Also finds an archived agent, which the default listing leaves out.
                found = client.get_agent(remote_id)
            except errors.NotFound:
                found = None
        item = dict(kind=AGENT_KIND, object_id=agent.pk, workspace_id=agent.workspace_id, label=agent.name)
        if found is None:
            yield DriftItem(remote_id=agent.remote_id or None, problem=MISSING_REMOTELY, **item)
        else:
            matched.add(remote_id)
            differences = agent_differences(agent, found, platform_secret_ids)
            if remote_id != agent.remote_id:
                differences["remote_id"] = [agent.remote_id, remote_id]
            if differences:
                yield DriftItem(remote_id=remote_id, problem=DIFFERS, fields=differences, **item)
        report_progress(done, len(local))
    for agent_id, summary in remote.items():
        if agent_id not in matched:
            yield DriftItem(kind=AGENT_KIND, object_id=None, remote_id=agent_id, problem=UNKNOWN_LOCALLY,
                            label=summary.get("name") or "")


@register_objects(AGENT_KIND)
def agent_objects() -> Iterator[LocalObject]:
    for pk, workspace_id, name in Agent.objects.order_by("pk").values_list("pk", "workspace_id", "name").iterator():
        yield LocalObject(pk, workspace_id, name)
