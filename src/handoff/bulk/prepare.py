"""Records read from a file to BSON documents ready to write: in a thread, or in worker processes.

Decoding a line and mapping it (checks, counters, BSON) is the CPU-bound part of an import; the rest waits on
the database. A thread does it beside the event loop, or, for big inputs, worker processes do it (each with
an interpreter of its own, so the work spreads over the cores while the main process writes). Chunks go out
in order with a bounded number in flight, and come back in order, so memory stays flat and a session that
appears twice in a file is written in file order.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import Any, NamedTuple

from handoff.bulk.entries import RowError
from handoff.bulk.formats import Format, Record, looks_like_laravel, parse_line
from handoff.bulk.mapping import Target, to_bson

#: Inputs at least this big are prepared in worker processes (when the machine has a core to spare).
WORKERS_FROM_BYTES = 32 * 1024 * 1024
MAX_WORKERS = 4

#: What crosses to a worker: line number, the raw line (JSON Lines) or the parsed row (JSON array), read error.
Item = tuple[int, bytes | None, dict[str, Any] | None, str | None]


class Prepared(NamedTuple):
    """One record, ready to write (``session_id``, ``bson``, its sealed ``pages``, their ``notables`` and its
    ``newest_notables``) or rejected (``error``)."""

    line: int
    session_id: str | None
    bson: bytes | None
    error: str | None
    pages: tuple[bytes, ...] = ()
    notables: tuple[bytes, ...] = ()
    newest_notables: bytes | None = None


def items(records: Sequence[Record]) -> list[Item]:
    return [(record.line, record.raw, record.row, record.error) for record in records]


def prepare(chunk: Sequence[Item], target: Target, file_format: Format) -> list[Prepared]:
    """Decode (JSON Lines), map and encode each record; a bad one becomes its reject message."""
    out: list[Prepared] = []
    for line, raw, parsed, read_error in chunk:
        row, error = parsed, read_error
        if row is None and error is None and raw is not None:
            row, error = parse_line(raw)
        if row is None:
            out.append(Prepared(line, None, None, error or "no row"))
            continue
        shape = file_format if file_format != "auto" else ("laravel" if looks_like_laravel(row) else "jsonl")
        try:
            encoded = to_bson(row, target, shape=shape, source=raw)
        except RowError as exc:
            out.append(Prepared(line, None, None, str(exc)))
            continue
        out.append(
            Prepared(
                line, encoded.session_id, encoded.bson, None, encoded.pages, encoded.notables, encoded.newest_notables
            )
        )
    return out


def default_workers(total_bytes: int) -> int:
    """Worker processes for an input this big: none for small inputs or one core, else one a core, up to 4.

    One a core, not one fewer: the main process mostly waits on the database, and on two cores shared with
    mongod two workers measured 0.92x raw ``insert_many`` where one measured 0.73x (``docs/benchmarks.md``).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if total_bytes < WORKERS_FROM_BYTES or cores < 2 else min(MAX_WORKERS, cores)


class Preparer:
    """Runs :func:`prepare` off the event loop: in one thread (``workers=0``) or in worker processes."""

    def __init__(self, target: Target, file_format: Format, *, workers: int) -> None:
        self.target = target
        self.file_format = file_format
        self.workers = workers
        self._executor: Executor
        if workers > 0:
            # spawn, not fork: the parent holds an event loop and a MongoDB client, neither survives a fork.
            self._executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        else:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="handoff-import")

    @property
    def ahead(self) -> int:
        """Chunks to keep in preparation while the oldest is written."""
        return 2 * self.workers if self.workers else 1

    def submit(self, records: Sequence[Record]) -> asyncio.Future[list[Prepared]]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, prepare, items(records), self.target, self.file_format)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
