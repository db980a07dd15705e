"""Demo rows for `seed_demo`: each new demo workspace mails its alerts to a demo address, so `make run` shows
notifications at work (the development email backend writes them under var/mail/)."""

from __future__ import annotations

from typing import Any

from project.actors import SYSTEM


def seed_notifications(*, workspaces: list[Any], fresh: set[int], **_: Any) -> None:
    from project.alerts.services import notification_channel_save, notification_rule_save

    for workspace in workspaces[:2]:  # the two named demo workspaces, not the --scale filler
        if workspace.pk not in fresh:
            continue
        channel, _ = notification_channel_save(actor=SYSTEM, workspace=workspace, name="Security team (demo)",
                                               kind="email", addresses=f"security@{workspace.slug}.example")
        notification_rule_save(actor=SYSTEM, workspace=workspace, name="Everything (demo default)", severities=[],
                               kinds=[], channels=[channel], is_default=True)


demo_seeders = [seed_notifications]
