"""Deleting a cleared log's or an erased session's pages in batches, after a small write has hidden them.

A 1,000,000-entry log is ~4,000 sealed pages (~400 MB) and ~100,000 notable documents: more than one WiredTiger
transaction can hold, so a clear or an erasure that deleted them in its transaction failed (WriteConflict, then
a timeout) and removed nothing. Instead, the client-visible change is one small transaction: the session
document's change (a clear zeroes the kind's counters and raises ``pages_from.<kind>`` to the new
``pages_version``; an erasure deletes the document) and a :class:`~handoff.sessions.models.LogPurge` naming what
was left behind (every page numbered below ``below.<kind>``). Every read of pages filters on ``pages_from``
(``store.first_page``), so from that commit on no route sees the old pages; then :func:`purge` deletes them in
bounded batches, outside any transaction, and removes the purge document.

Page numbers stay above what a purge has still to delete: a clear bumps ``pages_version`` (seals number pages
with it), and a session re-created with the id of an erased one starts at the erased one's ``below``
(:func:`floor`). Entry ids may be reused after a clear: a seal whose entries share an id with a leftover page or
notable document (unique indexes) deletes those first, in its own transaction (``seals.py``).

If the process dies midway, the purge document stays: the next clear or erasure of that session finishes it,
and so does the background pass (:func:`purge_pending`, run by the retention task under its lease).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from handoff import clock
from handoff.sessions import notables, store
from handoff.sessions.models import PAGE_ORDER_INDEX, LogPurge, session_key
from handoff.sessions.paging import Kind

logger = logging.getLogger("handoff.sessions.purges")

Doc = dict[str, Any]

#: Pages deleted per batch (~100 KB each at the default bounds: ~10 MB a batch) and notable documents per batch.
PAGE_BATCH = 100
NOTABLE_BATCH = 5_000
#: The background pass leaves purge documents younger than this to the request that wrote them.
GRACE = timedelta(minutes=2)


def collection() -> AsyncCollection[Doc]:
    return LogPurge.get_pymongo_collection()


async def mark(workspace_id: str, session_id: str, below: Mapping[str, int], *, session: AsyncClientSession) -> None:
    """Record, inside the clear's or the erasure's transaction, that pages numbered below ``below`` are leftovers
    (merged with what an unfinished earlier purge of the session recorded)."""
    await collection().update_one(
        {"_id": session_key(workspace_id, session_id)},
        {
            "$setOnInsert": {"workspace_id": workspace_id, "session_id": session_id},
            "$max": {f"below.{kind}": no for kind, no in below.items()},
            "$set": {"at": clock.now()},
            "$inc": {"round": 1},
        },
        upsert=True,
        session=session,
    )


async def hidden(workspace_id: str, kind: Kind) -> list[Doc]:
    """Conditions matching the workspace's pages of ``kind`` that a purge has still to delete, for the reads
    across sessions (analytics), which cannot filter each page on its session's ``pages_from``: a cleared log or
    an erased session counts nowhere from its commit on, not only once its pages are gone. Usually none."""
    found = collection().find(
        {"workspace_id": workspace_id, f"below.{kind}": {"$gt": 0}}, {"session_id": 1, "below": 1}
    )
    return [
        {"session_id": left["session_id"], "kind": kind, "no": {"$lt": left["below"][kind]}} async for left in found
    ]


async def finish(workspace_id: str, session_ids: Sequence[str]) -> int:
    """Finish, now, the purges pending for these session ids (a process died in their erasure): for the importer,
    which numbers an imported session's pages from 0 (``seals.paged_layout``), below what such a purge would
    delete later. One indexed read when there are none (always, but after a crash); the purges finished."""
    keys = [session_key(workspace_id, session_id) for session_id in session_ids]
    found = collection().find({"_id": {"$in": keys}, "workspace_id": workspace_id}, {"session_id": 1})
    pending = [left["session_id"] async for left in found]
    for session_id in pending:
        await purge(workspace_id, session_id)
    return len(pending)


async def floor(workspace_id: str, session_id: str) -> int:
    """The page number a session created with this id starts from: above every page an erased session of the same
    id left behind (0 when none is left)."""
    left = await collection().find_one({"_id": session_key(workspace_id, session_id)}, {"below": 1})
    return max((left or {}).get("below", {}).values(), default=0)


async def _delete_batches(
    target: AsyncCollection[Doc],
    query: Doc,
    *,
    batch: int,
    hint: str | None,
    after_batch: Callable[[], Awaitable[None]],
) -> int:
    """Delete what ``query`` matches, ``batch`` documents at a time (each batch one read of ids, one delete)."""
    deleted = 0
    while True:
        cursor = target.find(query, {"_id": 1}, limit=batch, batch_size=batch)
        if hint is not None:
            cursor = cursor.hint(hint)
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            return deleted
        result = await target.delete_many({"_id": {"$in": ids}, "workspace_id": query["workspace_id"]})
        deleted += result.deleted_count
        await after_batch()


async def _nothing() -> None:
    return None


async def purge(workspace_id: str, session_id: str, *, after_batch: Callable[[], Awaitable[None]] = _nothing) -> None:
    """Delete what the session's purge document names, in batches, then the purge document (unless a newer clear
    added to it meanwhile: then that too)."""
    key = session_key(workspace_id, session_id)
    while (left := await collection().find_one({"_id": key})) is not None:
        for kind, below in left["below"].items():
            pages = {**store.page_key(workspace_id, session_id, kind), "no": {"$lt": below}}
            gone = await _delete_batches(
                store.pages(), pages, batch=PAGE_BATCH, hint=PAGE_ORDER_INDEX, after_batch=after_batch
            )
            if kind == "work_log":
                noted = {**notables.key(workspace_id, session_id), "no": {"$lt": below}}
                gone += await _delete_batches(
                    notables.collection(), noted, batch=NOTABLE_BATCH, hint=None, after_batch=after_batch
                )
            logger.debug("purged %d %s documents of %s below page %d", gone, kind, session_id, below)
        done = await collection().delete_one({"_id": key, "round": left["round"]})
        if done.deleted_count:
            return


async def purge_pending(*, now: datetime | None = None, after_batch: Callable[[], Awaitable[None]] = _nothing) -> int:
    """Finish the purges their requests did not (the process died midway): for the background pass. Returns
    how many it finished."""
    older = (now or clock.now()) - GRACE
    finished = 0
    async for left in collection().find({"at": {"$lte": older}}, {"workspace_id": 1, "session_id": 1}):
        await purge(left["workspace_id"], left["session_id"], after_batch=after_batch)
        finished += 1
    return finished
