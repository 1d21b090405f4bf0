"""The session document: one MongoDB document per agent session, arrays embedded.

``work_log`` and ``artifacts`` only ever grow through single ``$push`` updates (see ``service.py``); the
counters, ``last_checkpoint``, ``payload_bytes``, ``last_active_at`` and the context lists (``recent_entries``,
``notable_entries``) move in the same update, so they are always exact. Read paths project the arrays out and
take slices of them on the server.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from handoff import clock


class SessionStatus(StrEnum):
    """Where a session is in its life; ``completed`` and ``failed`` are ended."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


ENDED_STATUSES = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED})


class EntryType(StrEnum):
    """The kinds of typed work-log entry."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    SUCCESS = "success"
    CHECKPOINT = "checkpoint"
    DECISION = "decision"


class ArtifactAction(StrEnum):
    """What an agent did to a file."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"


def _listing_index(name: str, *keys: str) -> IndexModel:
    """An index for one listing filter, ordered newest first with ``session_id`` as the keyset tiebreak."""
    fields = [("workspace_id", pymongo.ASCENDING)]
    fields += [(key, pymongo.ASCENDING) for key in keys]
    fields += [("started_at", pymongo.DESCENDING), ("session_id", pymongo.DESCENDING)]
    return IndexModel(fields, name=name)


#: The arrays whose entries ``payload_bytes`` counts: the log, the artifacts and the log's notable copies, which
#: grow with it. (``recent_entries`` is bounded at 20 entries and lives in the headroom under 16 MiB.)
PAYLOAD_ARRAYS = ("work_log", "artifacts", "notable_entries")


class Session(Document):
    """One agent session with its embedded work log and artifacts."""

    workspace_id: str
    session_id: str
    external_id: str | None = None
    agent_api_key_id: str | None = None
    plan: str | None = None
    agent_type: str | None = None
    status: SessionStatus = SessionStatus.ACTIVE
    context_summary: dict[str, Any] | None = None
    work_log: list[dict[str, Any]] = Field(default_factory=list)
    artifacts: list[dict[str, Any]] = Field(default_factory=list)
    handoff_notes: dict[str, Any] | None = None
    final_summary: str | None = None
    action_count: int = 0
    artifact_count: int = 0
    checkpoint_count: int = 0
    error_count: int = 0
    last_checkpoint: dict[str, Any] | None = None
    #: Copies of the newest work-log entries (at most 20) and of every checkpoint, decision and error entry, kept
    #: by the update that appends, so the handoff and replay contexts are read without touching ``work_log``
    #: (``queries.py``). Complete only when ``context_lists`` is true: a session stored before they existed is
    #: answered from ``work_log`` instead. ``notable_entries`` grows with the log, so it counts in ``payload_bytes``;
    #: ``recent_entries`` is bounded (20 entries) and lives in the headroom between the cap and 16 MiB.
    recent_entries: list[dict[str, Any]] = Field(default_factory=list)
    notable_entries: list[dict[str, Any]] = Field(default_factory=list)
    context_lists: bool = False
    #: Running size of the entries of :data:`PAYLOAD_ARRAYS` in bytes; the append filter keeps it under the cap.
    payload_bytes: int = 0
    replayed_from: str | None = None
    duration_minutes: int | None = None
    legacy: dict[str, Any] | None = None
    started_at: datetime = Field(default_factory=clock.now)
    last_active_at: datetime = Field(default_factory=clock.now)
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "sessions"
        use_state_management = False
        validate_on_save = True
        indexes = [
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("session_id", pymongo.ASCENDING)],
                name="workspace_session_unique",
                unique=True,
            ),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("external_id", pymongo.ASCENDING)],
                name="workspace_external_id_unique",
                unique=True,
                partialFilterExpression={"external_id": {"$type": "string"}},
            ),
            _listing_index("listing"),
            _listing_index("listing_by_status", "status"),
            _listing_index("listing_by_agent_type", "agent_type"),
            _listing_index("listing_by_plan", "plan"),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("replayed_from", pymongo.ASCENDING)],
                name="lineage",
            ),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("status", pymongo.ASCENDING),
                    ("last_active_at", pymongo.ASCENDING),
                ],
                name="idle_by_status",
            ),
            # Analytics (handoff.analytics.pipelines): summary, agents and activity are answered from this index
            # alone (covered), artifacts filters on its last key before fetching.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("started_at", pymongo.ASCENDING),
                    ("status", pymongo.ASCENDING),
                    ("agent_type", pymongo.ASCENDING),
                    ("duration_minutes", pymongo.ASCENDING),
                    ("ended_at", pymongo.ASCENDING),
                    ("action_count", pymongo.ASCENDING),
                    ("error_count", pymongo.ASCENDING),
                    ("checkpoint_count", pymongo.ASCENDING),
                    ("artifact_count", pymongo.ASCENDING),
                ],
                name="analytics_rollup",
            ),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("last_active_at", pymongo.DESCENDING),
                    ("started_at", pymongo.ASCENDING),
                ],
                name="analytics_with_errors",
                partialFilterExpression={"error_count": {"$gt": 0}},
            ),
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("paused_at", pymongo.ASCENDING),
                    ("session_id", pymongo.ASCENDING),
                ],
                name="analytics_waiting_handoffs",
                partialFilterExpression={"status": SessionStatus.PAUSED.value, "handoff_notes": {"$type": "object"}},
            ),
        ]
