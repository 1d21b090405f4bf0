"""Moving counts in and out of the day and month documents, always inside the caller's transaction.

The pass adds each folded session's pending change; a session delete (``DELETE``, retention) subtracts the
session's snapshot, which is exactly what the day documents hold for it whether or not it was dirty (its pending
change was never added). Both go through :func:`apply`, one unordered bulk of ``$inc`` upserts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from handoff.analytics.rollup.models import COUNTERS, DAY, MONTH, ArtifactDay
from handoff.analytics.rollup.pipelines import SNAPSHOT_COUNTERS, day_of, month_of

#: Per (day, path): how much each counter moves.
Changes = defaultdict[tuple[datetime, str], dict[str, int]]


def new_changes() -> Changes:
    return defaultdict(lambda: dict.fromkeys(COUNTERS, 0))


def add(changes: Changes, day: datetime, path: str, change: Mapping[str, int], sign: int = 1) -> None:
    """Add ``sign`` times one path's change (``touches``, actions, ``sessions``) to the changes of ``day``."""
    moved = changes[(day, path)]
    for name in COUNTERS:
        moved[name] += sign * int(change.get(name, 0))


def snapshot_share(snapshot: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict[str, int]]]:
    """What a snapshot counts in the day documents: its lines, each with ``sessions`` 1 (a line is a path the
    session touched)."""
    return [
        (line["path"], {**{name: int(line.get(name, 0)) for name in SNAPSHOT_COUNTERS}, "sessions": 1})
        for line in snapshot
        if int(line.get("touches", 0)) > 0
    ]


def subtract_session(changes: Changes, started_at: datetime, snapshot: Iterable[Mapping[str, Any]]) -> None:
    """Take a session's share (its snapshot) out of its start day."""
    day = day_of(started_at)
    for path, share in snapshot_share(snapshot):
        add(changes, day, path, share, sign=-1)


async def apply(workspace_id: str, changes: Changes, *, session: AsyncClientSession) -> None:
    """Write the changes to the workspace's day and month documents (creating those that do not exist yet)."""
    by_period: dict[tuple[str, datetime, str], dict[str, int]] = {}
    for (day, path), moved in changes.items():
        for key in ((DAY, day, path), (MONTH, month_of(day), path)):
            total = by_period.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in moved.items():
                total[name] += value
    operations = [
        UpdateOne(
            {"workspace_id": workspace_id, "period": period, "day": day, "path": path},
            {"$inc": {name: value for name, value in moved.items() if value}},
            upsert=True,
        )
        for (period, day, path), moved in by_period.items()
        if any(moved.values())
    ]
    if operations:
        await ArtifactDay.get_pymongo_collection().bulk_write(operations, ordered=False, session=session)


async def forget_session(workspace_id: str, erased: Mapping[str, Any] | None, *, session: AsyncClientSession) -> None:
    """Take an erased session's share out of the day documents, in the transaction that erased it (``erased``:
    the deleted document's ``started_at`` and ``rollup_snapshot``, ``None`` when nothing was deleted)."""
    if not erased or not erased.get("rollup_snapshot"):
        return
    changes = new_changes()
    subtract_session(changes, erased["started_at"], erased["rollup_snapshot"])
    await apply(workspace_id, changes, session=session)
