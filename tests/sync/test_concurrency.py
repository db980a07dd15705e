"""Claiming under real concurrency: two processes drain one PostgreSQL outbox at the same moment."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from agents.models import Agent
from project.platform.client import PlatformClient
from project.sync.models import SyncJob
from tests.factories import WorkspaceFactory
from tests.sync.workers import EMULATOR_KEY, ROOT, database_url_for_workers, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

JOBS = 300

# Each process sets Django up, waits for the start file (so both drain at once), drains, prints its count.
DRAIN = textwrap.dedent("""
    import os, sys, time
    import django
    django.setup()
    from project.sync.services import outbox_drain
    start = sys.argv[1]
    while not os.path.exists(start):
        time.sleep(0.005)
    print(outbox_drain(max_jobs=100000, batch=5, time_budget=120))
""")


def test_two_processes_on_postgresql_never_take_the_same_job(loopback_emulator, tmp_path):
    database_url = database_url_for_workers()
    emulator, url = loopback_emulator
    workspace = WorkspaceFactory()
    agents = Agent.objects.bulk_create(Agent(workspace=workspace, name=f"Agent {i}") for i in range(JOBS))
    # Already on the platform, so each job is exactly one PATCH and double work would show in the count.
    with PlatformClient("http://emulator.test", EMULATOR_KEY, transport=httpx.MockTransport(emulator.handle)) as c:
        for agent in agents:
            agent.remote_id = c.create_agent(name=agent.name, conversation_config={}, platform_settings={},
                                             tags=[agent.sync_tag])
    Agent.objects.bulk_update(agents, ["remote_id"])
    SyncJob.objects.bulk_create(SyncJob(kind="agent", object_id=str(a.pk), workspace_id=workspace.pk)
                                for a in agents)
    emulator.set_faults(latency=0.002)  # long enough a drain for the two to overlap
    start = tmp_path / "go"
    env = worker_env(database_url=database_url, broker_url="memory://", queue="unused", platform_url=url)
    procs = [subprocess.Popen([sys.executable, "-c", DRAIN, str(start)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        start.touch()
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    counts = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
        counts.append(int(out.strip().splitlines()[-1]))
    assert sum(counts) == JOBS and all(counts), f"each process should have run some jobs: {counts}"
    assert emulator.call_counts.get("PATCH /v1/convai/agents/{agent_id}") == JOBS  # no job ran twice
    assert set(SyncJob.objects.values_list("state", "attempts")) == {("done", 1)}


def test_threads_of_one_worker_share_the_work_and_run_each_job_once(platform, emulator, monkeypatch):
    database_url_for_workers()  # the threads need committed rows they can all see: PostgreSQL
    workspace = WorkspaceFactory()
    agents = Agent.objects.bulk_create(Agent(workspace=workspace, name=f"Threaded {i}") for i in range(60))
    SyncJob.objects.bulk_create(SyncJob(kind="agent", object_id=str(a.pk), workspace_id=workspace.pk)
                                for a in agents)
    from project.sync.services import drain

    claimers: set[str] = set()
    claim = drain.jobs_claim

    def recording_claim(*, worker: str, **options) -> list[SyncJob]:
        jobs = claim(worker=worker, **options)
        if jobs:
            claimers.add(worker)
        return jobs

    monkeypatch.setattr(drain, "jobs_claim", recording_claim)
    assert drain.outbox_drain(threads=4, batch=8) == 60
    assert len(claimers) == 4
    assert emulator.call_counts == {"POST /v1/convai/agents/create": 60}
    assert set(SyncJob.objects.values_list("state", "attempts")) == {("done", 1)}
    assert Agent.objects.filter(remote_id="").count() == 0
