"""Where a benchmark's CPU time went, from /proc (Linux): per group of processes, and the whole machine's busy time.

Used by the load and sync benchmarks to show what shares the two cores with the code being measured (the database,
the emulator, the load generator), so a throughput figure can be read against what the machine had left. On a system
without /proc every reading is empty and the scripts print no split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

AVAILABLE = Path("/proc/self/stat").exists()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) and of their children that have exited (the
    database's backends of closed connections, reaped by its server process); 0 for one that is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14 to 17 of proc(5)
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


def processes(comm: str) -> list[int]:
    """Every process whose command name is ``comm`` ('postgres': PostgreSQL's server and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def tree(pid: int) -> list[int]:
    """A process and its children (a server's workers, a Celery worker's pool)."""
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return [pid, *children]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core; idle and I/O wait excluded) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Split:
    """CPU seconds per named group of processes over a phase, per unit of work. ``groups`` maps a name to a function
    giving the group's pids at reading time (processes come and go: a phase is read at its start and its end)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        readings = {name: cpu_seconds(pids()) for name, pids in self.groups.items()}
        readings["machine"] = machine_busy_seconds()
        return readings

    def start(self) -> None:
        self.before = self._read() if AVAILABLE else {}

    def line(self, units: int, *, unit: str, seconds: float, extra: dict[str, float] | None = None) -> str:
        """``<group> X ms, ...; all of these Y ms per <unit>; the machine busy Z of N cores`` ('' without /proc)."""
        if not AVAILABLE or not self.before or not units:
            return ""
        after = self._read()
        used = {name: after[name] - self.before.get(name, 0.0) for name in self.groups}
        used.update(extra or {})
        parts = ", ".join(f"{name} {value * 1000 / units:.2f} ms" for name, value in used.items())
        busy = (after["machine"] - self.before["machine"]) / seconds if seconds > 0 else float("nan")
        return (f"{parts}; these together {sum(used.values()) * 1000 / units:.2f} ms per {unit}; the machine busy "
                f"{busy:.2f} of {os.cpu_count()} cores")
