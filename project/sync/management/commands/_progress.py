"""Progress lines for the terminal, shared by the reconcile and resync commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from project.sync.models import ReconcileRun


def printer(out: TextIO, *, every: float = 1.0) -> Callable[[ReconcileRun], None]:
    """A progress callback: a line when a kind starts and when it completes, and at most one a second between."""
    last: dict[str, object] = {"at": 0.0, "line": None, "kind": None}

    def show(run: ReconcileRun) -> None:
        if not run.current_kind:
            return
        now = time.monotonic()
        line = f"  {run.current_kind}: {run.done}/{run.total}"
        if run.percent is not None:
            line += f" ({run.percent}%)"
        milestone = run.current_kind != last["kind"] or run.done == run.total
        if line == last["line"] or (not milestone and now - float(last["at"]) < every):  # type: ignore[arg-type]
            return
        last.update(at=now, line=line, kind=run.current_kind)
        out.write(line + "\n")
        out.flush()

    return show
