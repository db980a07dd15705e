#!/usr/bin/env python
"""`make bench`: run every script in bench/ (their own output as they print it), then one table of the figures
the speed goals are about: each figure, its goal, met or missed. A figure a run did not print (a script skipped,
Redis or PostgreSQL absent) is shown as "not measured".

    python scripts/bench_summary.py                 # every bench at its default size
    python scripts/bench_summary.py --full          # the sizes of the goals (much longer)
    python scripts/bench_summary.py --only keys_bench,dashboard_bench
    python scripts/bench_summary.py --from-log out.txt   # the table from a saved run's output, nothing run

Needs PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/keyward_bench) for the database
benches and the end-to-end sync run, and Redis (SYNC_BENCH_REDIS_URL, database 9 by default) for the latter.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


@dataclass(frozen=True)
class Goal:
    item: str
    figure: str
    pattern: str  # a regex whose groups are the numbers the check reads
    goal: str
    met: Callable[..., bool]
    show: Callable[..., str] = lambda *v: " / ".join(f"{x:,.2f}".rstrip("0").rstrip(".") for x in v)


GOALS = [
    Goal("1", "queue empty after a burst", rf"^queue empty after: {NUMBER}× the drain", "≤ 1.1× the drain",
         lambda r: r <= 1.1, lambda r: f"{r:.2f}×"),
    # On a backlog (the burst committed first): the workers' own pace. During a burst the figure is the producers'
    # commit rate on the same two cores (printed as "e2e one worker", with the rate the burst committed at).
    Goal("1", "one worker, end to end (backlog)", rf"^e2e backlog one worker: {NUMBER} jobs/s", "≥ 500 jobs/s",
         lambda n: n >= 500, lambda n: f"{n:,.0f} jobs/s"),
    Goal("1", "two workers / one, end to end (backlog)", rf"^e2e backlog two / one: {NUMBER}×", "≥ 1.7×",
         lambda r: r >= 1.7, lambda r: f"{r:.2f}×"),
    Goal("2", "session API / platform call, per request", rf"^session / platform call: {NUMBER}×", "≤ 2.5×",
         lambda r: r <= 2.5, lambda r: f"{r:.2f}×"),
    Goal("2", "session API p99 under load", rf"^session API: {NUMBER} sessions/s \(p50 {NUMBER} ms, p99 {NUMBER} ms",
         "≤ 20 ms", lambda rate, p50, p99: p99 <= 20, lambda rate, p50, p99: f"{p99:.1f} ms ({rate:.0f}/s)"),
    Goal("2", "limits exact under load", r"^limits exact: .*: (yes|NO)", "granted = min(N, limit)",
         lambda ok: ok == "yes", lambda ok: ok),
    Goal("2", "session overhead p50", rf"^session overhead p50: {NUMBER} ms", "< 2 ms", lambda ms: ms < 2,
         lambda ms: f"{ms:.2f} ms"),
    Goal("3", "leak check, many matches, first time", rf"^leak check, {NUMBER} matches first / again: {NUMBER} / ",
         "< 1,000 ms for 2,000", lambda n, ms: n >= 2000 and ms < 1000, lambda n, ms: f"{ms:,.0f} ms ({n:,.0f})"),
    Goal("3", "leak check queries, many matches vs 200",
         rf"^leak check queries: {NUMBER} \(200 matches(?s:.*)^leak check queries, [0-9,]+ matches: {NUMBER} first",
         "not per match (≤ 200-match count + 12)", lambda few, many: many <= few + 12,
         lambda few, many: f"{many:.0f} vs {few:.0f}"),
    Goal("4", "posture dashboard p50, 100,000 keys",
         rf"^dashboard \(superuser, all workspaces, 100,000 keys\) p50 / p95: {NUMBER}", "< 150 ms",
         lambda ms: ms < 150, lambda ms: f"{ms:,.0f} ms"),
    Goal("4", "posture dashboard queries", rf"^dashboard \(superuser, all workspaces, 100,000 keys\) queries: {NUMBER}",
         "≤ 12", lambda n: n <= 12, lambda n: f"{n:.0f}"),
    Goal("5", "credit guard, 100,000 keys", rf"^credit guard over {NUMBER} keys: {NUMBER} ms \({NUMBER} queries",
         "< 2,000 ms (~90,000 usable of 100,000)", lambda keys, ms, q: ms < 2000,
         lambda keys, ms, q: f"{ms:,.0f} ms, {q:.0f} queries ({keys:,.0f} keys)"),
    Goal("5", "rules pass raising alerts", rf"^rules over {NUMBER} hourly rows: {NUMBER} ms \({NUMBER} alerts raised, "
         rf"{NUMBER} queries", "< 5,000 ms for ~5,000 alerts", lambda rows, ms, alerts, q: alerts >= 4000 and ms < 5000,
         lambda rows, ms, alerts, q: f"{ms:,.0f} ms, {q:.0f} queries ({alerts:,.0f} alerts)"),
]


def _last(pattern: str, text: str) -> tuple[float, ...] | None:
    found = list(re.finditer(pattern, text, re.MULTILINE))
    if not found:
        return None
    return tuple(g if g in ("yes", "NO") else float(g.replace(",", "")) for g in found[-1].groups())


def admin_rows(text: str) -> list[tuple[str, str, str, str]]:
    """Item 6: every admin changelist row of admin_bench's table (≤ 6 queries, p50 < 150 ms)."""
    rows = []
    for m in re.finditer(r"^(.{14}) (.{16}) +([0-9]+) +([0-9.]+) +([0-9.]+)  ", text, re.MULTILINE):
        page, who, queries, p50 = m.group(1).strip(), m.group(2).strip(), int(m.group(3)), float(m.group(4))
        rows.append((f"admin {page} ({who})", f"{queries} queries, {p50:.0f} ms", "≤ 6 queries, p50 < 150 ms",
                     "met" if queries <= 6 and p50 < 150 else "missed"))
    return rows


def table(text: str) -> str:
    rows = [("item", "figure", "measured", "goal", "")]
    for goal in GOALS:
        values = _last(goal.pattern, text)
        if values is None:
            rows.append((goal.item, goal.figure, "not measured", goal.goal, "-"))
        else:
            met = "met" if goal.met(*values) else "missed"
            rows.append((goal.item, goal.figure, goal.show(*values), goal.goal, met))
    rows += [("6", figure, measured, goal, met) for figure, measured, goal, met in admin_rows(text)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    load = _last(r"^load average: ([0-9.]+)", text)
    tail = [f"load average during the run: {load[0]:.2f} on {os.cpu_count()} CPUs"] if load else []
    return "\n".join(["", "== speed goals (issue 20)", *lines, *tail])


def _run(script: str, args: list[str], env: dict[str, str]) -> str:
    print(f"== bench/{script}.py {' '.join(args)}", flush=True)
    proc = subprocess.Popen([sys.executable, f"bench/{script}.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = []
    for line in proc.stdout or ():
        print(line, end="", flush=True)
        out.append(line)
    if proc.wait():
        out.append(f"bench/{script}.py exited with {proc.returncode}\n")
        print(f"bench/{script}.py exited with {proc.returncode}", flush=True)
    return "".join(out)


def _sync_database(server: str) -> str:
    """sync_bench works in a database's own tables (it migrates them): one of its own, made if missing."""
    url = os.environ.get("SYNC_BENCH_DATABASE_URL", f"{server}/keyward_bench_sync")
    try:
        import psycopg

        base, name = url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 (the bench then says what it needs)
        print(f"(no PostgreSQL for the end-to-end sync run: {type(exc).__name__})", flush=True)
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the goals' sizes (much longer)")
    parser.add_argument("--only", help="comma-separated bench names (default: every script in bench/)")
    parser.add_argument("--from-log", type=Path, help="print the table of a saved run's output; run nothing")
    args = parser.parse_args()
    if args.from_log:
        print(table(args.from_log.read_text()))
        return 0
    server = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    database = {**env, "DATABASE_URL": env.get("DATABASE_URL", f"{server}/keyward_bench")}
    plans: dict[str, tuple[list[str], dict[str, str]]] = {
        "sync_bench": (["--e2e", *(["--full"] if args.full else [])], {**env, "DATABASE_URL": _sync_database(server)}),
        "broker_bench": ([], database),
        "load_bench": ([], {**env, "DATABASE_URL": f"{server}/postgres"}),
        "keys_bench": (["--runs", "10"], database),
        "dashboard_bench": (["--sizes", "10,100000", "--runs", "10"], database),
        "accounts_bench": (["--full"] if args.full else [], env),
        "discovery_bench": ([], env),
        "admin_bench": (["--rows-scale", "10"] if args.full else [], database),
    }
    names = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    text = f"load average: {os.getloadavg()[0]:.2f}\n"
    for name in names:
        plan_args, plan_env = plans.get(name, ([], env))
        text += _run(name, plan_args, plan_env)
    print(table(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
