"""The rollup's background pass: fold the dirty sessions into the day documents, a bounded batch at a time.

Every ``HANDOFF_ARTIFACTS_ROLLUP_INTERVAL_SECONDS`` the process holding the ``artifacts_rollup`` lease (the loop of
``handoff.retention.lease.periodically``, as retention and the claim sweep) walks each workspace's dirty sessions.
A batch is read once, at snapshot read concern, outside any transaction (``pipelines.dirty_sessions``: each
session's counts now and its snapshot); then one transaction per batch, for each session, stores the new snapshot
and clears the flag *only if* the session's ``artifact_count`` and ``appended.artifacts`` are still as read (any
change of the artifacts moves one of them: appends raise ``appended``, removals lower ``artifact_count``), and adds
the pending change of every session it cleared to the day and month documents. A session changed meanwhile stays
dirty with its old snapshot, and the next batch takes it again. No append runs in a transaction; one that meets
a batch's transaction on its session waits for that short commit.

Sessions stored before the rollup have no ``rollup_dirty`` field: before a workspace's first pass (or
``handoff migrate``) marks them dirty and records :class:`RollupReady`, the route answers from the reference
pipeline.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.read_concern import ReadConcern

from handoff import clock
from handoff.analytics.expressions import ALL_TIME
from handoff.analytics.rollup import days
from handoff.analytics.rollup.models import RollupReady
from handoff.analytics.rollup.pipelines import SNAPSHOT_COUNTERS, day_of, dirty_sessions
from handoff.config import Settings
from handoff.retention import lease
from handoff.sessions import store
from handoff.sessions.models import ROLLUP_DIRTY_INDEX
from handoff.workspaces.models import Workspace

logger = logging.getLogger("handoff.analytics.rollup")

LEASE = "artifacts_rollup"
#: Sessions folded per transaction: small, so that a transaction is short and an append to one of its sessions
#: rarely has to wait for it.
BATCH_SIZE = 100
PAUSE_AFTER_BATCH_SECONDS = 0.01


@dataclass(slots=True)
class _Folded:
    """One dirty session as read: its guard, the snapshot to store, and its pending change per path."""

    session_id: str
    guard: dict[str, Any]
    snapshot: list[dict[str, Any]] = field(default_factory=list)
    change: days.Changes = field(default_factory=days.new_changes)


def _fold(workspace_id: str, rows: list[dict[str, Any]]) -> list[_Folded]:
    """Group the (session, path) rows of a batch by session."""
    folded: dict[str, _Folded] = {}
    for row in rows:
        session_id, path = row["_id"]["session_id"], row["_id"].get("path")
        head = row["head"]
        one = folded.get(session_id)
        if one is None:
            one = folded[session_id] = _Folded(
                session_id,
                guard={
                    "_id": head["_id"],  # the fast path of a lookup by _id (the key of a legacy session is other)
                    **store.key(workspace_id, session_id),
                    "rollup_dirty": True,
                    "artifact_count": head.get("artifact_count"),
                    "appended.artifacts": head.get("appended"),
                },
            )
        if path is None:
            continue
        now = {name: row[name] for name in SNAPSHOT_COUNTERS}
        if now["touches"] > 0:
            one.snapshot.append({"path": path, **now})
        change = {name: row[name] - row[f"old_{name}"] for name in SNAPSHOT_COUNTERS}
        change["sessions"] = int(row["touches"] > 0) - int(row["old_touches"] > 0)
        days.add(one.change, day_of(head["started_at"]), path, change)
    for one in folded.values():
        one.snapshot.sort(key=lambda line: line["path"])
    return list(folded.values())


def _guarded(doc: dict[str, Any]) -> tuple[Any, ...]:
    """The values the guard compares, from a stored session or from a guard (dotted or nested ``appended``)."""
    appended = doc.get("appended.artifacts", (doc.get("appended") or {}).get("artifacts"))
    return doc.get("rollup_dirty"), doc.get("artifact_count"), appended


async def fold_batch(workspace_id: str, *, limit: int = BATCH_SIZE, paged: bool = False) -> tuple[int, int]:
    """Fold up to ``limit`` dirty sessions of the workspace, those with sealed artifact pages or those without
    (``paged``); (sessions read, sessions folded)."""
    sessions = store.sessions()
    snapshot = sessions.with_options(read_concern=ReadConcern("snapshot"))
    pipeline = dirty_sessions(workspace_id, ALL_TIME, paged=paged, limit=limit)
    cursor = await snapshot.aggregate(pipeline, hint=ROLLUP_DIRTY_INDEX)
    batch = _fold(workspace_id, await cursor.to_list(None))
    if not batch:
        return 0, 0

    async def commit(txn: AsyncClientSession) -> int:
        # Which sessions are unchanged, read in the transaction: its writes below see the same snapshot (a change
        # committed since is a write conflict, and the whole transaction runs again).
        current = await sessions.find(
            {"workspace_id": workspace_id, "session_id": {"$in": [one.session_id for one in batch]}},
            {"_id": 0, "session_id": 1, "rollup_dirty": 1, "artifact_count": 1, "appended.artifacts": 1},
            session=txn,
        ).to_list(None)
        now = {doc["session_id"]: _guarded(doc) for doc in current}
        kept = [one for one in batch if now.get(one.session_id) == _guarded(one.guard)]
        if not kept:
            return 0
        await sessions.bulk_write(
            [UpdateOne(one.guard, {"$set": {"rollup_dirty": False, "rollup_snapshot": one.snapshot}}) for one in kept],
            ordered=False,
            session=txn,
        )
        changes = days.new_changes()
        for one in kept:
            for (day, path), moved in one.change.items():
                days.add(changes, day, path, moved)
        await days.apply(workspace_id, changes, session=txn)
        return len(kept)

    async with sessions.database.client.start_session() as txn:
        folded: int = await txn.with_transaction(commit)
    return len(batch), folded


async def mark_stored_before(workspace_id: str) -> None:
    """Mark the workspace's sessions stored before the rollup dirty, once (then :class:`RollupReady`)."""
    ready = RollupReady.get_pymongo_collection()
    if await ready.find_one({"_id": workspace_id}) is not None:
        return
    unmarked = {"workspace_id": workspace_id, "rollup_dirty": {"$exists": False}}
    # Those with artifacts (or no counter: a very old document) are dirty; the others hold nothing to fold. An
    # artifact appended in between sets the field itself, so the second update leaves that session alone.
    await store.sessions().update_many({**unmarked, "artifact_count": {"$ne": 0}}, {"$set": {"rollup_dirty": True}})
    await store.sessions().update_many(unmarked, {"$set": {"rollup_dirty": False}})
    await ready.update_one({"_id": workspace_id}, {"$setOnInsert": {"marked_at": clock.now()}}, upsert=True)


async def is_ready(workspace_id: str) -> bool:
    """Whether the day documents plus the dirty sessions are the workspace's whole answer."""
    return await RollupReady.get_pymongo_collection().find_one({"_id": workspace_id}, {"_id": 1}) is not None


async def catch_up(workspace_id: str, *, batch_size: int = BATCH_SIZE, between: Any = None) -> int:
    """Mark the old sessions, then fold every dirty session of the workspace; the sessions folded.

    Stops at a batch that folds nothing (every session of it changed meanwhile: the next pass takes them).
    ``between``: awaited after each batch (the pass renews its lease there)."""
    await mark_stored_before(workspace_id)
    total = 0
    for paged in (False, True):
        while True:
            read, folded = await fold_batch(workspace_id, limit=batch_size, paged=paged)
            total += folded
            if between is not None and read:
                await between()
            if read < batch_size or folded == 0:
                break
    return total


async def catch_up_all(*, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """:func:`catch_up` every workspace (``handoff migrate``); the sessions folded per workspace slug."""
    folded: dict[str, int] = defaultdict(int)
    async for workspace in Workspace.find_all():
        folded[workspace.slug] += await catch_up(workspace.workspace_id, batch_size=batch_size)
    return dict(folded)


async def run_pass(settings: Settings, owner: str) -> int | None:
    """One pass over every workspace if this process holds (or takes) the lease; ``None`` when another does."""
    seconds = lease.seconds_for(settings.artifacts_rollup_interval_seconds)
    if not await lease.acquire(LEASE, owner, now=clock.now(), seconds=seconds):
        return None

    async def renew() -> None:
        await lease.keep(LEASE, owner, seconds=seconds, pause=PAUSE_AFTER_BATCH_SECONDS)

    folded = 0
    async for workspace in Workspace.find_all():
        folded += await catch_up(workspace.workspace_id, between=renew)
    return folded


def running(settings: Settings) -> contextlib.AbstractAsyncContextManager[None]:
    """Run the pass for as long as the block (the app's lifespan) lasts; the lease is given up on the way out."""
    return lease.periodically(
        LEASE,
        settings.artifacts_rollup_interval_seconds,
        lambda owner: run_pass(settings, owner),
        label="artifacts rollup pass",
        logger=logger,
    )
