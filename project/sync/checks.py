"""The start-up check of the sync catalogue: every catalogued kind has a push handler, and every registered
handler, reconciler or object lister serves a catalogued kind. Registered by SyncConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.core import checks

from project.sync import kinds, registry


def check_sync_kinds(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """sync.E001: a catalogued kind nobody pushes (its jobs would fail "no sync handler" at every drain).
    sync.E002: a kind some app registered that the catalogue lacks (job_enqueue would refuse its jobs)."""
    problems: list[checks.CheckMessage] = []
    for kind in sorted(kinds.CATALOGUE - set(registry.kinds())):
        problems.append(checks.Error(
            f"Sync kind {kind!r} is in the catalogue but no app registered a push handler for it.",
            hint="Register one with @project.sync.registry.register(SyncKind...) in the app's sync.py, imported "
                 "from its AppConfig.ready(), or take the kind out of project/sync/kinds.py.",
            obj=kind, id="sync.E001"))
    registered = {
        "push handler": registry.kinds(), "reconciler": registry.reconciler_kinds(),
        "object lister": registry.resync_kinds(),
    }
    for role, names in registered.items():
        for kind in sorted(set(names) - kinds.CATALOGUE):
            problems.append(checks.Error(
                f"A sync {role} is registered for kind {kind!r}, which is not in the catalogue.",
                hint="Add the kind to SyncKind in project/sync/kinds.py (or fix the name the app registers).",
                obj=kind, id="sync.E002"))
    return problems
