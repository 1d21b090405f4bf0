"""The rollup's documents: one per (workspace, path, UTC day of the sessions' start), and one per workspace saying
its sessions stored before the rollup existed have been marked for it."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from handoff import clock

#: The counters a day document, a session's snapshot and a read's row carry for one path: every artifact is one
#: touch and one of its action; ``sessions`` counts the sessions that touched the path at least once.
ACTIONS = ("created", "modified", "deleted")
COUNTERS = ("touches", *ACTIONS, "sessions")


#: The periods a count is kept for: each change goes to its day's document and its month's, so a window reads
#: whole months from month documents and only the days around them from day documents.
DAY, MONTH = "day", "month"


class ArtifactDay(Document):
    """What the sessions of one workspace that started in one period (the UTC day or month beginning at
    ``day``) did to one path, as far as the rollup has taken them in (each session's own share is its
    ``rollup_snapshot``)."""

    workspace_id: str
    period: str = DAY
    day: datetime
    path: str
    touches: int = 0
    created: int = 0
    modified: int = 0
    deleted: int = 0
    sessions: int = 0

    class Settings:
        name = "artifact_days"
        use_state_management = False
        validate_on_save = False
        indexes = [
            # The pass's upserts find their document by it; the route reads a window's days through it.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("period", pymongo.ASCENDING),
                    ("day", pymongo.ASCENDING),
                    ("path", pymongo.ASCENDING),
                ],
                name="artifact_days_unique",
                unique=True,
            ),
        ]


class RollupReady(Document):
    """The workspace's sessions stored before the rollup (no ``rollup_dirty`` field) are marked dirty: from now
    on the day documents plus the dirty sessions are the whole answer. Until then the route runs the reference
    pipeline."""

    id: str  # type: ignore[assignment]  # the workspace id
    marked_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "artifact_rollup_ready"
        use_state_management = False
