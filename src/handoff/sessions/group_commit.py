"""Group commit: the appends a process has in flight at one moment share one unordered bulk write.

An append is one guarded update of its session document. Sent alone, each costs a round trip, a ``w=majority``
wait and the driver's per-command work; sent together as one ``bulk_write(ordered=False)`` they cost one of
each. Nothing waits for a timer: an update that finds nothing in flight goes at once as a plain ``update_one``
(a lone append costs what it always did); while fewer than ``max_in_flight`` writes are on the way the next
goes at once too; the updates that arrive meanwhile leave together in the next bulk.

An append must know whether *its* update matched, and a bulk reports only how many did. So each update of a bulk
turns a miss into an error of its own: it is sent as an upsert whose ``$setOnInsert`` gives the new document
another ``_id`` than the filter's equality on ``_id`` (the session's key, which every append filter carries).
A match updates as usual (``$setOnInsert`` does nothing then); a miss would insert, and MongoDB refuses that
insert with ``ImmutableField`` (66) at that update's index, so nothing is ever inserted and each update's answer
is exact. (The full shard key is in the filter too, as a sharded upsert requires.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, WriteError

Collection = AsyncCollection[dict[str, Any]]

#: Writes on the way at once. With one, a bulk waits for the previous one's majority acknowledgement; a few keep
#: the server busy while the next bulk fills.
MAX_IN_FLIGHT = 4
#: Updates in one bulk at most.
MAX_BATCH = 128
#: What a bulk's update adds so that a miss is an error at its index instead of an insert (see above).
MISS_IS_AN_ERROR: dict[str, Any] = {"$setOnInsert": {"_id": None}}
IMMUTABLE_FIELD = 66


@dataclass(slots=True)
class _Update:
    guard: Mapping[str, Any]
    change: Mapping[str, Any]
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """The updates of one process's appends, sent alone or as bulks; one per event loop (see :func:`committer`)."""

    def __init__(
        self, collection: Callable[[], Collection], *, max_in_flight: int = MAX_IN_FLIGHT, max_batch: int = MAX_BATCH
    ) -> None:
        self._collection = collection
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._pending: list[_Update] = []
        self._in_flight = 0
        self._bulks: set[asyncio.Task[None]] = set()

    async def update(self, guard: Mapping[str, Any], change: Mapping[str, Any]) -> bool:
        """Apply one guarded update (its ``guard`` has an equality on ``_id``); whether it matched."""
        if "_id" not in guard:
            raise ValueError("a grouped update's filter needs an equality on _id")
        if not self._in_flight:  # alone: a plain update in the caller's own task
            self._in_flight += 1
            try:
                result = await self._collection().update_one(guard, change)
                return bool(result.matched_count)
            finally:
                self._done_one()
        update = _Update(guard, change)
        self._pending.append(update)
        if self._in_flight < self._max_in_flight:
            self._send()
        # Shielded: a request that goes away does not cancel the bulk the others of its batch wait on.
        return await asyncio.shield(update.done)

    def _done_one(self) -> None:
        self._in_flight -= 1
        if self._pending and self._in_flight < self._max_in_flight:
            self._send()

    def _send(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        self._in_flight += 1
        bulk = asyncio.ensure_future(self._write(batch))
        self._bulks.add(bulk)
        bulk.add_done_callback(self._bulks.discard)

    async def _write(self, batch: list[_Update]) -> None:
        try:
            await self._settle(batch)
        finally:
            self._done_one()

    async def _settle(self, batch: list[_Update]) -> None:
        operations = [UpdateOne(u.guard, {**u.change, **MISS_IS_AN_ERROR}, upsert=True) for u in batch]
        errors: dict[int, dict[str, Any]] = {}
        try:
            await self._collection().bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):  # nobody knows what is durable: each append fails as alone
                _fail(batch, exc)
                return
            errors = {error["index"]: error for error in exc.details.get("writeErrors", [])}
        except Exception as exc:  # each waiting append gets the failure its own update would have had
            _fail(batch, exc)
            return
        for index, update in enumerate(batch):
            if update.done.done():
                continue
            error = errors.get(index)
            if error is None:
                update.done.set_result(True)
            elif error.get("code") == IMMUTABLE_FIELD:
                update.done.set_result(False)
            else:
                update.done.set_exception(WriteError(error.get("errmsg", ""), error.get("code"), error))


def _fail(batch: list[_Update], exc: BaseException) -> None:
    for update in batch:
        if not update.done.done():
            update.done.set_exception(exc)


_committers: dict[asyncio.AbstractEventLoop, GroupCommit] = {}


def committer(collection: Callable[[], Collection]) -> GroupCommit:
    """This event loop's group commit (created on first use: futures and tasks belong to one loop)."""
    loop = asyncio.get_running_loop()
    found = _committers.get(loop)
    if found is None:
        for closed in [old for old in _committers if old.is_closed()]:
            del _committers[closed]
        found = _committers[loop] = GroupCommit(collection)
    return found
