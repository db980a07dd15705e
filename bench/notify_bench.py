#!/usr/bin/env python
"""Raise many alerts in one pass, fanned out to three notification channels, and drain the deliveries to a receiver
on loopback: prints deliveries per second and the time until the outbox is empty.

    python bench/notify_bench.py                 # 1,000 alerts x 3 channels (3,000 deliveries)
    python bench/notify_bench.py --full          # 10,000 alerts x 3 channels (30,000 deliveries)
    python bench/notify_bench.py --alerts 20     # tiny (tests/test_benchmarks.py)

The channels are a Slack-compatible webhook, PagerDuty Events v2 (PAGERDUTY_EVENTS_URL pointed at the receiver) and
a generic webhook signed per Standard Webhooks, routed by one default rule; the receiver (its own process, a
threaded HTTP server on 127.0.0.1) answers 202 to everything. The pass raises every alert through
``alerts_raise_many`` in one transaction, as a detection pass (rules, credit guard, leak check) does (deliveries and
their outbox jobs are written there, nothing is sent); then ``outbox_drain`` runs in this process
(SYNC_DRAIN_THREADS threads) until nothing is due. The database is a temporary SQLite file unless DATABASE_URL is
set (then its tables are used, and the bench's rows removed).
Prints: ``raise pass:``, ``deliveries:``, ``deliveries/s:``, ``outbox empty after:``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE_SLUG = "notify-bench"

RECEIVER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(202)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
"""


def _start_receiver() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the receiver did not start: {line}")
    return proc, f"http://127.0.0.1:{line.split()[-1]}"


def _setup_django(database_url: str, receiver: str) -> None:
    os.environ.update({"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "true",
                       "LOG_LEVEL": "ERROR", "CELERY_TASK_ALWAYS_EAGER": "false",
                       "PAGERDUTY_EVENTS_URL": f"{receiver}/v2/enqueue"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _clear() -> None:
    from project.alerts.models import Alert, Delivery, NotificationChannel, NotificationRule
    from project.sync.models import SyncJob
    from workspaces.models import Workspace

    workspace = Workspace.objects.filter(slug=WORKSPACE_SLUG).first()
    if workspace is not None:
        SyncJob.objects.filter(workspace_id=workspace.pk).delete()
        Delivery.objects.filter(workspace_id=workspace.pk).delete()
        Alert.objects.filter(workspace=workspace).delete()
        NotificationRule.objects.filter(workspace=workspace).delete()
        NotificationChannel.objects.filter(workspace=workspace).delete()
        workspace.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1_000, help="alerts raised in the pass (default 1,000)")
    parser.add_argument("--full", action="store_true", help="the issue's size: 10,000 alerts")
    args = parser.parse_args()
    if args.full:
        args.alerts = 10_000

    with tempfile.TemporaryDirectory(prefix="notify-bench-") as tmp_dir:
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tmp_dir) / 'bench.sqlite3'}"
        receiver, url = _start_receiver()
        try:
            _setup_django(database_url, url)
            from django.core.management import call_command
            from django.db import transaction
            from django.test.utils import override_settings

            call_command("migrate", verbosity=0, interactive=False)
            from project.actors import SYSTEM
            from project.alerts import services
            from project.sync import services as sync_services
            from project.sync.models import SyncJob
            from workspaces.models import Workspace
            from workspaces.services.platform_accounts import default_account

            _clear()
            workspace = Workspace.objects.create(name="Notify bench", slug=WORKSPACE_SLUG,
                                                 platform_account=default_account())
            slack, _ = services.notification_channel_save(actor=SYSTEM, workspace=workspace, name="chat",
                                                          kind="slack", url=f"{url}/services/T/B/X")
            pager, _ = services.notification_channel_save(actor=SYSTEM, workspace=workspace, name="pager",
                                                          kind="pagerduty", routing_key="benchroutingkey0123456789")
            hook, _ = services.notification_channel_save(actor=SYSTEM, workspace=workspace, name="siem",
                                                         kind="webhook", url=f"{url}/hook")
            services.notification_rule_save(actor=SYSTEM, workspace=workspace, name="default", severities=[],
                                            kinds=[], channels=[slack, pager, hook], is_default=True)

            sync_services._kick = lambda: None  # no broker here: the drain below is the worker
            began = time.perf_counter()
            with transaction.atomic():
                services.alerts_raise_many(actor=SYSTEM, alerts=[
                    services.alert_build(workspace=workspace, kind="usage_spike", severity="high",
                                         title=f"Spike on bench key {i}", dedup_key=f"bench:{i}",
                                         details={"credits_last_hour": 1000 + i, "baseline": 40})
                    for i in range(args.alerts)])
            raised = time.perf_counter() - began
            print(f"raise pass: {args.alerts:,} alerts in {raised:.2f} s ({args.alerts / raised:,.0f} alerts/s, "
                  "deliveries and outbox jobs written in the same transaction)", flush=True)

            expected = args.alerts * 3
            began = time.perf_counter()
            with override_settings(SYNC_DRAIN_TIME_BUDGET_SECONDS=10**9):
                done = 0
                while True:
                    ran = sync_services.outbox_drain(max_jobs=10**9, time_budget=10**9)
                    done += ran
                    if not ran:
                        break
            elapsed = time.perf_counter() - began
            left = SyncJob.objects.filter(workspace_id=workspace.pk).exclude(state="done").count()
            delivered = SyncJob.objects.filter(workspace_id=workspace.pk, kind="notification", state="done").count()
            if delivered != expected or left:
                problems = list(SyncJob.objects.exclude(state="done").values_list("state", "last_error")[:5])
                raise SystemExit(f"delivered {delivered} of {expected}; {left} left: {problems}")
            print(f"deliveries: {delivered:,} (3 channels)", flush=True)
            print(f"deliveries/s: {delivered / elapsed:,.0f}", flush=True)
            print(f"outbox empty after: {elapsed:.2f} s", flush=True)
            _clear()
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
