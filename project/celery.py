"""Celery application. The outbox row is the durable record of work; a message is only a wake-up call.

The periodic tasks are settings.CELERY_BEAT_SCHEDULE (read here through the CELERY namespace), nowhere else."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("keyward")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    # A killed worker must hand its task back, and one worker must not hoard messages.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Above the HTTP timeouts (10 s read) times a batch, below the outbox lease.
    task_soft_time_limit=90,
    task_time_limit=110,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.on_after_configure.connect
def _publish_fails_fast(sender: Celery, **_: object) -> None:
    # Publishing tries the broker once. With the broker down a nudge then fails in milliseconds instead of
    # holding the admin's request for seconds of reconnect attempts; the outbox row is the record and the
    # periodic drain runs it. Workers' consumers reconnect with their own retry settings, untouched by this.
    sender.conf.broker_transport_options = {"max_retries": 0, **(sender.conf.broker_transport_options or {})}


app.autodiscover_tasks()

