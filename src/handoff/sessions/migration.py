"""Moving sessions stored before the paged log into it.

Such a session is one document holding its whole log and artifacts (plus the context lists' copies the paged
log dropped), without ``pages_version`` and with an ObjectId ``_id``. Every route reads it as it is (one big open
page, no pages). A write's filter requires the paged layout, so the first write to such a session misses and
migrates it (``misses.py``), then runs again; ``handoff migrate`` migrates every session at once.

A migration never shows half a session, and the log's pages are written outside any transaction: a legacy log
runs to ~66,000 entries in 16 MiB, and one transaction holding all its pages (with their index keys) is too large
for the storage engine's cache of a small mongod (WiredTiger rolls it back as a ``WriteConflict``, and the driver
retries it until its 120 s are up), as ``bulk.importer`` found for long imported logs. So, as the importer does,
the pages come first and what makes them the session's comes last:

1. a *claim* on the old document (``migrating: {token, at}``, one guarded update that also reads it), so that one
   migration at a time writes the session's pages; another waits for it (a concurrent write then finds the new
   layout) or, once the claim is :data:`CLAIM_SECONDS` old (its migration died), takes it over;
2. the pages (and their notable entries, ``notables.py``) a dead migration left under the session's key deleted,
   then this migration's pages and notable entries inserted (the
   session's routes read no page of an old-layout session: its document counts no sealed entries, the reads by
   filter take only pages numbered below its ``pages_version``, which it has none of, and an entry read by id is
   found on the document first);
3. the *flip*: one small transaction deletes the old document (only while this claim holds it) and inserts the new
   one (keyed ``<workspace_id>/<session_id>``, with ``migrated: true`` for the change streams). The log is the one
   read at the claim (no write changes the log of an old-layout session: every write requires the paged layout);
   the other fields are taken as the flip finds them, so what the artifacts rollup wrote meanwhile is kept.

Readers see the old session until the flip and the new one after it. Not covered: between steps 2 and 3 (and,
after a migration killed there, until the session is migrated again) the analytics that read pages across the
workspace (errors, and artifacts before the rollup is ready) count those pages beside the old document's own log,
as after an import killed before its sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from handoff import clock
from handoff.sessions import newest_notables, notables, store
from handoff.sessions.paging import KINDS, PageBounds
from handoff.sessions.seals import LAYOUT_FIELDS, LEGACY_FIELDS, paged_layout
from handoff.workspaces.models import Workspace

logger = logging.getLogger("handoff.sessions.migration")

#: The filter of a session stored in the old layout.
LEGACY = {"pages_version": {"$exists": False}}
#: The old document's field naming the migration under way.
CLAIM = "migrating"
#: How long a claim holds without its migration finishing before another may take it over (a maximal session
#: migrates in seconds).
CLAIM_SECONDS = 120
#: How often a migration that finds another's claim looks whether it has finished.
WAIT_SECONDS = 0.05
#: What the flip takes from the old document as it finds it: all but the log (as read at the claim) and what the
#: paged layout derives from it (an old document has none of those, unless something wrote them meanwhile: the
#: layout's own figures are the ones that match its pages).
_NOT_THE_LOG = dict.fromkeys((*KINDS, *LEGACY_FIELDS), 0)
_FROM_THE_LOG = frozenset({"_id", CLAIM, *KINDS, *LEGACY_FIELDS, *LAYOUT_FIELDS})


async def migrate(workspace_id: str, session_id: str, *, bounds: PageBounds) -> bool:
    """Move a session stored in the old layout to the paged one; ``False`` when it is not (or no longer) old,
    another migration having moved it meanwhile included."""
    token = ObjectId()
    legacy = await _claim(workspace_id, session_id, token)
    if legacy is None:
        return False
    try:
        doc, pages = paged_layout(legacy, bounds, clock.now())
        del doc[CLAIM]
        noted = notables.attach(doc, pages)
        await store.pages().delete_many(store.key(workspace_id, session_id))  # a dead migration's
        await notables.collection().delete_many(notables.key(workspace_id, session_id))
        if pages:
            await store.pages().insert_many(pages)
        if noted:
            await notables.collection().insert_many(noted)
        await newest_notables.write(workspace_id, session_id, version=doc["pages_version"], noted=noted)
        migrated = await _flip(legacy["_id"], workspace_id, token, doc)
    except BaseException:
        await asyncio.shield(_release(legacy["_id"], workspace_id, token))
        raise
    if migrated:
        logger.info("migrated session %s of %s to the paged layout (%d pages)", session_id, workspace_id, len(pages))
    return migrated


async def _claim(workspace_id: str, session_id: str, token: ObjectId) -> dict[str, Any] | None:
    """Claim the old document and read it; ``None`` once the session is not (or no longer) in the old layout,
    after waiting for a live claim of another migration to end."""
    collection = store.sessions()
    while True:
        now = clock.now()
        lapsed = now - timedelta(seconds=CLAIM_SECONDS)
        claimable = {"$or": [{CLAIM: {"$exists": False}}, {f"{CLAIM}.at": {"$lt": lapsed}}]}
        legacy = await collection.find_one_and_update(
            {**store.key(workspace_id, session_id), **LEGACY, **claimable},
            {"$set": {CLAIM: {"token": token, "at": now}}},
            return_document=ReturnDocument.AFTER,
        )
        if legacy is not None:
            return legacy
        if await collection.count_documents({**store.key(workspace_id, session_id), **LEGACY}, limit=1) == 0:
            return None
        await asyncio.sleep(WAIT_SECONDS)  # another migration holds it: its flip is seconds away


async def _flip(legacy_id: ObjectId, workspace_id: str, token: ObjectId, doc: dict[str, Any]) -> bool:
    """Replace the old document by ``doc`` while this claim holds it, in one transaction; whether it did."""
    collection = store.sessions()

    async def flip(session: AsyncClientSession) -> bool:
        current = await collection.find_one_and_delete(
            {"_id": legacy_id, "workspace_id": workspace_id, **LEGACY, f"{CLAIM}.token": token},
            _NOT_THE_LOG,
            session=session,
        )
        if current is None:  # taken over after this claim lapsed: the migration that took it writes the session
            return False
        fields = {name: value for name, value in current.items() if name not in _FROM_THE_LOG}
        await collection.insert_one({**doc, **fields, "migrated": True}, session=session)
        return True

    async with collection.database.client.start_session() as session:
        flipped: bool = await session.with_transaction(flip)
    return flipped


async def _release(legacy_id: ObjectId, workspace_id: str, token: ObjectId) -> None:
    """Let the claim go after a failure, if it still holds the old document, so the next migration need not wait
    for it to lapse. The pages written stay: only a claim's holder deletes pages, before it writes its own (the
    next migration's step 2), so none is ever deleted under a migration that may still flip."""
    with contextlib.suppress(Exception):  # else it lapses
        await store.sessions().update_one(
            {"_id": legacy_id, "workspace_id": workspace_id, **LEGACY, f"{CLAIM}.token": token}, {"$unset": {CLAIM: ""}}
        )


async def migrate_workspaces(*, bounds: PageBounds, on_session: Callable[[], None] | None = None) -> int:
    """Migrate every old-layout session of every workspace (one workspace at a time, each query carrying its
    ``workspace_id``); returns how many were migrated. Safe to run while the service serves: a session written
    meanwhile is migrated by that write, and skipped here."""
    migrated = 0
    async for workspace in Workspace.find_all():
        cursor = store.sessions().find({"workspace_id": workspace.workspace_id, **LEGACY}, {"session_id": 1})
        async for doc in cursor:
            if await migrate(workspace.workspace_id, doc["session_id"], bounds=bounds):
                migrated += 1
            if on_session is not None:
                on_session()
    return migrated


async def count_legacy() -> int:
    """How many sessions are still stored in the old layout, across workspaces."""
    total = 0
    async for workspace in Workspace.find_all():
        total += await store.sessions().count_documents({"workspace_id": workspace.workspace_id, **LEGACY})
    return total
