"""Time clearing and deleting one very long session: the purge of its pages outside any transaction.

    .venv/bin/python scripts/bench_big_clear.py                     # 1,000,000 entries, clear then delete
    .venv/bin/python scripts/bench_big_clear.py --entries 100000 --operations delete

For each operation it starts a bundled mongod of its own, stores one session whose work log holds ``--entries``
entries (every tenth a checkpoint; sealed pages and their notable documents as an import writes them), and times
the domain call a client's request runs: ``DELETE /v1/sessions/{id}/work-log`` (``clear``) or
``DELETE /v1/sessions/{id}`` (``delete``). It prints the seconds taken and what is left of the session's pages
and notable documents afterwards (both must be 0; a transaction holding every page's deletion failed at
1,000,000 entries after 120 s with a WriteConflict).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pymongo import MongoClient

from bench_analytics import prepare
from bench_ui import LONG_SESSION, insert_long_session
from handoff.config import Settings
from handoff.db import create_client, init_database
from handoff.localdb import start_mongod
from handoff.sessions import removals, service

DATABASE = "bench_big_clear"

OPERATIONS: dict[str, Callable[[str, Settings], Awaitable[object]]] = {
    "clear": lambda workspace_id, settings: removals.clear(workspace_id, LONG_SESSION, "work_log", settings=settings),
    "delete": lambda workspace_id, _: service.delete_session(workspace_id, LONG_SESSION),
}


def left_over(url: str) -> dict[str, int]:
    """The long session's pages and notable documents still stored."""
    with MongoClient(url) as client:
        database = client[DATABASE]
        where = {"session_id": LONG_SESSION}
        return {name: database[name].count_documents(where) for name in ("log_pages", "log_notables")}


async def timed(url: str, workspace_id: str, operation: str) -> float:
    """Seconds the operation takes through the service's domain function, on a client as the service makes it."""
    settings = Settings(mongodb_url=url, database=DATABASE)
    client = create_client(url, settings)
    await init_database(client, DATABASE)
    try:
        began = time.perf_counter()
        await OPERATIONS[operation](workspace_id, settings)
        return time.perf_counter() - began
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--operations", nargs="+", choices=sorted(OPERATIONS), default=["clear", "delete"])
    args = parser.parse_args()
    for operation in args.operations:
        with tempfile.TemporaryDirectory() as tmp:
            server = start_mongod(Path(tmp) / "db")
            try:
                workspace_id, _, _ = asyncio.run(prepare(server.url, DATABASE))
                stored = insert_long_session(server.url, DATABASE, workspace_id, args.entries)
                before = left_over(server.url)
                print(f"{operation}: stored {args.entries:,} entries in {stored:.1f} s: {before}", flush=True)
                seconds = asyncio.run(timed(server.url, workspace_id, operation))
                print(f"{operation}: {seconds:.2f} s; left: {left_over(server.url)}", flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
