"""Taking entries out of a session: erase one by id, pop the newest, clear a kind.

Removals are rare (erasure requests, a framework undoing its last turn), and an entry may sit in a sealed page
whose successors' ``before`` counts must move with it, so each removal is one transaction: the session
document's counters (``action_count``..., ``sealed``, the byte counts, ``last_checkpoint``) move in the same
commit as the entry goes, and a reader never sees one without the other. Two racing pops both write the session
document, so MongoDB lets only one commit and retries the other, which then reads the next newest entry: two pops
never return the same entry. Every removal bumps ``pages_version`` when it touches a page (so an append's page
check is redone) and writes ``last_removal`` for the change streams. A sealed checkpoint, decision or error goes
with its notable document (``notables.py``) in the same transaction, and ``noted`` moves with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from handoff import clock
from handoff.config import Settings
from handoff.errors import NotFound
from handoff.sessions import migration, misses, newest_notables, notables, paging, purges, store, views
from handoff.sessions.lifecycle import is_ended
from handoff.sessions.limits import stored_size
from handoff.sessions.models import ENTRY_ID_INDEX, EntryType, filter_index_name
from handoff.sessions.paging import Kind

Doc = dict[str, Any]


class _Legacy(Exception):
    """The session is stored in the old layout: migrate it and run the removal again."""


def _rollup_dirty(kind: Kind) -> Doc:
    """A removal of artifacts leaves the artifacts rollup a change to take in (``handoff.analytics.rollup``)."""
    return {"rollup_dirty": True} if kind == "artifacts" else {}


def _counters(kind: Kind, entry: Doc, sign: int) -> dict[str, int]:
    if kind == "artifacts":
        return {"artifact_count": sign}
    return {name: sign * value for name, value in views.sum_increments([entry]).items() if value}


def _removal(kind: Kind, ids: list[str] | None, now: datetime) -> Doc:
    """The ``last_removal`` stamp: which entries went (``ids``), or that the whole kind was cleared."""
    return {"kind": kind, "ids": ids, "cleared": ids is None, "at": now}


async def _run(
    workspace_id: str, session_id: str, settings: Settings, removal: Callable[[AsyncClientSession], Awaitable[Any]]
) -> Any:
    """Run ``removal`` in a transaction; migrate an old-layout session first and run it again."""
    client = store.sessions().database.client
    for _ in range(2):
        try:
            async with client.start_session() as session:
                return await session.with_transaction(removal)
        except _Legacy:
            await migration.migrate(workspace_id, session_id, bounds=misses.page_bounds(settings))
    raise AssertionError("a migrated session is never in the old layout")  # pragma: no cover


async def _head(workspace_id: str, session_id: str, kind: Kind, session: AsyncClientSession, **fields: Any) -> Doc:
    doc = await store.sessions().find_one(
        store.key(workspace_id, session_id),
        {
            "_id": 1,
            "status": 1,
            "pages_version": 1,
            "last_checkpoint": 1,
            f"sealed.{kind}": 1,
            f"pages_from.{kind}": 1,
            **fields,
        },
        session=session,
    )
    if doc is None:
        raise store.not_found(session_id)
    if "pages_version" not in doc:
        raise _Legacy
    return doc


async def _newest_checkpoint(
    workspace_id: str, session_id: str, session: AsyncClientSession, *, first: int
) -> Doc | None:
    """The newest checkpoint entry left in the log (open page first, then the newest page holding one)."""
    is_checkpoint = paging.condition("work_log", EntryType.CHECKPOINT.value)
    doc = await store.sessions().find_one(
        store.key(workspace_id, session_id),
        {"_id": 0, "last": {"$last": paging.filtered({"$ifNull": ["$work_log", []]}, is_checkpoint)}},
        session=session,
    )
    if doc and doc.get("last"):
        last: Doc = doc["last"]
        return last
    page = await store.pages().find_one(
        {
            **store.page_key(workspace_id, session_id, "work_log"),
            "counts.checkpoint": {"$gt": 0},
            "no": {"$gte": first},
        },
        {"_id": 0, "last": {"$last": paging.filtered("$entries", is_checkpoint)}},
        sort=[("before.checkpoint", DESCENDING)],
        hint=filter_index_name("work_log", EntryType.CHECKPOINT.value),
        session=session,
    )
    found: Doc | None = page["last"] if page else None
    return found


async def _remove(
    workspace_id: str,
    session_id: str,
    kind: Kind,
    entry: Doc,
    *,
    head: Doc,
    page: Doc | None,
    stamps: Doc,
    session: AsyncClientSession,
) -> None:
    """Remove ``entry`` (in the open page, or in ``page``) and move every count with it, inside ``session``."""
    now = clock.now()
    size = stored_size(entry)
    increments: dict[str, int] = {
        **_counters(kind, entry, -1),
        "payload_bytes": -size,
        f"stored_bytes.{kind}": -size,
    }
    if page is None:
        increments[f"open_bytes.{kind}"] = -size
    else:
        names = paging.filters_of(kind, entry)
        increments |= {"pages_version": 1, **{f"sealed.{kind}.{name}": -1 for name in names}}
        pages = store.pages()
        if page["length"] == 1:
            await pages.delete_one({"_id": page["_id"], "workspace_id": workspace_id}, session=session)
        else:
            await pages.update_one(
                {"_id": page["_id"], "workspace_id": workspace_id},
                {
                    "$pull": {"entries": {"id": entry["id"]}},
                    "$inc": {"stored_bytes": -size, **{f"counts.{name}": -1 for name in names}},
                },
                session=session,
            )
        await pages.update_many(
            {**store.page_key(workspace_id, session_id, kind), "no": {"$gt": page["no"]}},
            {"$inc": {f"before.{name}": -1 for name in names}},
            session=session,
        )
        version = head["pages_version"]
        if kind == "work_log":
            increments |= await notables.forget(workspace_id, session_id, entry, session=session)
            first = store.first_page(head, "work_log")
            await newest_notables.after_removal(
                workspace_id, session_id, entry, version=version, first=first, session=session
            )
        else:
            await newest_notables.keep_step(workspace_id, session_id, version=version, session=session)
    update: Doc = {
        "$inc": increments,
        "$set": {
            "last_removal": _removal(kind, [entry["id"]], now),
            "updated_at": now,
            **stamps,
            **_rollup_dirty(kind),
        },
    }
    if page is None:
        update["$pull"] = {kind: {"id": entry["id"]}}
    await store.sessions().update_one({"_id": head["_id"], "workspace_id": workspace_id}, update, session=session)
    if kind == "work_log" and (head.get("last_checkpoint") or {}).get("id") == entry["id"]:
        checkpoint = await _newest_checkpoint(
            workspace_id, session_id, session, first=store.first_page(head, "work_log")
        )
        await store.sessions().update_one(
            {"_id": head["_id"], "workspace_id": workspace_id},
            {"$set": {"last_checkpoint": checkpoint}},
            session=session,
        )


async def _page_of(
    workspace_id: str, session_id: str, kind: Kind, session: AsyncClientSession, *, head: Doc, entry_id: str | None
) -> tuple[Doc, Doc] | None:
    """The sealed page holding ``entry_id`` (or, without one, the newest page) and that entry (or its newest)."""
    query = {**store.page_key(workspace_id, session_id, kind), "no": {"$gte": store.first_page(head, kind)}}
    if entry_id is None:
        found: dict[str, Any] = {"$slice": ["$entries", -1]}
        sort = [(f"before.{paging.ALL}", DESCENDING)]
        query = {**query, f"counts.{paging.ALL}": {"$gt": 0}}
        index = filter_index_name(kind, paging.ALL)
    else:
        found = {"$filter": {"input": "$entries", "cond": {"$eq": ["$$this.id", entry_id]}}}
        sort = None
        query = {**query, "entries.id": entry_id}
        index = ENTRY_ID_INDEX
    page = await store.pages().find_one(
        query, {"no": 1, "length": {"$size": "$entries"}, "found": found}, sort=sort, hint=index, session=session
    )
    if page is None or not page["found"]:
        return None
    return page, page["found"][0]


async def delete_entry(workspace_id: str, session_id: str, kind: Kind, entry_id: str, *, settings: Settings) -> None:
    """Erase one entry wherever it is stored, whatever the session's status; 404 when there is none."""

    async def removal(session: AsyncClientSession) -> None:
        head = await _head(
            workspace_id,
            session_id,
            kind,
            session,
            found={"$filter": {"input": {"$ifNull": [f"${kind}", []]}, "cond": {"$eq": ["$$this.id", entry_id]}}},
        )
        if head["found"]:
            await _remove(
                workspace_id, session_id, kind, head["found"][0], head=head, page=None, stamps={}, session=session
            )
            return
        located = await _page_of(workspace_id, session_id, kind, session, head=head, entry_id=entry_id)
        if located is None:
            raise NotFound(f"entry {entry_id} not found in session {session_id}")
        page, entry = located
        await _remove(workspace_id, session_id, kind, entry, head=head, page=page, stamps={}, session=session)

    await _run(workspace_id, session_id, settings, removal)


async def pop_newest(workspace_id: str, session_id: str, kind: Kind, *, settings: Settings) -> Doc | None:
    """Remove and return the newest entry (``None`` when there is none); 409 on an ended session."""

    async def removal(session: AsyncClientSession) -> Doc | None:
        head = await _head(
            workspace_id, session_id, kind, session, last={"$slice": [{"$ifNull": [f"${kind}", []]}, -1]}
        )
        if is_ended(head["status"]):
            raise store.ended(session_id, head["status"])
        now = clock.now()
        stamps = {"last_active_at": now}
        if head["last"]:
            entry: Doc = head["last"][0]
            await _remove(workspace_id, session_id, kind, entry, head=head, page=None, stamps=stamps, session=session)
            return entry
        located = await _page_of(workspace_id, session_id, kind, session, head=head, entry_id=None)
        if located is None:
            return None
        page, entry = located
        await _remove(workspace_id, session_id, kind, entry, head=head, page=page, stamps=stamps, session=session)
        return entry

    popped: Doc | None = await _run(workspace_id, session_id, settings, removal)
    return popped


async def clear(workspace_id: str, session_id: str, kind: Kind, *, settings: Settings) -> None:
    """Remove every entry of a kind (its pages included) and zero its counters; the session stays.

    What a client sees change is one small transaction (the session document and the purge document): the pages
    and notable documents it leaves behind are out of every read's sight from then on, and deleted in batches
    afterwards (``purges.py``), whatever their number."""

    async def removal(session: AsyncClientSession) -> None:
        head = await _head(workspace_id, session_id, kind, session, stored_bytes=1, appended=1)
        size = (head.get("stored_bytes") or {}).get(kind, 0)
        # Seals number pages with ``pages_version``: every page from now on is numbered at least this.
        first = head["pages_version"] + 1
        counters: Doc = {"artifact_count": 0}
        if kind == "work_log":
            counters = {
                "action_count": 0,
                "checkpoint_count": 0,
                "error_count": 0,
                "last_checkpoint": None,
                "noted": {},
            }
        now = clock.now()
        await store.sessions().update_one(
            {"_id": head["_id"], "workspace_id": workspace_id},
            {
                "$set": {
                    kind: [],
                    f"open_bytes.{kind}": 0,
                    f"stored_bytes.{kind}": 0,
                    f"sealed.{kind}": paging.zero_counts(kind),
                    f"pages_from.{kind}": first,
                    # Every entry so far is gone: an append in flight re-checks (appends.py, ``sealed_upto``).
                    f"sealed_upto.{kind}": (head.get("appended") or {}).get(kind, 0),
                    "last_removal": _removal(kind, None, now),
                    "updated_at": now,
                    **counters,
                    **_rollup_dirty(kind),
                },
                "$inc": {"payload_bytes": -size, "pages_version": 1},
            },
            session=session,
        )
        if kind == "work_log":
            await newest_notables.forget(workspace_id, session_id, session=session)
        else:
            await newest_notables.keep_step(workspace_id, session_id, version=head["pages_version"], session=session)
        has_pages = (head.get("sealed") or {}).get(kind, {}).get(paging.ALL, 0) > 0
        if has_pages:
            await purges.mark(workspace_id, session_id, {kind: first}, session=session)

    await _run(workspace_id, session_id, settings, removal)
    # Also when this clear left nothing: it finishes what an earlier one was cut off in.
    await purges.purge(workspace_id, session_id)
