"""The notable entries of sealed pages (checkpoints, decisions, errors), each again in a small document.

The replay context lists the newest 200 checkpoints, decisions and errors of the whole log. Found through the
pages' filter indexes they are few entries spread over many pages (a 1,000,000-entry log of the benchmark: ~170
pages of ~50 KB read whole, to keep a few entries of each), so the context's cost followed the pages it touched.
Each sealed entry of a notable type is therefore also a :class:`~handoff.sessions.models.LogNotable`, indexed by
``(workspace_id, session_id, type, no, at)``: the newest ``n`` of a type are one index range read of ``n`` small
documents, whatever the log's length and however the types are spread over it.

Why a document per entry rather than one per sealed page holding the page's notable entries
(``scripts/bench_notable_shapes.py``, 2026-12-07, load average ~5 on 2 CPUs, the three lists read side by side):

- on the log-growth benchmark's log of 1,000,000 entries (4,000 pages; the lists span 40, 8 and 79 of them), per
  entry 2.30 ms; per page 11.31 ms, because the server counts documents, not entries, so a read cannot stop at
  200 entries and takes ``limit(200)`` pages; 3.00 ms even when told exactly how many pages each list needs
  (which would take a second, counting read first);
- on a dense log (every entry a checkpoint, as a LangGraph run writes), per entry 2.72 ms against 181 ms (200 pages
  of 250 checkpoints read to keep 200 of them) or 2.47 ms with the exact count;
- a removal is one ``delete_one`` by ``_id``, where a page's document would need a ``$pull`` and its counts moved.

What it costs: a seal writes one document per notable entry instead of one (1.98 ms against 1.74 ms a page on
the growth log, 4.61 ms against 1.76 ms when all 250 entries are checkpoints, once per 250 appends), and 133
bytes stored per notable entry against 44 (each compressed alone): ~18 bytes per entry of the growth log.

The replay context reads them only when the session's newest notables (``newest_notables.py``: each type's newest
200 of these, in one document) are out of step; those are rebuilt from these.

Written in the same step as the entry's page, and removed in the same transaction as the entry, so they never
disagree with the pages: the seal's transaction (``seals.py``), the removals' (``removals.py``; a clear and a
session's erasure hide them in theirs and delete them in batches afterwards, ``purges.py``), a migration's
transaction (``migration.py``), and an import, which writes them after the pages and before the session document
that makes them visible (``bulk/importer.py``). The session's ``noted`` counts say how many of each type's sealed
entries have theirs; the rest (``sealed`` less
``noted``) are the oldest, in pages sealed before these documents existed, and are read from the pages as before
(``log_reads.newest``). That holds while no code older than this module seals pages of a session this code has
sealed (a rolling upgrade with old and new workers on one session): the old code's newer pages would have none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from handoff.sessions import store
from handoff.sessions.models import NOTABLE_ORDER_INDEX, NOTABLE_TYPES, LogNotable, session_key

Doc = dict[str, Any]


def collection() -> AsyncCollection[Doc]:
    return LogNotable.get_pymongo_collection()


def key(workspace_id: str, session_id: str) -> Doc:
    """The filter of one session's notable entries (the shard key's prefix)."""
    return {"workspace_id": workspace_id, "session_id": session_id}


def document_id(workspace_id: str, session_id: str, entry_id: str) -> str:
    return f"{session_key(workspace_id, session_id)}/{entry_id}"


def of_page(page: Mapping[str, Any]) -> list[Doc]:
    """The notable documents of one sealed page (none for a page of artifacts)."""
    if page["kind"] != "work_log":
        return []
    workspace_id, session_id = page["workspace_id"], page["session_id"]
    return [
        {
            "_id": document_id(workspace_id, session_id, entry["id"]),
            "workspace_id": workspace_id,
            "session_id": session_id,
            "type": entry["type"],
            "no": page["no"],
            "at": at,
            "entry": entry,
            "sealed_at": page["sealed_at"],
        }
        for at, entry in enumerate(page["entries"])
        if entry.get("type") in NOTABLE_TYPES
    ]


def counts(page: Mapping[str, Any]) -> dict[str, int]:
    """How many notable documents of each type a page has (its ``counts`` of those types)."""
    if page["kind"] != "work_log":
        return {}
    return {name: page["counts"].get(name, 0) for name in NOTABLE_TYPES}


def attach(session: Doc, pages: Sequence[Mapping[str, Any]]) -> list[Doc]:
    """The notable documents of a session's pages written all at once (an import, a migration), with its
    ``noted`` counts set on ``session`` to match: whoever writes the pages writes these too."""
    documents = [document for page in pages for document in of_page(page)]
    # Only the types present, as the seals' ``$inc`` leaves them: a session imported holds what it would hold
    # had it been built through the API.
    session["noted"] = dict(Counter(document["type"] for document in documents))
    return documents


async def newest(
    workspace_id: str,
    session_id: str,
    entry_type: str,
    *,
    n: int,
    below: int,
    first: int,
    session: AsyncClientSession | None = None,
) -> list[Doc]:
    """The newest ``n`` entries of a type among those sealed into pages numbered from ``first`` and below ``below``,
    oldest first (``below``: the ``pages_version`` of the session as read, so a seal running meanwhile adds nothing
    the reader already has from the open page; ``first``: its ``pages_from``, below which are a clear's
    leftovers), dates naive as ``log_reads.newest`` reads them (``store.as_stored``); inside ``session``'s
    transaction when given (``newest_notables.py`` rebuilds its lists so)."""
    cursor = (
        store.as_stored(collection())
        .find(
            {**key(workspace_id, session_id), "type": entry_type, "no": {"$gte": first, "$lt": below}},
            {"_id": 0, "entry": 1},
            session=session,
        )
        .sort([("no", -1), ("at", -1)])
        .hint(NOTABLE_ORDER_INDEX)
        .limit(n)
        .batch_size(n)  # one batch, closed by the server with the answer
    )
    found = [document["entry"] for document in await cursor.to_list(n)]  # one batch, without a step per document
    return found[::-1]


async def forget(workspace_id: str, session_id: str, entry: Mapping[str, Any], *, session: AsyncClientSession) -> Doc:
    """Remove the notable document of a sealed entry being removed (inside the removal's transaction); the
    session's ``noted`` increments to go with it (none when the entry had none: not notable, or sealed before
    notable documents existed)."""
    entry_type = entry.get("type")
    if entry_type not in NOTABLE_TYPES:
        return {}
    result = await collection().delete_one(
        {"_id": document_id(workspace_id, session_id, entry["id"]), **key(workspace_id, session_id)},
        session=session,
    )
    return {f"noted.{entry_type}": -1} if result.deleted_count else {}


async def forget_all(workspace_id: str, session_id: str, *, session: AsyncClientSession) -> None:
    """Remove every notable document of a session (a clear of its work log, its erasure)."""
    await collection().delete_many(key(workspace_id, session_id), session=session)


def noted_field(entry_type: str) -> Doc:
    """The expression of a session's ``noted`` count of a type (0 when absent: a session sealed before)."""
    return {"$ifNull": [f"$noted.{entry_type}", 0]}
