"""Moving entries from a session's open page into sealed pages: the seal, and the migration of old sessions.

A seal takes the oldest entries of a full open page (at most half of ``page_entries``, at most half of
``page_bytes``) into a new :class:`~handoff.sessions.models.LogPage`. It is one transaction of two writes, once per
page rather than once per append: the session update goes first, so the transaction holds the session document from
its first statement and concurrent appends wait for it instead of making it retry. Its filter proves the entries
read beforehand are still the open page's first ones (their ids at positions ``0`` and ``n-1``: entries are only
ever appended after them or removed, and a removal among them would move the last one) and that no other seal ran
(``pages_version``); it bumps ``pages_version``, which is what makes an append's page check valid (see
``appends.py``). The same transaction writes the page's checkpoints, decisions and errors again as small
documents of their own and counts them in ``noted`` (``notables.py``), and adds them to the session's newest
notables (``newest_notables.py``: what the replay context reads).

:func:`paged_layout` pages a whole log at once, for sessions that arrive whole: an import, or a session stored
before pages existed (``migration.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from handoff import clock, metrics
from handoff.sessions import newest_notables, notables, paging, purges, store
from handoff.sessions.limits import stored_size, total_stored_size
from handoff.sessions.models import session_key
from handoff.sessions.paging import Kind, PageBounds

logger = logging.getLogger("handoff.sessions.seals")

#: Fields of the old layout that the paged log replaces (the context lists' copies).
LEGACY_FIELDS = ("recent_entries", "notable_entries", "context_lists")
#: What :func:`paged_layout` derives from a session's log (its counters of pages, sizes and positions).
LAYOUT_FIELDS = (
    "open_bytes",
    "sealed",
    "stored_bytes",
    "appended",
    "sealed_upto",
    "noted",
    "pages_from",
    "pages_version",
    "payload_bytes",
)


def page_document(
    session: dict[str, Any],
    kind: Kind,
    *,
    no: int,
    before: dict[str, int],
    entries: Sequence[dict[str, Any]],
    size: int,
    now: datetime,
) -> dict[str, Any]:
    """A sealed page of ``entries`` (the kind's entries after ``before`` of each filter)."""
    return {
        "workspace_id": session["workspace_id"],
        "session_id": session["session_id"],
        "kind": kind,
        "no": no,
        "before": before,
        "counts": paging.count(kind, entries),
        "stored_bytes": size,
        "started_at": session["started_at"],
        "entries": list(entries),
        "sealed_at": now,
    }


async def _seal_once(workspace_id: str, session_id: str, kind: Kind, bounds: PageBounds) -> tuple[bool, bool]:
    """One seal if the open page is full: whether it sealed, and whether the open page is still full after it."""
    doc = await store.sessions().find_one(
        store.key(workspace_id, session_id),
        {
            "_id": 1,
            "workspace_id": 1,
            "session_id": 1,
            "started_at": 1,
            "pages_version": 1,
            f"sealed.{kind}": 1,
            f"open_bytes.{kind}": 1,
            f"appended.{kind}": 1,
            f"pages_from.{kind}": 1,
            "pages_from.work_log": 1,  # where the newest notables are rebuilt from (``newest_notables.py``)
            "open_length": {"$size": {"$ifNull": [f"${kind}", []]}},
            kind: {"$slice": bounds.entries},
        },
    )
    if doc is None or "pages_version" not in doc:
        return False, False
    if (floor := await purges.floor(workspace_id, session_id)) > doc["pages_version"]:
        await number_above(workspace_id, session_id, version=doc["pages_version"], floor=floor)
        return await _seal_once(workspace_id, session_id, kind, bounds)
    length, open_size = doc["open_length"], (doc.get("open_bytes") or {}).get(kind, 0)
    if not paging.is_full(length, open_size, bounds):
        return False, False
    head: list[dict[str, Any]] = doc[kind]
    sizes = [stored_size(entry) for entry in head]
    taken = head[: paging.seal_length(sizes, bounds)]
    size = sum(sizes[: len(taken)])
    version: int = doc["pages_version"]
    before = {**paging.zero_counts(kind), **(doc.get("sealed") or {}).get(kind, {})}
    page = page_document(doc, kind, no=version, before=before, entries=taken, size=size, now=clock.now())
    guard = {
        "_id": doc["_id"],
        "workspace_id": workspace_id,
        "pages_version": version,
        f"{kind}.0.id": taken[0]["id"],
        f"{kind}.{len(taken) - 1}.id": taken[-1]["id"],
    }
    # The open page's entry i has an append number of at most appended - length + i (the entries appended
    # before it are sealed, removed, or before it in the page), so every sealed entry's is below this bound.
    sealed_upto = (doc.get("appended") or {}).get(kind, 0) - length + len(taken)
    noted = notables.of_page(page)
    update = {
        "$pull": {kind: {"id": {"$in": [entry["id"] for entry in taken]}}},
        "$inc": {
            "pages_version": 1,
            f"open_bytes.{kind}": -size,
            **{f"sealed.{kind}.{name}": n for name, n in page["counts"].items() if n},
            **{f"noted.{name}": n for name, n in notables.counts(page).items() if n},
        },
        "$max": {f"sealed_upto.{kind}": sealed_upto},
    }

    first = store.first_page(doc, kind)

    async def move(session: AsyncClientSession) -> bool:
        result = await store.sessions().update_one(guard, update, session=session)
        if not result.matched_count:
            return False
        if first:
            await _drop_leftovers(page, noted, first=first, session=session)
        await store.pages().insert_one(page, session=session)
        if noted:
            await notables.collection().insert_many(noted, session=session)
        await newest_notables.after_seal(
            workspace_id,
            session_id,
            version=version,
            noted=noted,
            first=store.first_page(doc, "work_log"),
            session=session,
        )
        return True

    async with store.sessions().database.client.start_session() as session:
        sealed: bool = await session.with_transaction(move)
    if not sealed:
        return False, False
    metrics.page_sealed(kind)
    logger.debug("sealed %d %s entries of %s into page %d", len(taken), kind, session_id, version)
    return True, paging.is_full(length - len(taken), open_size - size, bounds)


async def number_above(
    workspace_id: str, session_id: str, *, version: int, floor: int, session: AsyncClientSession | None = None
) -> None:
    """Number a session's pages from ``floor`` on, above the leftovers of an erased session of the same id still
    being purged (that purge deletes every page below it), and read none of those.

    ``service._open`` starts a session there from a read of the floor before its insert; an erasure of the old
    session that commits between the two (the insert needs the old document gone) leaves the new one at 0, so
    ``_open`` reads the floor again after its insert, and every seal reads it too (the first one moves a session
    still below it). No page of the session's own is below the floor: it is moved before its first seal."""
    await store.sessions().update_one(
        {**store.key(workspace_id, session_id), "pages_version": version},
        {"$set": {"pages_version": floor, **{f"pages_from.{kind}": floor for kind in paging.KINDS}}},
        session=session,
    )


async def _drop_leftovers(
    page: dict[str, Any], noted: list[dict[str, Any]], *, first: int, session: AsyncClientSession
) -> None:
    """Delete the leftovers of a clear not yet purged (pages numbered below ``first``, ``purges.py``) that hold an
    id of ``page``'s entries (ids may be reused after a clear; the entry-id and notable indexes are unique)."""
    left = {**store.page_key(page["workspace_id"], page["session_id"], page["kind"]), "no": {"$lt": first}}
    ids = [entry["id"] for entry in page["entries"]]
    await store.pages().delete_many({**left, "entries.id": {"$in": ids}}, session=session)
    if noted:
        await notables.collection().delete_many(
            {
                "_id": {"$in": [document["_id"] for document in noted]},
                **notables.key(page["workspace_id"], page["session_id"]),
                "no": {"$lt": first},
            },
            session=session,
        )


async def _seal_until_open(workspace_id: str, session_id: str, kind: Kind, bounds: PageBounds) -> None:
    while True:
        sealed, still_full = await _seal_once(workspace_id, session_id, kind, bounds)
        if not (sealed and still_full):
            return


#: The seal running in this process for each (workspace, session, kind): the requests that find one page full at
#: once wait for one seal instead of each trying its own transaction, of which all but one would lose.
_running: dict[tuple[str, str, str], asyncio.Future[None]] = {}


async def seal_full_page(workspace_id: str, session_id: str, kind: Kind, *, bounds: PageBounds) -> None:
    """Seal pages off the open page until it is under its bounds (a batch may have filled several), or until a
    concurrent writer changed the session first (whose own write then decides what happens next).

    A request that finds this process's seal of the page running waits for it, then looks again (one read when
    the page is under its bounds): that seal read the page before this request's append may have landed, so it
    may stop with the page still full."""
    key = (workspace_id, session_id, kind)
    while (running := _running.get(key)) is not None and not running.done():
        await asyncio.shield(running)
    future = asyncio.ensure_future(_seal_until_open(workspace_id, session_id, kind, bounds))
    _running[key] = future
    try:
        await asyncio.shield(future)
    finally:
        if future.done():
            _forget(key, future)
        else:
            future.add_done_callback(lambda _: _forget(key, future))


def _forget(key: tuple[str, str, str], future: asyncio.Future[None]) -> None:
    """Drop a finished seal from ``_running``, unless a newer one of the same page has taken its place."""
    if _running.get(key) is future:
        del _running[key]


# A whole log at once ------------------------------------------------------------------------------------------


def _seal_as_appended(
    doc: dict[str, Any],
    kind: Kind,
    entries: list[dict[str, Any]],
    *,
    bounds: PageBounds,
    now: datetime,
    pages: list[dict[str, Any]],
) -> tuple[dict[str, int], int, int]:
    """Seal ``entries`` into ``pages`` as single appends through the API would have: before each entry, while
    the open page is full, its oldest part is sealed (``seal_length`` of its first ``bounds.entries``). Returns
    the sealed counts, the first open entry's index and the open page's bytes."""
    sizes = [stored_size(entry) for entry in entries]
    before, start, left = paging.zero_counts(kind), 0, 0
    for index, size in enumerate(sizes):
        while paging.is_full(index - start, left, bounds):
            length = paging.seal_length(sizes[start : start + bounds.entries], bounds)
            sealed = sum(sizes[start : start + length])
            page = page_document(
                doc, kind, no=len(pages), before=before, entries=entries[start : start + length], size=sealed, now=now
            )
            pages.append(page)
            before = paging.shift(before, page["counts"])
            start, left = start + length, left - sealed
        left += size
    return before, start, left


def paged_layout(
    legacy: dict[str, Any], bounds: PageBounds, now: datetime, *, totals: Mapping[Kind, int] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A session stored whole (its entire log on the document) as a paged session document and its pages.

    Pure: the importer writes imported sessions through it too, so a long imported log is paged the same way, and
    into the same pages the API would have made of the same entries appended one by one. ``totals``: each kind's
    ``total_stored_size`` when the caller has it (the importer encodes each array once, for its size and for the
    document it writes), so the log is not encoded again to size it.
    """
    doc = {name: value for name, value in legacy.items() if name not in LEGACY_FIELDS}
    doc["_id"] = session_key(doc["workspace_id"], doc["session_id"])
    pages: list[dict[str, Any]] = []
    doc["open_bytes"], doc["sealed"], doc["stored_bytes"] = {}, {}, {"blobs": 0}
    doc["appended"], doc["sealed_upto"] = {}, {}
    # As a session created through the API starts; whoever writes the pages' notable documents counts them here
    # (``notables.attach``), and pages written without them are read by the contexts as pages.
    doc["noted"] = {}
    doc["pages_from"] = {}  # no clear yet: every page is the log's (``purges.py``)
    for kind in paging.KINDS:
        entries: list[dict[str, Any]] = list(doc.get(kind) or [])
        total = totals[kind] if totals is not None else total_stored_size(entries)
        doc["stored_bytes"][kind] = total
        before, start, left = paging.zero_counts(kind), 0, total
        # Seal only if an append of this log would have found its open page full: the last one found it at
        # ``total`` less the last entry, so a log under the bounds even with it (most logs) needs no sizes.
        last = len(entries) - 1
        if (
            entries
            and paging.is_full(last, total, bounds)
            and paging.is_full(last, total - stored_size(entries[-1]), bounds)
        ):
            before, start, left = _seal_as_appended(doc, kind, entries, bounds=bounds, now=now, pages=pages)
        doc[kind] = entries[start:]
        doc["open_bytes"][kind] = left
        doc["sealed"][kind] = before
        doc["appended"][kind], doc["sealed_upto"][kind] = len(entries), start
    doc["payload_bytes"] = sum(doc["stored_bytes"].values())
    doc["pages_version"] = len(pages)
    return doc, pages
