"""Benchmark ``handoff import`` against raw ``insert_many`` of the same documents, and its memory at N/10 and N.

    .venv/bin/python scripts/bench_import.py                     # 100,000 sessions of 20 entries (the recorded run)
    .venv/bin/python scripts/bench_import.py --sessions 10000    # a quick look

It starts a bundled mongod of its own on a temporary directory (``handoff.localdb.start_mongod``, default
settings), writes a JSON Lines file of N sessions in ``handoff export``'s shape (20 work-log entries and 5
artifacts each) and one of N/10, and imports each into an empty workspace in a subprocess that runs
``handoff.bulk.import_files`` (what ``handoff import`` runs, batches of ``--batch-size``: every row checked, mapped
to the paged layout of ``seals.paged_layout``, session and pages written) and reports its wall time and peak RSS
(``ru_maxrss``). Then, in this process, the raw reference reads the same lines, decodes each (msgspec, as the
importer does) and ``insert_many``s the decoded rows as they are, in batches of the same size, into another
database with the same indexes, timed from the first line read to the last write; and, for the record, the same
rows as ``$setOnInsert`` upserts (the write path the importer avoids).

Goals (issue 6, issue 12 item 6): import at >= 0.8x the raw rate; peak RSS at N within 1.5x of N/10.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from pymongo import UpdateOne

from handoff import bulk
from handoff.bulk.prepare import default_workers
from handoff.config import Settings
from handoff.db import create_client, init_database
from handoff.localdb import MongodProcess, start_mongod
from handoff.workspaces import service as workspaces

ENTRY_KINDS = ["action"] * 12 + ["info"] * 3 + ["checkpoint"] * 2 + ["decision", "error", "warning"]
STATUSES = ["completed"] * 6 + ["failed", "paused", "active", "active"]
PATHS = [f"src/pkg{n % 40}/module_{n}.py" for n in range(2_000)]
START = datetime(2026, 1, 1, tzinfo=UTC)
RATIO_GOAL = 0.8
MEMORY_GOAL = 1.5


# Data ----------------------------------------------------------------------------------------------------------


def _line(rng: random.Random, n: int, entries: int) -> dict[str, Any]:
    started = START + timedelta(minutes=7 * n)
    at = [(started + timedelta(seconds=30 * i)).isoformat(timespec="microseconds") for i in range(entries + 6)]
    work_log: list[dict[str, Any]] = []
    for i in range(entries):
        kind = ENTRY_KINDS[i % len(ENTRY_KINDS)]
        if kind == "action":
            action = rng.choice(["edit_file", "run_tests", "shell"])
            details = {"target": rng.choice(PATHS), "ok": rng.random() > 0.1, "lines": rng.randint(1, 400)}
            work_log.append({"id": f"e{i}", "action": action, "details": details, "timestamp": at[i]})
        else:
            message = f"{kind}: step {i} of the migration, checked against the suite"
            work_log.append({"id": f"e{i}", "message": message, "type": kind, "data": {"step": i}, "timestamp": at[i]})
    artifacts = [
        {
            "id": f"a{i}",
            "path": rng.choice(PATHS),
            "action": rng.choice(["created", "modified", "deleted"]),
            "metadata": {"bytes": rng.randint(10, 9000)},
            "timestamp": at[entries + i],
        }
        for i in range(5)
    ]
    status = STATUSES[n % len(STATUSES)]
    notes = {"summary": "half way", "next_steps": ["finish"], "blockers": [], "context_for_next": {}}
    return {
        "session_id": f"sess_bench_{n:08d}",
        "external_id": f"thread-{n}",
        "workspace_id": "ws_source",
        "agent_api_key_id": "key_source",
        "plan": None,
        "agent_type": rng.choice(["claude-code", "codex", "aider"]),
        "status": status,
        "context_summary": {"goal": f"migrate module {n}", "branch": f"feature/{n}", "notes": "x" * 120},
        "handoff_notes": notes if status == "paused" else None,
        "final_summary": "done" if status == "completed" else None,
        "started_at": at[0],
        "last_active_at": at[-1],
        "ended_at": at[-1] if status in ("completed", "failed") else None,
        "created_at": at[0],
        "updated_at": at[-1],
        "work_log": work_log,
        "artifacts": artifacts,
    }


def write_file(path: Path, sessions: int, entries: int) -> int:
    rng = random.Random(6)
    with path.open("w") as out:
        for n in range(sessions):
            out.write(json.dumps(_line(rng, n, entries), separators=(",", ":")) + "\n")
    return path.stat().st_size


# The import, in a process of its own -------------------------------------------------------------------------


async def _child(url: str, database: str, path: Path, batch_size: int, workers: int | None) -> dict[str, Any]:
    settings = Settings(mongodb_url=url, database=database)
    client = create_client(url, settings)
    try:
        await init_database(client, database)
        started, cpu, workers_cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        result = await bulk.import_files(
            [path], workspace="bench", batch_size=batch_size, settings=settings, workers=workers
        )
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "seconds": seconds,
        "imported": result.imported,
        "rejected": result.rejected,
        "cpu": _cpu(resource.RUSAGE_SELF) - cpu,
        "workers_cpu": _cpu(resource.RUSAGE_CHILDREN) - workers_cpu,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def mongod_cpu(server: MongodProcess) -> float:
    """CPU seconds the server has used so far (utime + stime from /proc)."""
    fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_import(url: str, database: str, path: Path, batch_size: int, workers: int | None) -> dict[str, Any]:
    asyncio.run(_prepare(url, database))
    argv = [sys.executable, __file__, "--child", str(path), "--url", url, "--database", database]
    argv += ["--batch-size", str(batch_size)] + ([] if workers is None else ["--workers", str(workers)])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the import subprocess failed ({done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


async def _prepare(url: str, database: str) -> None:
    """An empty database with the indexes and the workspace ``bench``."""
    client = create_client(url, Settings(mongodb_url=url, database=database))
    try:
        await client.drop_database(database)
        await init_database(client, database)
        await workspaces.create_workspace("bench")
    finally:
        await client.close()


# The reference: raw writes of the same documents --------------------------------------------------------------


def _rows(path: Path, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """The file's lines decoded, in batches: what a raw load of the file writes."""
    decode = msgspec.json.decode
    batch: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for line in lines:
            batch.append(decode(line))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


async def _raw(url: str, database: str, path: Path, batch_size: int, *, upsert: bool) -> tuple[float, float]:
    """Seconds from the first line read to the last write, and this process's CPU seconds in them."""
    client = create_client(url, Settings(mongodb_url=url, database=database))
    try:
        await client.drop_database(database)
        await init_database(client, database)  # the same indexes as the import's database
        collection = client[database]["sessions"]
        started, cpu_started = time.perf_counter(), time.process_time()
        for docs in _rows(path, batch_size):
            if upsert:
                key = ("workspace_id", "session_id")
                ops = [UpdateOne({k: d[k] for k in key}, {"$setOnInsert": d}, upsert=True) for d in docs]
                await collection.bulk_write(ops, ordered=False)
            else:
                await collection.insert_many(docs, ordered=False)
        return time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await client.close()


# Report --------------------------------------------------------------------------------------------------------


def machine(server: MongodProcess) -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({platform.machine()}), load average {load} at the start, bundled MongoDB "
        f"(replica set of one, pid {server.pid}), Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def _row(label: str, n: int, seconds: float, note: str = "") -> str:
    return f"{label:<48} {n:>9,} sessions in {seconds:7.1f} s {n / seconds:9,.0f} sessions/s{note}"


def _timed_import(server: MongodProcess, database: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    before = mongod_cpu(server)
    report = run_import(server.url, database, path, args.batch_size, args.workers)
    report["mongod_cpu"] = mongod_cpu(server) - before
    return report


def _timed_raw(server: MongodProcess, database: str, path: Path, batch_size: int, *, upsert: bool) -> list[float]:
    before = mongod_cpu(server)
    seconds, cpu = asyncio.run(_raw(server.url, database, path, batch_size, upsert=upsert))
    return [seconds, cpu, mongod_cpu(server) - before]


def run(server: MongodProcess, args: argparse.Namespace, tmp: Path) -> bool:
    n, small_n = args.sessions, max(1, args.sessions // 10)
    big, small = tmp / "sessions.jsonl", tmp / "sessions-small.jsonl"
    print(machine(server))
    started = time.perf_counter()
    size = write_file(big, n, args.entries)
    write_file(small, small_n, args.entries)
    took = time.perf_counter() - started
    print(f"wrote {n:,} sessions ({args.entries} entries, 5 artifacts each): {size / 1e6:,.0f} MB in {took:.0f} s")

    # Both imports with the workers the importer chooses for the big file, so N/10 and N compare like for like.
    if args.workers is None:
        args.workers = default_workers(size)
    small_run = _timed_import(server, "bench_import_small", small, args)
    big_run = _timed_import(server, "bench_import", big, args)
    if big_run["imported"] != n or big_run["rejected"]:
        raise SystemExit(f"the import did not import every session: {big_run}")
    raw, raw_cpu, raw_mongod = _timed_raw(server, "bench_raw", big, args.batch_size, upsert=False)
    upsert = _timed_raw(server, "bench_upsert", big, args.batch_size, upsert=True) if args.upserts else None

    ratio = raw / big_run["seconds"]
    peak_small = small_run["maxrss_kib"] + small_run["workers_maxrss_kib"]
    peak_big = big_run["maxrss_kib"] + big_run["workers_maxrss_kib"]
    memory_ratio = peak_big / peak_small
    print(
        f"batch size {args.batch_size}, import worker processes: {args.workers if args.workers is not None else 'auto'}"
    )
    print(_row("import (handoff.bulk.import_files, own process)", n, big_run["seconds"]))
    print(_row("raw insert_many of the decoded lines (decode + write)", n, raw))
    if upsert is not None:
        print(_row("raw $setOnInsert upserts of the decoded lines", n, upsert[0], f"  ({raw / upsert[0]:.2f}x raw)"))
    print(f"ratio import / raw insert_many: {ratio:.2f} (goal >= {RATIO_GOAL})")
    per = 1e6 / n
    print(
        f"CPU per session: import {big_run['cpu'] * per:,.0f} us in its process + "
        f"{big_run['workers_cpu'] * per:,.0f} us in workers, mongod {big_run['mongod_cpu'] * per:,.0f} us; "
        f"raw insert_many {raw_cpu * per:,.0f} us in the client, mongod {raw_mongod * per:,.0f} us"
    )
    print(
        f"peak RSS of the import (process + largest worker): {peak_small / 1024:,.0f} MiB at {small_n:,} sessions, "
        f"{peak_big / 1024:,.0f} MiB at {n:,}: {memory_ratio:.2f}x (goal <= {MEMORY_GOAL}x); at {n:,}: process "
        f"{big_run['maxrss_kib'] / 1024:,.0f} MiB, largest worker {big_run['workers_maxrss_kib'] / 1024:,.0f} MiB"
    )
    return ratio >= RATIO_GOAL and memory_ratio <= MEMORY_GOAL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions in the big file (default 100,000)")
    parser.add_argument("--entries", type=int, default=20, help="work-log entries per session (default 20)")
    parser.add_argument("--batch-size", type=int, default=bulk.DEFAULT_BATCH_SIZE, help="import and insert_many batch")
    parser.add_argument("--workers", type=int, help="import worker processes (default: the importer's choice)")
    parser.add_argument("--no-upserts", dest="upserts", action="store_false", help="skip the $setOnInsert reference")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.url, args.database, args.child, args.batch_size, args.workers))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        server = start_mongod(Path(tmp) / "db")
        try:
            met = run(server, args, Path(tmp))
        finally:
            server.stop()
    print("goals met" if met else "goals NOT met")


if __name__ == "__main__":
    main()
