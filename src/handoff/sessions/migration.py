"""Moving sessions stored before the paged log into it.

Such a session is one document holding its whole log and artifacts (plus the context lists' copies the paged
log dropped), without ``pages_version`` and with an ObjectId ``_id``. Every route reads it as it is (one big open
page, no pages). A write's filter requires the paged layout, so the first write to such a session misses and
migrates it (``misses.py``), then runs again; ``handoff migrate`` migrates every session at once.

One migration is one transaction: the old document goes, the new one (keyed ``<workspace_id>/<session_id>``, with
``migrated: true`` for the change streams) and its pages and their notable entries (``notables.py``) come, so no
reader ever sees half of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pymongo.asynchronous.client_session import AsyncClientSession

from handoff import clock
from handoff.sessions import notables, store
from handoff.sessions.paging import PageBounds
from handoff.sessions.seals import paged_layout
from handoff.workspaces.models import Workspace

logger = logging.getLogger("handoff.sessions.migration")

#: The filter of a session stored in the old layout.
LEGACY = {"pages_version": {"$exists": False}}


async def migrate(workspace_id: str, session_id: str, *, bounds: PageBounds) -> bool:
    """Move a session stored in the old layout to the paged one; ``False`` when it is not (or no longer) old."""
    collection = store.sessions()

    async def move(session: AsyncClientSession) -> bool:
        legacy = await collection.find_one({**store.key(workspace_id, session_id), **LEGACY}, session=session)
        if legacy is None:
            return False
        doc, pages = paged_layout(legacy, bounds, clock.now())
        doc["migrated"] = True
        noted = notables.attach(doc, pages)
        await collection.delete_one({"_id": legacy["_id"], "workspace_id": workspace_id}, session=session)
        await notables.forget_all(workspace_id, session_id, session=session)  # none, unless left by hand
        await collection.insert_one(doc, session=session)
        if pages:
            await store.pages().insert_many(pages, session=session)
        if noted:
            await notables.collection().insert_many(noted, session=session)
        return True

    async with collection.database.client.start_session() as session:
        migrated: bool = await session.with_transaction(move)
    if migrated:
        logger.info("migrated session %s of %s to the paged layout", session_id, workspace_id)
    return migrated


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
