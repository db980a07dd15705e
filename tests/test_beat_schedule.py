"""The beat's schedule has one home, settings.CELERY_BEAT_SCHEDULE: every entry names a task a worker knows, runs
at the interval of its own setting, and that setting is in the README's configuration tables."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from django.conf import settings

from project.celery import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# The schedule as the README describes it: which setting paces which task.
EXPECTED = {
    "sync.drain_outbox": "SYNC_DRAIN_INTERVAL_SECONDS",
    "sync.reconcile": "RECONCILE_INTERVAL_SECONDS",
    "sync.prune_done_jobs": "SYNC_PRUNE_INTERVAL_SECONDS",
    "secrets_app.refresh_credentials": "VAULT_REFRESH_INTERVAL_SECONDS",
    "detection.watch_usage": "DETECTION_USAGE_INTERVAL_SECONDS",
    "detection.watch_concurrency": "DETECTION_CONCURRENCY_SAMPLE_SECONDS",
    "keys.sweep": "API_KEY_SWEEP_INTERVAL_SECONDS",
    "broker.prune_sessions": "BROKER_PRUNE_INTERVAL_SECONDS",
    "workspaces.sweep_platform_accounts": "PLATFORM_ACCOUNT_SWEEP_INTERVAL_SECONDS",
    "sync.refresh_observations": "GUARDRAIL_INTERVAL_SECONDS",
}


def _declared() -> dict[str, dict]:
    # The settings module read afresh: Celery shares the live dict, so anything adding periodic tasks at
    # start-up (add_periodic_task) would show up in settings.CELERY_BEAT_SCHEDULE too.
    return runpy.run_path(str(ROOT / "project" / "settings.py"))["CELERY_BEAT_SCHEDULE"]


def _scheduled() -> dict[str, object]:
    return {entry["task"]: entry["schedule"] for entry in _declared().values()}


def test_every_entry_names_a_registered_task():
    app.loader.import_default_modules()
    unknown = sorted(set(_scheduled()) - set(app.tasks))
    assert unknown == []


def test_every_periodic_task_is_in_the_settings_at_its_documented_interval():
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README.read_text(), flags=re.MULTILINE))
    assert _scheduled() == {task: getattr(settings, name) for task, name in EXPECTED.items()}
    assert set(EXPECTED.values()) <= documented
    assert all(interval > 0 for interval in _scheduled().values())


def test_celery_schedules_exactly_the_settings_entries():
    # Nothing adds periodic tasks on the side (add_periodic_task): the beat runs what the settings list.
    app.loader.import_default_modules()
    app.finalize()
    assert {name: entry["task"] for name, entry in app.conf.beat_schedule.items()} == {
        name: entry["task"] for name, entry in _declared().items()}
    assert app.conf.beat_schedule is settings.CELERY_BEAT_SCHEDULE
