"""Finding and deleting the ended sessions a workspace no longer keeps, in bounded batches.

Only ended sessions (``completed``, ``failed``) whose ``ended_at`` is before the cut-off go; active and paused
sessions are never touched, whatever their age. Each is deleted through
``handoff.sessions.service.delete_session``, the one way a session is erased (its pages and blobs with it), so
``handoff prune``, the background and ``DELETE /v1/sessions/{id}`` erase the same things.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from handoff.errors import NotFound
from handoff.sessions import service as sessions
from handoff.sessions.models import ENDED_STATUSES, Session
from handoff.workspaces.models import Workspace

#: Called after each batch with the number of sessions deleted so far.
BatchDone = Callable[[int], Awaitable[None] | None]


@dataclass(slots=True)
class PruneResult:
    """What a prune found and did: the count before it started, what it deleted, and each batch's size."""

    found: int
    deleted: int = 0
    batches: list[int] = field(default_factory=list)


def expired_query(workspace_id: str, ended_before: datetime) -> dict[str, Any]:
    """The workspace's ended sessions that ended before ``ended_before``."""
    return {
        "workspace_id": workspace_id,
        "status": {"$in": sorted(status.value for status in ENDED_STATUSES)},
        "ended_at": {"$lt": ended_before},
    }


def cutoff(ended_after_days: int, *, now: datetime) -> datetime:
    """The ``ended_at`` before which a session has been kept ``ended_after_days``."""
    return now - timedelta(days=ended_after_days)


async def count_expired(workspace_id: str, ended_before: datetime) -> int:
    """How many sessions a prune would delete."""
    return await Session.get_pymongo_collection().count_documents(expired_query(workspace_id, ended_before))


async def prune(
    workspace_id: str,
    *,
    ended_before: datetime,
    batch_size: int,
    dry_run: bool = False,
    after_batch: BatchDone | None = None,
) -> PruneResult:
    """Count the expired sessions, then (unless ``dry_run``) delete them, oldest first, ``batch_size`` at a time.

    Sessions that end meanwhile and qualify are deleted too; one deleted by someone else meanwhile is skipped.
    """
    result = PruneResult(found=await count_expired(workspace_id, ended_before))
    if dry_run or result.found == 0:
        return result
    collection = Session.get_pymongo_collection()
    query = expired_query(workspace_id, ended_before)
    while True:
        batch = (
            await collection.find(query, {"_id": 0, "session_id": 1}).sort("ended_at", ASCENDING).to_list(batch_size)
        )
        deleted = 0
        for doc in batch:
            try:
                await sessions.delete_session(workspace_id, doc["session_id"])
                deleted += 1
            except NotFound:
                continue  # deleted by a user, another worker or another prune in between
        if deleted:
            result.deleted += deleted
            result.batches.append(deleted)
            if after_batch is not None and (waiting := after_batch(result.deleted)) is not None:
                await waiting
        if len(batch) < batch_size or deleted == 0:
            return result


async def workspaces_with_retention() -> list[Workspace]:
    """The workspaces that set a retention, by slug (none: the background has nothing to do)."""
    return await Workspace.find({"retention_ended_after_days": {"$ne": None}}).sort("+slug").to_list()
