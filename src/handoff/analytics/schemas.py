"""The analytics response bodies; each reads one pipeline's rows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from handoff.schemas import OutputModel, UtcDatetime
from handoff.sessions.models import SessionStatus


class SessionCounts(OutputModel):
    """How many sessions the figures cover."""

    total: int
    by_status: dict[str, int] = Field(description="Every status, 0 when none.")
    by_agent_type: dict[str, int] = Field(description='Sessions without an agent type count under "unknown".')


class DurationStats(OutputModel):
    """Durations in minutes of the ended (completed or failed) sessions; all 0 when none has ended."""

    avg: float = Field(description="Mean, rounded to two decimals.")
    p50: int = Field(description="Median by nearest rank: the smallest duration at least half the sessions reach.")
    p95: int = Field(description="95th percentile by nearest rank.")


class Summary(OutputModel):
    """Workspace totals over the selected sessions."""

    sessions: SessionCounts
    duration_minutes: DurationStats
    actions: int = Field(description="Work-log entries (action_count summed).")
    errors: int = Field(description="Error entries (error_count summed).")
    checkpoints: int = Field(description="Checkpoint entries (checkpoint_count summed).")
    artifacts: int = Field(description="Artifacts recorded (artifact_count summed).")


class AgentStats(OutputModel):
    """The figures of one agent type."""

    agent_type: str | None = Field(description="null for sessions without an agent type.")
    sessions: int
    completed: int
    failed: int
    success_rate: float = Field(
        description="completed / (completed + failed), 0..1 rounded to two decimals; 0 when none has ended."
    )
    avg_duration_minutes: float = Field(description="Mean duration of the ended sessions; 0 when none has ended.")
    avg_actions: float = Field(description="Mean work-log entries per session.")
    errors: int = Field(description="Error entries in these sessions.")


class AgentList(OutputModel):
    """Agent types, most sessions first."""

    items: list[AgentStats]


class ActivityBucket(OutputModel):
    """One UTC hour or day."""

    bucket_start: UtcDatetime
    started: int
    completed: int = Field(description="Selected sessions that completed in this bucket (by ended_at).")
    failed: int = Field(description="Selected sessions that failed in this bucket (by ended_at).")


class Activity(OutputModel):
    """Buckets oldest first; buckets with nothing in them are left out."""

    items: list[ActivityBucket]


class PathStats(OutputModel):
    """How one path was touched."""

    path: str
    touches: int
    created: int
    modified: int
    deleted: int
    sessions: int = Field(description="Distinct sessions that touched the path.")


class PathList(OutputModel):
    """Paths, most touched first (ties by path)."""

    items: list[PathStats]


class ErrorEntry(OutputModel):
    """One error entry of a work log."""

    session_id: str
    agent_type: str | None
    message: str
    timestamp: UtcDatetime


class ErrorList(OutputModel):
    """Error entries, newest first."""

    items: list[ErrorEntry]


class StaleSession(OutputModel):
    """An active session nobody has touched for a while."""

    session_id: str
    agent_type: str | None
    last_active_at: UtcDatetime
    idle_minutes: int = Field(description="Whole minutes since last_active_at.")


class StaleList(OutputModel):
    """Idle active sessions, longest idle first."""

    items: list[StaleSession]


class WaitingHandoff(OutputModel):
    """A paused session whose handoff notes no replay has picked up yet."""

    session_id: str
    agent_type: str | None
    summary: str
    next_steps: list[str]
    blockers: list[str]
    paused_since: UtcDatetime = Field(description="paused_at, or updated_at for sessions paused before it existed.")


class HandoffList(OutputModel):
    """Waiting handoffs, longest waiting first."""

    items: list[WaitingHandoff]


class LineageSession(OutputModel):
    """A session along the replay chain."""

    session_id: str
    status: SessionStatus
    agent_type: str | None
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    replayed_from: str | None
    depth: int = Field(description="1 for the parent or a direct replay, 2 for the next generation, ...")
    deleted: Literal[False] = False


class DeletedSession(OutputModel):
    """An ancestor that has been deleted: only its id is known (and nothing older than it)."""

    session_id: str
    deleted: Literal[True] = True


class Lineage(OutputModel):
    """Where a session came from and what continued it, along replayed_from."""

    session_id: str
    ancestors: list[DeletedSession | LineageSession] = Field(description="Oldest first; the parent is last.")
    descendants: list[LineageSession] = Field(description="By generation, then started_at.")
