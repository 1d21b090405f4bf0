"""The original's append (read the document, append in Python, write the whole array back) vs this service's.

    .venv/bin/python scripts/bench_seed_baseline.py
    .venv/bin/python scripts/bench_seed_baseline.py --writers 16 --appends 50 --timed 30

The original PHP service stored a session the same way (one document, the work log an embedded array) but
appended by loading the session, adding the entry to the array in memory and saving the whole array back.
Concurrent writers then overwrite each other's entries, and every append rewrites the whole log. This script
starts a bundled mongod of its own and ``handoff serve``, and measures three ways of appending on the same
server, all with w=majority:

* original: PyMongo ``find_one`` + ``update_one({"$set": {"work_log": <the whole array>}})``;
* service (domain): ``handoff.sessions.service.log_work`` in this process, the function the REST route calls
  (one guarded ``$push``), on the same client as the original, so the two algorithms meet on equal terms;
* service (REST): ``POST /v1/sessions/{id}/work-log`` through HTTP.

1. Lost entries: ``--writers`` concurrent writers each append ``--appends`` entries to one new session; lost =
   appended - stored. (The original loses entries; the service must lose none.)
2. Time per append: one writer appends ``--timed`` entries, one at a time, to a session that already holds 10
   entries and to one that holds 10,000 (200 bytes of ``data`` each); the median per append is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from _bench_common import DATABASE, BenchKey, async_client, bench_server, create_key, machine, serve
from handoff import clock
from handoff.config import Settings
from handoff.db import MongoClient, init_database
from handoff.sessions import service
from handoff.sessions.schemas import SessionCreate, WorkLogCreate
from handoff.workspaces.schemas import Principal

SIZES = (10, 10_000)
DATA_BYTES = 200
FILL_BATCH = 1_000

Append = Callable[[str, str], Awaitable[None]]  # (session id, entry id)


def payload(index: int) -> dict[str, Any]:
    """``data`` of exactly DATA_BYTES bytes as compact JSON."""
    filler = DATA_BYTES - len(json.dumps({"i": index, "text": ""}, separators=(",", ":")))
    return {"i": index, "text": "x" * filler}


def entry_body(entry_id: str) -> dict[str, Any]:
    return {"id": entry_id, "message": f"append {entry_id}", "type": "info", "data": payload(0)}


class Bench:
    """The three appends, sharing one workspace, one client (for the two in-process ones) and one settings."""

    def __init__(self, client: MongoClient, key: BenchKey, http: httpx.AsyncClient, settings: Settings) -> None:
        self.collection = client[DATABASE]["sessions"]
        self.key = key
        self.http = http
        self.settings = settings
        self.principal = Principal(workspace_id=key.workspace_id, api_key_id="bench")

    async def new_session(self, entries: int) -> str:
        created = await service.create_session(
            self.principal, SessionCreate(agent_type="bench"), settings=self.settings
        )
        session_id = created.session.session_id
        for start in range(0, entries, FILL_BATCH):
            batch = [
                WorkLogCreate.model_validate(entry_body(f"fill{index}"))
                for index in range(start, min(entries, start + FILL_BATCH))
            ]
            await service.log_work_batch(self.key.workspace_id, session_id, batch, settings=self.settings)
        return session_id

    async def original(self, session_id: str, entry_id: str) -> None:
        """The original algorithm: read, append in memory, write the whole array back."""
        key = {"workspace_id": self.key.workspace_id, "session_id": session_id}
        doc = await self.collection.find_one(key, {"work_log": 1})
        assert doc is not None
        work_log = doc.get("work_log", [])
        now = clock.now()
        work_log.append({**entry_body(entry_id), "timestamp": now})
        await self.collection.update_one(
            key, {"$set": {"work_log": work_log, "action_count": len(work_log), "last_active_at": now}}
        )

    async def domain(self, session_id: str, entry_id: str) -> None:
        """The service's append, called in process."""
        data = WorkLogCreate.model_validate(entry_body(entry_id))
        await service.log_work(self.key.workspace_id, session_id, data, settings=self.settings)

    async def rest(self, session_id: str, entry_id: str) -> None:
        """The service's append through its REST API."""
        response = await self.http.post(f"/v1/sessions/{session_id}/work-log", json=entry_body(entry_id))
        response.raise_for_status()

    async def stored(self, session_id: str) -> tuple[int, int]:
        """(entries in the work log, the action_count counter)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"workspace_id": self.key.workspace_id, "session_id": session_id}},
            {"$project": {"_id": 0, "n": {"$size": "$work_log"}, "count": "$action_count"}},
        ]
        rows = await (await self.collection.aggregate(pipeline)).to_list(1)
        return rows[0]["n"], rows[0]["count"]


async def lost_entries(bench: Bench, append: Append, writers: int, appends: int) -> tuple[int, int, int, float]:
    """(appended, stored, counter, seconds) for ``writers`` concurrent writers on one new session."""
    session_id = await bench.new_session(0)

    async def writer(number: int) -> None:
        for n in range(appends):
            await append(session_id, f"w{number}-{n}")

    began = time.perf_counter()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    elapsed = time.perf_counter() - began
    stored, counter = await bench.stored(session_id)
    return writers * appends, stored, counter, elapsed


async def time_per_append(bench: Bench, append: Append, entries: int, timed: int) -> float:
    """Median milliseconds of one append to a session already holding ``entries`` entries."""
    session_id = await bench.new_session(entries)
    for n in range(3):  # warm-up
        await append(session_id, f"warm{n}")
    samples = []
    for n in range(timed):
        began = time.perf_counter()
        await append(session_id, f"t{n}")
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def run(url: str, key: BenchKey, base: str, args: argparse.Namespace) -> list[tuple[str, Any, Any]]:
    client = async_client(url)
    settings = Settings(mongodb_url=url, database=DATABASE)
    try:
        await init_database(client, DATABASE)
        limits = httpx.Limits(max_connections=args.writers)
        async with httpx.AsyncClient(base_url=base, headers=key.headers, timeout=120, limits=limits) as http:
            bench = Bench(client, key, http, settings)
            ways: list[tuple[str, Append]] = [
                ("original: read, append, write back", bench.original),
                ("service (domain function, in process)", bench.domain),
                ("service (REST API)", bench.rest),
            ]
            rows = []
            for label, append in ways:
                lost = await lost_entries(bench, append, args.writers, args.appends)
                timings = {size: await time_per_append(bench, append, size, args.timed) for size in SIZES}
                rows.append((label, lost, timings))
            return rows
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers on one session")
    parser.add_argument("--appends", type=int, default=50, help="appends per writer")
    parser.add_argument("--timed", type=int, default=30, help="timed sequential appends per session size")
    args = parser.parse_args()

    with bench_server("bench-seed") as server:
        key = asyncio.run(create_key(server.url))
        print(machine(server.url))
        with serve(server.url) as running:
            rows = asyncio.run(run(server.url, key, running.base, args))

    print(
        f"{args.writers} writers x {args.appends} appends to one session; time per append: median of "
        f"{args.timed} sequential appends to a session of {SIZES[0]} and of {SIZES[1]:,} entries "
        f"({DATA_BYTES}-byte data each); w=majority everywhere\n"
    )
    print(
        f"| append | appended | stored | lost | action_count | ms/append @{SIZES[0]} | ms/append @{SIZES[1]:,} "
        f"| growth |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, (appended, stored, counter, _), timings in rows:
        small, large = timings[SIZES[0]], timings[SIZES[1]]
        print(
            f"| {label} | {appended} | {stored} | {appended - stored} | {counter} | {small:.2f} | {large:.2f} "
            f"| {large / small:.1f}x |"
        )
    original, ours = rows[0], rows[1:]
    print(
        f"\nthe original lost {original[1][0] - original[1][1]} of {original[1][0]} entries; the service lost "
        + ", ".join(f"{row[1][0] - row[1][1]}" for row in ours)
        + f"; at {SIZES[1]:,} entries an original append takes {original[2][SIZES[1]] / ours[0][2][SIZES[1]]:.0f}x "
        "the service's (domain function)"
    )


if __name__ == "__main__":
    main()
