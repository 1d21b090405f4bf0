"""Reading a Session body: the inclusion projection the service uses vs the exclusion projection it replaced.

    .venv/bin/python scripts/bench_projection.py
    .venv/bin/python scripts/bench_projection.py --calls 2000

Every route that answers a Session (get, list, every transition, ``mcp-context``) reads the session document
without its arrays. MongoDB 6.0 walks the arrays for an *exclusion* projection (``{work_log: 0, ...}``) even
though it drops them, so such reads grew with the log; the service names the fields it returns instead
(``sessions.store.SESSION_PROJECTION``). This script starts a bundled mongod of its own, stores one session
with 10 work-log entries and one with 10,000 (200 bytes of ``data`` each, the context lists kept as the appends
keep them), and times ``find_one`` by key with each projection on each session: ``--calls`` calls per series
after 50 warm-ups, series interleaved, PyMongo's sync client, median and p95.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pymongo import MongoClient

from _bench_common import DATABASE, bench_server, machine
from handoff import clock
from handoff.sessions import views
from handoff.sessions.store import SESSION_PROJECTION

SIZES = (10, 10_000)
#: What the service projected before (tuning log item 10): everything but the arrays.
EXCLUSION = {"_id": 0, "work_log": 0, "artifacts": 0, "recent_entries": 0, "notable_entries": 0}


def session_document(session_id: str, entries: int) -> dict[str, Any]:
    """A stored session as the appends leave it: ``entries`` info entries, a checkpoint every 100th."""
    now = clock.now()
    work_log = [
        {
            "id": f"e{n}",
            "message": f"step {n}",
            "type": "checkpoint" if n % 100 == 99 else "info",
            "data": {"text": "x" * 180},
            "timestamp": now,
        }
        for n in range(entries)
    ]
    return {
        "workspace_id": "ws_bench",
        "session_id": session_id,
        "status": "active",
        "agent_type": "bench",
        "work_log": work_log,
        "artifacts": [],
        **views.sum_increments(work_log),
        "artifact_count": 0,
        "last_checkpoint": views.last_checkpoint(work_log),
        **views.context_lists(work_log),
        "payload_bytes": 0,
        "started_at": now,
        "last_active_at": now,
        "created_at": now,
        "updated_at": now,
    }


def timed(read: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds of ``calls`` reads."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per series (default 1000)")
    args = parser.parse_args()
    with bench_server("bench-projection") as server, MongoClient(server.url) as client:
        print(machine(server.url))
        sessions = client[DATABASE]["sessions"]
        sessions.create_index([("workspace_id", 1), ("session_id", 1)], unique=True)
        for size in SIZES:
            sessions.insert_one(session_document(f"s{size}", size))
        series = {
            (name, size): partial(sessions.find_one, {"workspace_id": "ws_bench", "session_id": f"s{size}"}, projection)
            for name, projection in (("inclusion (now)", SESSION_PROJECTION), ("exclusion (before)", EXCLUSION))
            for size in SIZES
        }
        for read in series.values():
            timed(read, 50)
        results: dict[tuple[str, int], list[float]] = {key: [] for key in series}
        order = [key for key in series for _ in range(10)]
        random.Random(7).shuffle(order)
        for key in order:  # interleaved in slices of a tenth, so drift hits every series alike
            results[key] += timed(series[key], args.calls // 10)
        print("\n| projection | median ms @10 | median ms @10,000 | ratio | p95 ms @10 | p95 ms @10,000 |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in ("inclusion (now)", "exclusion (before)"):
            small, large = results[(name, SIZES[0])], results[(name, SIZES[1])]
            p50s, p50l = statistics.median(small), statistics.median(large)
            p95s = statistics.quantiles(small, n=20)[-1]
            p95l = statistics.quantiles(large, n=20)[-1]
            print(f"| {name} | {p50s:.3f} | {p50l:.3f} | {p50l / p50s:.2f} | {p95s:.3f} | {p95l:.3f} |")


if __name__ == "__main__":
    main()
