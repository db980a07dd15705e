"""Fault tests: real worker processes on a real broker and PostgreSQL, against the emulator on loopback.

- 1,000 changes while the platform fails 30% of calls with 5xx and some with 429, and one of two workers is
  SIGKILLed midway: every change reaches the platform exactly once in effect, none is lost.
- The broker is unreachable while changes commit: they commit, and sync once a worker runs on a live broker.
"""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection
from django.db.models import Q

from agents import services as agent_services
from agents.models import Agent
from agents.sync import agent_differences
from project.actors import SYSTEM
from project.sync.models import Drift, SyncJob
from project.sync.services import reconcile_run, reconcile_start
from tests.factories import UserFactory, WorkspaceFactory
from tests.sync.workers import (
    REDIS_BROKER_DOWN_URL,
    broker_or_skip,
    celery_publishing_to,
    database_url_for_workers,
    dead_port,
    purge_broker,
    redis_or_skip,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.broker, pytest.mark.slow]

CHANGES = 1000
AGENTS = 120
DELETES = 48
THREADS = 4
HOSTS = ["app.example.com", "voice.example.com", "localhost:3000", "support.example.org", "xn--bcher-kva.example"]

# Small numbers so the test runs in seconds: a lease that lapses fast after the kill, short backoff, a short
# account pause (a platform failing 35% of calls fails five in a row now and then, and one more failure after a
# pause pauses again: at the default 30 s, a chain of pauses outlasted the drain deadline under load), and
# enough attempts that 30% failures never exhaust them (dead jobs are tested on their own elsewhere).
FAULT_WORKER_SETTINGS = {"SYNC_LEASE_SECONDS": 3, "PLATFORM_TIMEOUT": 2, "SYNC_MAX_ATTEMPTS": 100,
                         "SYNC_BACKOFF_BASE_SECONDS": 0.05, "SYNC_BACKOFF_MAX_SECONDS": 0.5,
                         "SYNC_ACCOUNT_PAUSE_SECONDS": 0.5,
                         "SYNC_DRAIN_INTERVAL_SECONDS": 0.5, "RECONCILE_INTERVAL_SECONDS": 86400,
                         "SYNC_DRAIN_TIME_BUDGET_SECONDS": 20}


def _random_change(rng: random.Random, actor, agent: Agent) -> None:
    mode = rng.choice(["signed", "allowlist", "public", "rename", "message"])
    if mode == "signed":
        agent_services.agent_update(actor=actor, agent=agent, auth_mode="signed", allowlist=[])
    elif mode == "allowlist":
        agent_services.agent_update(actor=actor, agent=agent, auth_mode="allowlist",
                                    allowlist=rng.sample(HOSTS, rng.randint(1, len(HOSTS))))
    elif mode == "public":
        agent_services.agent_update(actor=actor, agent=agent, auth_mode="public", allowlist=[],
                                    max_duration_seconds=rng.randint(60, 3600))
    elif mode == "rename":
        agent_services.agent_update(actor=actor, agent=agent, name=f"{agent.name.split(' #')[0]} #{rng.random():.6f}")
    else:
        agent_services.agent_update(actor=actor, agent=agent, first_message=f"Hello {rng.randint(0, 10**6)}")


class Changer:
    """Makes changes through the services on its own agents (creates, updates, a few deletes), like one admin."""

    def __init__(self, seed: int, *, actor, workspace, agents: int, deletes: int) -> None:
        self.rng = random.Random(seed)
        self.actor, self.workspace = actor, workspace
        self.seed, self.agents_left, self.deletes_left = seed, agents, deletes
        self.alive: list[int] = []
        self.deleted: set[str] = set()
        self.made = 0
        self.error: BaseException | None = None

    def make(self, count: int) -> None:
        try:
            for _ in range(count):
                self._one()
                self.made += 1
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            connection.close()  # this thread's connection

    def _one(self) -> None:
        rng = self.rng
        if self.agents_left and (not self.alive or rng.random() < 0.3):
            agent = agent_services.agent_create(actor=self.actor, workspace=self.workspace,
                                                name=f"Agent {self.seed}-{self.agents_left}", auth_mode="signed")
            self.alive.append(agent.pk)
            self.agents_left -= 1
            return
        agent = Agent.objects.get(pk=rng.choice(self.alive))
        if self.deletes_left and len(self.alive) > 1 and rng.random() < 0.07:
            self.deleted.add(agent.sync_tag)
            self.alive.remove(agent.pk)
            agent_services.agent_delete(actor=self.actor, agent=agent)
            self.deletes_left -= 1
            return
        _random_change(rng, self.actor, agent)


def _make_changes(changers: list[Changer], count: int) -> None:
    """``count`` changes, shared among the changers, each in its own thread (the services wait on the
    database, so threads bring the 1,000 changes down to seconds)."""
    share = count // len(changers)
    threads = [threading.Thread(target=c.make, args=(share + (i < count % len(changers)),))
               for i, c in enumerate(changers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for changer in changers:
        if changer.error is not None:
            raise changer.error


def _quiet() -> bool:
    return not SyncJob.objects.filter(state__in=[SyncJob.State.PENDING, SyncJob.State.RUNNING]).exists()


def _job_summary() -> str:
    rows = SyncJob.objects.exclude(state__in=["done", "superseded"]).values_list("id", "state", "attempts",
                                                                               "last_error")[:20]
    return "\n".join(str(r) for r in rows)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_thousand_changes_survive_faults_and_a_killed_worker(broker, loopback_emulator, queue_name, workers,
                                                             monkeypatch):
    database_url = database_url_for_workers()
    broker_url = broker_or_skip(broker)
    emulator, platform_url = loopback_emulator
    purge_broker(broker_url, queue_name)
    env = worker_env(database_url=database_url, broker_url=broker_url, queue=queue_name,
                     platform_url=platform_url, **FAULT_WORKER_SETTINGS)
    workspace = WorkspaceFactory()
    actor = UserFactory(username="changer", is_superuser=True)  # builtin roles do not survive a flush
    emulator.set_faults(error_rate=0.3, error_status=503, rate_limit_rate=0.05, retry_after=0.1, latency=0.003,
                        seed=7)

    from project.celery import app

    with celery_publishing_to(broker_url), app.connection_for_write(broker_url) as conn, conn.Producer() as producer:
        publishing = threading.Lock()  # one producer, several changing threads

        def kick() -> None:
            # Every commit nudges a worker over the real broker, as the product does (on our own queue).
            with publishing:
                app.send_task("sync.drain_outbox", queue=queue_name, producer=producer)

        monkeypatch.setattr("project.sync.services._kick", kick)
        victim = workers.start("victim", env)
        workers.start("survivor", env, beat=True)  # the periodic drain runs here

        changers = [Changer(seed, actor=actor, workspace=workspace, agents=AGENTS // THREADS,
                            deletes=DELETES // THREADS) for seed in range(THREADS)]
        # Kill the victim while it holds claimed jobs, the first half of the changes still being made (the
        # workers drain as fast as they come): their leases must come back to the survivor.
        first_half_error: list[BaseException] = []

        def first_half() -> None:
            try:
                _make_changes(changers, CHANGES // 2)
            except BaseException as exc:  # noqa: BLE001 (raised below, in the test's thread)
                first_half_error.append(exc)

        making = threading.Thread(target=first_half)
        making.start()
        victim_marker = f":{victim.pid}:"
        try:
            held = wait_until(
                lambda: list(SyncJob.objects.filter(state=SyncJob.State.RUNNING, claimed_by__contains=victim_marker)
                             .values_list("id", flat=True)),
                timeout=60, every=0.002, what="the victim worker to hold a job", on_timeout=workers.outputs)
            workers.kill("victim")
        finally:
            making.join()
        if first_half_error:
            raise first_half_error[0]

        _make_changes(changers, CHANGES - CHANGES // 2)
        wait_until(_quiet, timeout=150, every=0.25, what="the outbox to drain",
                   on_timeout=lambda: _job_summary() + workers.outputs())

    assert sum(c.made for c in changers) == CHANGES
    # Nothing lost, nothing stuck: every job finished, none failed or died.
    assert not SyncJob.objects.filter(state__in=["failed", "dead", "discarded"]).exists(), _job_summary()
    assert set(SyncJob.objects.filter(pk__in=held).values_list("state", flat=True)) <= {"done", "superseded"}
    assert SyncJob.objects.filter(Q(attempts__gt=1) | ~Q(last_error="")).exists()  # the faults did bite

    # Exactly once in effect: one remote agent per local agent, each equal to the local state.
    remote = emulator.state_snapshot()["agents"]
    tags = [tag for agent in remote for tag in agent["tags"]]
    assert len(tags) == len(set(tags)) == len(remote), "duplicate remote agents"
    local = {agent.sync_tag: agent for agent in Agent.objects.all()}
    deleted = set().union(*(c.deleted for c in changers))
    assert deleted and not set(tags) & deleted, "a deleted agent is still on the platform"
    assert set(tags) == set(local), f"missing on the platform: {set(local) - set(tags)}"
    for copy in remote:
        agent = local[copy["tags"][0]]
        assert agent.remote_id == copy["agent_id"]
        assert agent_differences(agent, copy) == {}, agent.name
        assert copy["conversation_config"].get("agent", {}).get("first_message", "") == agent.first_message

    # And the reconciler, asked independently, finds no drift.
    emulator.set_faults(error_rate=0.0, rate_limit_rate=0.0, latency=0.0)
    from project.platform.client import PlatformClient
    from tests.sync.workers import EMULATOR_KEY

    with PlatformClient(platform_url, EMULATOR_KEY) as client:
        run = reconcile_run(run=reconcile_start(actor=SYSTEM, kinds=["agent"], enqueue=False), client=client)
    assert run.state == "done" and not Drift.objects.exists(), list(Drift.objects.values("problem", "fields"))


def test_changes_made_while_the_broker_is_down_sync_once_it_is_back(loopback_emulator, queue_name, workers,
                                                                   caplog):
    database_url = database_url_for_workers()
    broker_url = redis_or_skip(REDIS_BROKER_DOWN_URL)
    emulator, platform_url = loopback_emulator
    purge_broker(broker_url, queue_name)
    workspace = WorkspaceFactory()
    actor = UserFactory(username="changer", is_superuser=True)  # builtin roles do not survive a flush

    with celery_publishing_to(f"redis://127.0.0.1:{dead_port()}/0"):
        agents = [agent_services.agent_create(actor=actor, workspace=workspace, name=f"Offline {i}",
                                              auth_mode="allowlist", allowlist=["app.example.com"])
                  for i in range(10)]
        agent_services.agent_update(actor=actor, agent=agents[0], allowlist=["changed.example.com"])
    # The changes committed, the nudges failed quietly, and the rows wait.
    assert "periodic drain will pick the change up" in caplog.text
    assert SyncJob.objects.filter(state="pending").count() == 10
    assert emulator.call_counts == {}

    # The broker is back: a worker with its beat (and no nudge at all) picks the changes up.
    env = worker_env(database_url=database_url, broker_url=broker_url, queue=queue_name, platform_url=platform_url,
                     SYNC_DRAIN_INTERVAL_SECONDS=0.5, RECONCILE_INTERVAL_SECONDS=86400)
    workers.start("revived", env, beat=True)
    wait_until(lambda: not Agent.objects.filter(remote_id="").exists() and _quiet(), timeout=60,
               what="the periodic drain to sync the changes", on_timeout=workers.outputs)
    remote = {a["agent_id"]: a for a in emulator.state_snapshot()["agents"]}
    assert len(remote) == 10
    first = Agent.objects.get(pk=agents[0].pk)
    assert remote[first.remote_id]["platform_settings"]["auth"]["allowlist"] == [{"hostname": "changed.example.com"}]
