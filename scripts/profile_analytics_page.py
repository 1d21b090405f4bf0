"""Where the Analytics page's time goes: each of its pipelines alone, then all six together, at 100,000 sessions.

    .venv/bin/python scripts/profile_analytics_page.py                  # 100,000 sessions
    .venv/bin/python scripts/profile_analytics_page.py --sessions 5000  # a quick look

Seeds the data of ``bench_analytics.py`` into a bundled mongod of its own, then, with the service's own functions
(no HTTP), times for the page's default window (the last 30 days) and for all time: each pipeline alone
(sequential), the six under ``asyncio.gather`` as the page runs them, and variants of the ``artifacts`` pipeline
that cut it after one stage (what the fetch, the ``$unwind`` and the ``$group`` each cost). Prints medians of
``--calls`` runs after one warm-up, plus mongod's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_analytics import cpu_ms, insert_sessions, prepare
from handoff.analytics import pipelines
from handoff.analytics import service as analytics
from handoff.analytics.expressions import ALL_TIME, Bucket, Window
from handoff.config import Settings
from handoff.db import create_client, init_database
from handoff.localdb import start_mongod
from handoff.sessions.models import Session

TOP = 10


def page_calls(workspace_id: str, window: Window) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The six calls of the Analytics page (``ui/insights.py``), by name."""
    return {
        "summary": lambda: analytics.summary(workspace_id, window=window),
        "activity": lambda: analytics.activity(workspace_id, bucket=Bucket.DAY, window=window),
        "agents": lambda: analytics.agents(workspace_id, window=window),
        "artifacts": lambda: analytics.artifacts(workspace_id, limit=TOP, window=window),
        "errors": lambda: analytics.errors(workspace_id, limit=TOP, window=window),
        "stale": lambda: analytics.stale(workspace_id, limit=TOP, window=window),
    }


def artifact_stages(workspace_id: str, window: Window) -> dict[str, list[dict[str, Any]]]:
    """The ``artifacts`` pipeline cut after each of its costs, to see what each adds."""
    full = pipelines.artifacts(workspace_id, window, TOP)
    match, project, group = full[0], full[1], full[4]["$group"]
    by_action = [name for name in group if name not in ("_id", "touches", "sessions")]
    return {
        "artifacts: fetch only ($match, $project, $count)": [match, project, {"$count": "n"}],
        "artifacts: + $unwind ($count)": [match, project, {"$unwind": "$entry"}, {"$count": "n"}],
        "artifacts: + $group without sessions": [
            match,
            project,
            {"$unwind": "$entry"},
            {"$group": {"_id": "$entry.path", "touches": {"$sum": 1}}},
            {"$sort": {"touches": -1}},
            {"$limit": TOP},
        ],
        "artifacts: two-level $group (path, session), then path": [
            match,
            project,
            {"$unwind": "$entry"},
            {
                "$group": {
                    "_id": {"path": "$entry.path", "session": "$session_id"},
                    "touches": {"$sum": 1},
                    **{name: group[name] for name in by_action},
                }
            },
            {
                "$group": {
                    "_id": "$_id.path",
                    "touches": {"$sum": "$touches"},
                    "sessions": {"$sum": 1},
                    **{name: {"$sum": f"${name}"} for name in by_action},
                }
            },
            {"$sort": {"touches": -1, "_id": 1}},
            {"$limit": TOP},
        ],
        "artifacts: only path and action projected, no sessions set": [
            match,
            {"$project": {"_id": 0, "session_id": 1, "artifacts.path": 1, "artifacts.action": 1}},
            {"$unwind": "$artifacts"},
            {"$group": {"_id": "$artifacts.path", "touches": {"$sum": 1}}},
            {"$sort": {"touches": -1}},
            {"$limit": TOP},
        ],
        "artifacts: whole pipeline": full,
    }


async def timed(call: Callable[[], Awaitable[Any]], calls: int, mongod: int) -> tuple[float, float]:
    """Median wall ms and mongod CPU ms per call."""
    await call()
    walls = []
    cpu = cpu_ms(mongod)
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        walls.append((time.perf_counter() - began) * 1000)
    return statistics.median(walls), (cpu_ms(mongod) - cpu) / calls


async def measure(url: str, database: str, workspace_id: str, calls: int, mongod: int) -> None:
    client = create_client(url, Settings(mongodb_url=url, database=database))
    await init_database(client, database)
    collection = Session.get_pymongo_collection()
    try:
        month = Window(since=(datetime.now(UTC) - timedelta(days=29)).replace(hour=0, minute=0, second=0))
        week = Window(since=(datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0))
        windows = (("last 30 days", month), ("last 7 days", week), ("all time", ALL_TIME))
        for label, window in windows:
            print(f"\n### {label}\n\n| what | p50 ms | mongod CPU ms/call |\n|---|---:|---:|")
            named = page_calls(workspace_id, window)
            for name, call in named.items():
                wall, cpu = await timed(call, calls, mongod)
                print(f"| {name} alone | {wall:.0f} | {cpu:.0f} |")

            async def gathered(named: dict[str, Callable[[], Awaitable[Any]]] = named) -> None:
                await asyncio.gather(*(call() for call in named.values()))

            wall, cpu = await timed(gathered, calls, mongod)
            print(f"| all six, gathered (the page) | {wall:.0f} | {cpu:.0f} |")
            variants = artifact_stages(workspace_id, window)
            # ``stale`` as it was before its walk was bounded by the window (for a side-by-side figure).
            unbounded = pipelines.stale(workspace_id, window, now=datetime.now(UTC), idle_minutes=30, limit=TOP)
            unbounded[0]["$match"]["last_active_at"].pop("$gte", None)
            variants["stale, walk not bounded by the window (before)"] = unbounded
            for name, stages in variants.items():

                async def run(stages: list[dict[str, Any]] = stages, name: str = name) -> None:
                    options = {"hint": pipelines.ARTIFACTS_INDEX} if name.startswith("artifacts") else {}
                    cursor = await collection.aggregate(stages, **options)
                    await cursor.to_list(None)

                wall, cpu = await timed(run, calls, mongod)
                print(f"| {name} | {wall:.0f} | {cpu:.0f} |")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-analytics-") as tmp:
        server = start_mongod(Path(tmp) / "db")
        try:
            database = "profile_analytics"
            workspace_id, _, other_id = asyncio.run(prepare(server.url, database))
            seconds, _ = insert_sessions(server.url, database, workspace_id, args.sessions, seed=args.seed)
            insert_sessions(server.url, database, other_id, 1_000, seed=args.seed + 1)
            print(f"{args.sessions:,} sessions inserted in {seconds:.1f} s; load average {os.getloadavg()}")
            asyncio.run(measure(server.url, database, workspace_id, args.calls, server.pid))
            print(f"\nload average at the end (1/5/15 min): {os.getloadavg()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
