"""Benchmark the analytics routes at scale, through HTTP, and explain each pipeline's plan.

    .venv/bin/python scripts/bench_analytics.py                 # 100,000 sessions (the recorded run)
    .venv/bin/python scripts/bench_analytics.py --sessions 5000 # a quick look

It starts a bundled mongod of its own on a temporary directory (``handoff.localdb.start_mongod``, the server's
default settings), creates the indexes, bulk-inserts N sessions into one workspace (about 20 work-log entries
and a few artifacts each, spread over 90 days and 5 agent types, some replay chains and waiting handoffs) plus
1,000 sessions of a second workspace that must not count, runs ``handoff serve`` on loopback, and times each
route: p50 and p95 of ``--calls`` sequential calls after two warm-up calls. Then it explains every pipeline
(executionStats) and prints one table: latency, rows, and the plan's verdict (index used, covered or not, keys
and documents examined); the artifacts row is the reference pipeline (the rollup has not taken these sessions in
yet). Last, the artifacts route side by side on the same data: the reference pipeline, then the artifacts rollup
after its first pass, with the last day's sessions all dirty and with none, checking each answer against the
reference's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from _bench_common import serve
from handoff.analytics import pipelines
from handoff.analytics import service as analytics
from handoff.analytics.expressions import ALL_TIME, Bucket, Pipeline, Window
from handoff.analytics.rollup import worker as rollup
from handoff.config import Settings
from handoff.db import create_client, init_database
from handoff.localdb import MongodProcess, start_mongod
from handoff.sessions.misses import page_bounds
from handoff.sessions.seals import paged_layout
from handoff.workspaces import service as workspaces

AGENTS = ["claude-code", "codex", "aider", "cursor", "devin"]
STATUSES = ["completed"] * 65 + ["failed"] * 15 + ["paused"] * 10 + ["active"] * 10
ENTRY_KINDS = ["action"] * 10 + ["info"] * 4 + ["checkpoint"] * 2 + ["decision", "warning", "success"]
ARTIFACT_ACTIONS = ["created", "modified", "modified", "modified", "deleted"]
PATHS = [f"src/pkg{n % 40}/module_{n}.py" for n in range(2_000)]
DAYS = 90
GOAL_MS = 250.0


# Data ----------------------------------------------------------------------------------------------------------


def _entry(rng: random.Random, n: int, at: datetime, kind: str) -> dict[str, Any]:
    if kind == "action":
        return {
            "id": f"e{n}",
            "action": rng.choice(["edit_file", "run_tests", "read_file", "search", "shell"]),
            "details": {"target": rng.choice(PATHS), "ok": rng.random() > 0.1},
            "timestamp": at,
        }
    message = f"{kind}: step {n} of the task, {rng.choice(['parser', 'api', 'schema', 'tests', 'docs'])} part"
    return {"id": f"e{n}", "message": message, "type": kind, "data": {"step": n}, "timestamp": at}


def make_session(
    rng: random.Random, workspace_id: str, session_id: str, *, started: datetime, now: datetime, parent: str | None
) -> dict[str, Any]:
    """One session with its whole log on the document, counters consistent with its arrays (``paged_layout``
    turns it into what the service stores)."""
    status = rng.choice(STATUSES)
    minutes = max(1, min(int(rng.lognormvariate(3.3, 0.9)), 24 * 60))
    last = min(started + timedelta(minutes=minutes), now)
    minutes = int((last - started).total_seconds() // 60)
    ended = last if status in ("completed", "failed") else None
    entries = rng.randint(15, 25)
    kinds = [rng.choice(ENTRY_KINDS) for _ in range(entries)]
    if rng.random() < 0.2:  # a fifth of the sessions hit errors
        for slot in rng.sample(range(entries), rng.randint(1, 3)):
            kinds[slot] = "error"
    step = (last - started) / entries
    work_log = [_entry(rng, n, started + step * n, kind) for n, kind in enumerate(kinds)]
    artifacts = [
        {
            "id": f"a{n}",
            "path": PATHS[
                min(int(rng.paretovariate(1.2)) - 1, len(PATHS) - 1)
                if rng.random() < 0.5
                else rng.randrange(len(PATHS))
            ],
            "action": rng.choice(ARTIFACT_ACTIONS),
            "metadata": {"lines": rng.randint(1, 400)},
            "timestamp": started + step * n,
        }
        for n in range(rng.randint(1, 5))
    ]
    checkpoints = [e for e in work_log if e.get("type") == "checkpoint"]
    notes = None
    if status == "paused" and rng.random() < 0.8:
        notes = {
            "summary": "Stopped halfway; the parser changes are in, tests are next.",
            "next_steps": ["run the test suite", "update the docs"],
            "blockers": ["flaky CI"] if rng.random() < 0.3 else [],
            "context_for_next": {"branch": f"feature/{session_id[-8:]}"},
        }
    return {
        "workspace_id": workspace_id,
        "session_id": session_id,
        "external_id": None,
        "agent_api_key_id": None,
        "plan": None,
        "agent_type": rng.choice(AGENTS),
        "status": status,
        "context_summary": {"goal": "benchmark"},
        "work_log": work_log,
        "artifacts": artifacts,
        "handoff_notes": notes,
        "final_summary": "done" if ended else None,
        "action_count": len(work_log),
        "artifact_count": len(artifacts),
        "checkpoint_count": len(checkpoints),
        "error_count": kinds.count("error"),
        "last_checkpoint": checkpoints[-1] if checkpoints else None,
        "payload_bytes": 0,
        "replayed_from": parent,
        "duration_minutes": minutes if ended else None,
        "legacy": None,
        "started_at": started,
        "last_active_at": last,
        "ended_at": ended,
        "paused_at": last if status == "paused" else None,
        "created_at": started,
        "updated_at": last,
    }


def insert_sessions(url: str, database: str, workspace_id: str, count: int, *, seed: int) -> tuple[float, str]:
    """Bulk-insert ``count`` sessions; returns the seconds it took and the session with the longest lineage.

    As in production, documents arrive in ``started_at`` order and ids are ``sess_<uuid4>`` (random order).
    """
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(days=DAYS)
    starts = sorted(first + timedelta(seconds=rng.uniform(0, DAYS * 86_400)) for _ in range(count))
    ids = [f"sess_{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in range(count)]
    depth: dict[str, int] = {}
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    collection = client[database]["sessions"]
    batch: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    bounds = page_bounds(None)
    began = time.perf_counter()
    for index, (session_id, started) in enumerate(zip(ids, starts, strict=True)):
        parent = None
        if index and rng.random() < 0.05:  # some sessions are replays of a recent one, forming chains
            parent = ids[rng.randrange(max(0, index - 200), index)]
        if 0 < index < 6:  # and one chain of five replays for the lineage route
            parent = ids[index - 1]
        doc, sealed = paged_layout(
            make_session(rng, workspace_id, session_id, started=started, now=now, parent=parent), bounds, now
        )
        batch.append(doc)
        pages += sealed
        depth[session_id] = depth.get(parent, 0) + 1 if parent else 0
        if len(batch) == 1_000:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)
    if pages:
        client[database]["log_pages"].insert_many(pages, ordered=False)
    client.close()
    deepest = max(depth, key=lambda session_id: depth[session_id])
    return time.perf_counter() - began, deepest


# Measurements --------------------------------------------------------------------------------------------------


def routes(deepest: str, month_ago: date) -> list[tuple[str, str]]:
    """(label, path) of every timed route."""
    return [
        ("summary", "/v1/analytics/summary"),
        ("summary?since=<30 days ago>", f"/v1/analytics/summary?since={month_ago}"),
        ("agents", "/v1/analytics/agents"),
        ("activity?bucket=day", "/v1/analytics/activity?bucket=day"),
        ("activity?bucket=hour", "/v1/analytics/activity?bucket=hour"),
        ("artifacts", "/v1/analytics/artifacts"),
        ("errors", "/v1/analytics/errors"),
        ("stale", "/v1/analytics/stale"),
        ("handoffs", "/v1/analytics/handoffs"),
        ("lineage/{id}", f"/v1/analytics/lineage/{deepest}"),
    ]


async def plans(workspace_id: str, deepest: str, month_ago: date) -> list[tuple[Pipeline, str | None]]:
    """The pipeline (and index hint) behind each route of :func:`routes`, in the same order."""
    by_route = await analytics.route_pipelines(workspace_id, session_id=deepest)
    since = Window(since=datetime(month_ago.year, month_ago.month, month_ago.day, tzinfo=UTC))
    return [
        (by_route["summary"], None),
        (pipelines.summary(workspace_id, since), None),
        (by_route["agents"], None),
        (by_route["activity"], None),
        (pipelines.activity(workspace_id, ALL_TIME, Bucket.HOUR), None),
        (by_route["artifacts"], pipelines.ARTIFACTS_INDEX),
        *((by_route[name], None) for name in ("errors", "stale", "handoffs", "lineage")),
    ]


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Timing:
    """One route's figures over the timed calls."""

    p50: float
    p95: float
    rows: int
    mongod_cpu: float  # per call, ms
    service_cpu: float  # per call, ms


def time_route(http: httpx.Client, path: str, calls: int, *, mongod: int, service: int) -> Timing:
    """Median and p95 (nearest rank) in milliseconds over ``calls`` calls, the rows of the last answer, and the
    CPU time mongod and the service spent per call (what the wall time costs when the machine is not shared)."""
    for _ in range(2):
        http.get(path).raise_for_status()
    samples = []
    body: Any = None
    cpu_before = cpu_ms(mongod), cpu_ms(service)
    for _ in range(calls):
        began = time.perf_counter()
        response = http.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
        body = response.json()
    mongod_cpu, service_cpu = cpu_ms(mongod) - cpu_before[0], cpu_ms(service) - cpu_before[1]
    samples.sort()
    p95 = samples[max(0, -(-95 * len(samples) // 100) - 1)]
    if "items" in body:
        rows = len(body["items"])
    else:  # summary: one row; lineage: ancestors and descendants
        rows = len(body.get("ancestors", [])) + len(body.get("descendants", [])) or 1
    return Timing(statistics.median(samples), p95, rows, mongod_cpu / calls, service_cpu / calls)


async def explain_all(url: str, database: str, workspace_id: str, deepest: str, month_ago: date) -> list[Any]:
    client = create_client(url, Settings(mongodb_url=url, database=database))
    try:
        await init_database(client, database)
        return [
            await analytics.explain(pipeline, hint=hint)
            for pipeline, hint in await plans(workspace_id, deepest, month_ago)
        ]
    finally:
        await client.close()


async def prepare(url: str, database: str) -> tuple[str, str, str]:
    """Indexes, the benchmark workspace and its key, and a second workspace; returns (workspace id, key, other id)."""
    client = create_client(url, Settings(mongodb_url=url, database=database))
    try:
        await init_database(client, database)
        workspace = await workspaces.create_workspace("bench")
        _, secret = await workspaces.create_api_key("bench", name="bench")
        other = await workspaces.create_workspace("other")
        return workspace.workspace_id, secret, other.workspace_id
    finally:
        await client.close()


def _plan_text(verdict: analytics.PlanVerdict) -> str:
    if not verdict.uses_index:
        return "COLLSCAN"
    return "+".join(verdict.indexes) + (" (covered)" if verdict.covered else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions in the benchmark workspace")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per route")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        server: MongodProcess = start_mongod(Path(tmp) / "db")
        try:
            run(server, args)
        finally:
            server.stop()


def run(server: MongodProcess, args: argparse.Namespace) -> None:
    database = "bench_analytics"
    workspace_id, secret, other_id = asyncio.run(prepare(server.url, database))
    seconds, deepest = insert_sessions(server.url, database, workspace_id, args.sessions, seed=args.seed)
    insert_sessions(server.url, database, other_id, 1_000, seed=args.seed + 1)  # same ids, another workspace
    with MongoClient(server.url) as client:
        version = client.server_info()["version"]
        stats = client[database].command("collStats", "sessions")
    print(
        f"{args.sessions:,} sessions (+1,000 in another workspace) inserted in {seconds:.1f} s; "
        f"collection {stats['size'] / 2**20:.0f} MiB, avg document {stats['avgObjSize'] / 1024:.1f} KiB, "
        f"indexes {stats['totalIndexSize'] / 2**20:.1f} MiB"
    )
    print(
        f"MongoDB {version} (bundled, WiredTiger cache 0.25 GB), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d}"
    )

    month_ago = (datetime.now(UTC) - timedelta(days=30)).date()
    timed = routes(deepest, month_ago)
    headers = {"Authorization": f"Bearer {secret}"}
    with (
        # No background pass: the rollup is built below, between the two timings of the artifacts route.
        serve(server.url, database, artifacts_rollup_interval_seconds=0) as service,
        httpx.Client(base_url=service.base, headers=headers, timeout=120) as http,
    ):
        timings = [time_route(http, path, args.calls, mongod=server.pid, service=service.pid) for _, path in timed]
        load = os.getloadavg()
        side_by_side = time_rollup(
            http,
            server=server,
            service=service,
            database=database,
            workspace_ids=[workspace_id, other_id],
            calls=args.calls,
        )

    verdicts = asyncio.run(explain_all(server.url, database, workspace_id, deepest, month_ago))
    print(f"load average after the timed calls (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print(
        "| route | p50 ms | p95 ms | mongod CPU ms/call | service CPU ms/call | rows | index (plan) "
        "| keys examined | docs examined | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for (label, _), timing, verdict in zip(timed, timings, verdicts, strict=True):
        print(
            f"| {label} | {timing.p50:.0f} | {timing.p95:.0f} | {timing.mongod_cpu:.0f} | {timing.service_cpu:.0f} "
            f"| {timing.rows} | {_plan_text(verdict)} | {verdict.keys_examined:,} | {verdict.docs_examined:,} "
            f"| {'ok' if timing.p50 <= GOAL_MS else 'MISS'} |"
        )
    print()
    print("\n".join(side_by_side))


def artifact_windows() -> list[tuple[str, str]]:
    """(label, query) of the artifacts route's windows: all time, 30 whole days, and the dashboard's default (the
    last 7 days from now: its first and last days are cut, so they are read live)."""
    now = datetime.now(UTC)
    month_ago = (now - timedelta(days=30)).date()
    week_ago = (now - timedelta(days=7)).replace(microsecond=0)
    return [
        ("all time", ""),
        ("since=<30 days ago> (whole days)", f"?since={month_ago}"),
        ("since=<now - 7 days>", f"?since={week_ago.isoformat().replace('+00:00', 'Z')}"),
    ]


async def catch_up(url: str, database: str, workspace_ids: list[str]) -> int:
    """The artifacts rollup's first pass over the workspaces (what the service's background pass would do)."""
    client = create_client(url, Settings(mongodb_url=url, database=database))
    try:
        await init_database(client, database)
        return sum([await rollup.catch_up(workspace_id) for workspace_id in workspace_ids])
    finally:
        await client.close()


def time_rollup(
    http: httpx.Client, *, server: MongodProcess, service: Any, database: str, workspace_ids: list[str], calls: int
) -> list[str]:
    """The artifacts route side by side on the same data: the reference pipeline (the route before the rollup,
    which it still runs for a workspace the rollup has not taken in), the rollup after a first pass, and the rollup
    with the last day's sessions all dirty (read live). Every answer of the rollup must equal the reference's."""
    lines = []
    windows = artifact_windows()
    reference = []
    for label, query in windows:
        path = f"/v1/analytics/artifacts{query}"
        reference.append(http.get(path).json())
        timing = time_route(http, path, calls, mongod=server.pid, service=service.pid)
        lines.append(_rollup_row(f"artifacts, {label}: reference pipeline (before)", timing))
    began = time.perf_counter()
    folded = asyncio.run(catch_up(server.url, database, workspace_ids))
    seconds = time.perf_counter() - began
    note = f"first pass (marks the {folded:,} sessions stored before the rollup, folds them): {seconds:.1f} s"
    with MongoClient(server.url) as client:
        days_count = client[database]["artifact_days"].count_documents({})
        since = datetime.now(UTC) - timedelta(days=1)
        dirty = client[database]["sessions"].update_many(
            {"workspace_id": workspace_ids[0], "started_at": {"$gte": since}, "artifact_count": {"$gt": 0}},
            {"$set": {"rollup_dirty": True}},
        )
    for (label, query), expected in zip(windows, reference, strict=True):
        path = f"/v1/analytics/artifacts{query}"
        same = http.get(path).json() == expected
        timing = time_route(http, path, calls, mongod=server.pid, service=service.pid)
        lines.append(
            _rollup_row(f"artifacts, {label}: rollup, last day's {dirty.modified_count:,} sessions dirty", timing, same)
        )
    with MongoClient(server.url) as client:
        client[database]["sessions"].update_many({"rollup_dirty": True}, {"$set": {"rollup_dirty": False}})
    for (label, query), expected in zip(windows, reference, strict=True):
        path = f"/v1/analytics/artifacts{query}"
        same = http.get(path).json() == expected
        timing = time_route(http, path, calls, mongod=server.pid, service=service.pid)
        lines.append(_rollup_row(f"artifacts, {label}: rollup, no session dirty", timing, same))
    load = os.getloadavg()
    return [
        note,
        f"{days_count:,} day documents; load average after these calls: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        "| artifacts route | p50 ms | p95 ms | mongod CPU ms/call | service CPU ms/call | rows | same answer | goal |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        *lines,
    ]


def _rollup_row(label: str, timing: Timing, same: bool | None = None) -> str:
    verdict = "" if same is None else ("yes" if same else "NO")
    return (
        f"| {label} | {timing.p50:.0f} | {timing.p95:.0f} | {timing.mongod_cpu:.0f} | {timing.service_cpu:.0f} "
        f"| {timing.rows} | {verdict} | {'ok' if timing.p50 <= GOAL_MS else 'MISS'} |"
    )


if __name__ == "__main__":
    main()
