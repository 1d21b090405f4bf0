"""Two shapes for the sealed pages' notable entries (``handoff.sessions.notables``), measured on one mongod.

    .venv/bin/python scripts/bench_notable_shapes.py                   # 1,000,000 entries, and a dense 100,000
    .venv/bin/python scripts/bench_notable_shapes.py --entries 100000 --dense 20000

The replay context wants the newest 200 checkpoints, decisions and errors of a log. Sealed pages of 250 entries
(a seal at the default bounds) are cut from a synthetic log, and their notable entries are written both ways:

- **per entry**: one small document per notable entry, ``{workspace_id, session_id, type, no, at, entry}``,
  indexed by ``(workspace_id, session_id, type, no, at)``; a list is one ``find`` with ``limit(200)``.
- **per page**: one document per sealed page holding its notable entries by type, with their counts, and a
  partial index per type on ``(workspace_id, session_id, no)``; a list is one ``find`` newest page first. The
  server cannot stop once 200 entries are read (it counts documents, not entries), so the list reads
  ``limit(200)`` documents (the most it may need); "per page, oracle" is given the exact number of pages each list
  needs, the best any two-step read of that shape could do.

Two logs: the log-growth benchmark's (every 50th entry a checkpoint, every 97th an error, a ninth of the rest
decisions) and a dense one where every entry is a checkpoint (a LangGraph run: a checkpoint per step). Printed:
the median time of the three lists read side by side (``asyncio.gather``, like ``log_reads.newest``), the time to
write one page's notable documents (what a seal adds), and the bytes stored per notable entry.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel

from _bench_common import bench_server, machine, median

PAGE = 250
TYPES = ("checkpoint", "decision", "error")
LIMIT = 200
READS = 200
OTHER = ["info"] * 6 + ["decision", "warning", "success"]
WS, SID = "ws_bench", "sess_bench"


def growth_type(n: int) -> str:
    return "checkpoint" if n % 50 == 0 else "error" if n % 97 == 0 else OTHER[n % len(OTHER)]


def entry(n: int, kind: str) -> dict[str, Any]:
    return {
        "id": f"g{n:07d}",
        "message": f"{kind}: step {n} of the long task, parser module, pass {n % 7}",
        "type": kind,
        "data": {"step": n, "file": f"src/pkg{n % 40}/module_{n % 900}.py", "ok": n % 97 != 0},
    }


def pages_of(entries: int, dense: bool) -> list[list[dict[str, Any]]]:
    log = [entry(n, "checkpoint" if dense else growth_type(n)) for n in range(entries)]
    return [log[start : start + PAGE] for start in range(0, entries, PAGE)]


def per_entry(no: int, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"_id": f"{WS}/{SID}/{e['id']}", "workspace_id": WS, "session_id": SID, "type": e["type"], "no": no, "at": at}
        | {"entry": e}
        for at, e in enumerate(page)
        if e["type"] in TYPES
    ]


def per_page(no: int, page: list[dict[str, Any]]) -> dict[str, Any] | None:
    by_type = {kind: [e for e in page if e["type"] == kind] for kind in TYPES}
    if not any(by_type.values()):
        return None
    counts = {kind: len(found) for kind, found in by_type.items()}
    return {"workspace_id": WS, "session_id": SID, "no": no, "counts": counts, **by_type}


async def timed_writes(collection: Any, pages: list[list[dict[str, Any]]], shape: str) -> list[float]:
    samples = []
    for no, page in enumerate(pages):
        began = time.perf_counter()
        if shape == "entry":
            documents = per_entry(no, page)
            if documents:
                await collection.insert_many(documents)
        elif (document := per_page(no, page)) is not None:
            await collection.insert_one(document)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def read_entries(collection: Any) -> int:
    async def one(kind: str) -> list[dict[str, Any]]:
        query = {"workspace_id": WS, "session_id": SID, "type": kind}
        cursor = collection.find(query, {"_id": 0, "entry": 1}).sort([("no", -1), ("at", -1)]).limit(LIMIT)
        return await cursor.batch_size(LIMIT).to_list(None)

    return sum(len(found) for found in await asyncio.gather(*(one(kind) for kind in TYPES)))


async def read_entries_union(collection: Any) -> int:
    """The three lists in one aggregation (``$unionWith``), one round trip instead of three side by side."""

    def one(kind: str) -> list[dict[str, Any]]:
        return [
            {"$match": {"workspace_id": WS, "session_id": SID, "type": kind}},
            {"$sort": {"no": -1, "at": -1}},
            {"$limit": LIMIT},
            {"$project": {"_id": 0, "entry": 1}},
        ]

    first, *rest = TYPES
    pipeline = [*one(first), *({"$unionWith": {"coll": collection.name, "pipeline": one(kind)}} for kind in rest)]
    return len(await (await collection.aggregate(pipeline)).to_list(None))


async def read_pages(collection: Any, limits: dict[str, int]) -> int:
    async def one(kind: str) -> list[dict[str, Any]]:
        query = {"workspace_id": WS, "session_id": SID, f"counts.{kind}": {"$gt": 0}}
        cursor = collection.find(query, {"_id": 0, kind: 1}).sort("no", -1).hint(f"by_{kind}").limit(limits[kind])
        return [e for page in await cursor.batch_size(limits[kind]).to_list(None) for e in page[kind]][-LIMIT:]

    return sum(len(found) for found in await asyncio.gather(*(one(kind) for kind in TYPES)))


def pages_needed(pages: list[list[dict[str, Any]]], kind: str) -> int:
    total = 0
    for back, page in enumerate(reversed(pages)):
        total += sum(e["type"] == kind for e in page)
        if total >= LIMIT:
            return back + 1
    return len(pages)


async def timed_reads(read: Any) -> list[float]:
    await read()
    samples = []
    for _ in range(READS):
        began = time.perf_counter()
        await read()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def one_log(url: str, name: str, entries: int, dense: bool) -> None:
    pages = pages_of(entries, dense)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        db = client[f"shapes_{name}"]
        by_entry, by_page = db["per_entry"], db["per_page"]
        await by_entry.create_indexes(
            [IndexModel([(k, ASCENDING) for k in ("workspace_id", "session_id", "type", "no", "at")])]
        )
        await by_page.create_indexes(
            [
                IndexModel(
                    [("workspace_id", ASCENDING), ("session_id", ASCENDING), ("no", ASCENDING)],
                    name=f"by_{kind}",
                    partialFilterExpression={f"counts.{kind}": {"$gt": 0}},
                )
                for kind in TYPES
            ]
        )
        write_entry = await timed_writes(by_entry, pages, "entry")
        write_page = await timed_writes(by_page, pages, "page")
        oracle = {kind: pages_needed(pages, kind) for kind in TYPES}
        reads = {
            "per entry": await timed_reads(lambda: read_entries(by_entry)),
            "per entry, $unionWith": await timed_reads(lambda: read_entries_union(by_entry)),
            "per page, limit 200": await timed_reads(lambda: read_pages(by_page, dict.fromkeys(TYPES, LIMIT))),
            "per page, oracle": await timed_reads(lambda: read_pages(by_page, oracle)),
        }
        notable = sum(e["type"] in TYPES for page in pages for e in page)
        sizes = {}
        for label, collection in (("per entry", by_entry), ("per page", by_page)):
            stats = await db.command("collStats", collection.name)
            sizes[label] = (stats["storageSize"] + stats["totalIndexSize"]) / notable
        print(
            f"\n{name}: {entries:,} entries, {len(pages):,} pages, {notable:,} notable; pages each list needs: {oracle}"
        )
        for label, samples in reads.items():
            print(f"  read the three lists, {label:<22} p50 {median(samples):7.2f} ms")
        print(
            f"  write one page's notables, p50: per entry {median(write_entry):.2f} ms, "
            f"per page {median(write_page):.2f} ms"
        )
        print(f"  stored bytes per notable entry: per entry {sizes['per entry']:.0f}, per page {sizes['per page']:.0f}")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--dense", type=int, default=100_000, help="entries of the all-checkpoint log")
    args = parser.parse_args()
    with bench_server("bench-notables") as server:
        print(machine(server.url))
        asyncio.run(one_log(server.url, "growth", args.entries, dense=False))
        asyncio.run(one_log(server.url, "dense", args.dense, dense=True))


if __name__ == "__main__":
    main()
