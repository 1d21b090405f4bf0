"""The sessions API's request and response bodies (separate from the stored document on purpose)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from handoff.schemas import BlobId, EntryId, FreeForm, InputModel, OutputModel, PrintableId, ShortText, UtcDatetime
from handoff.sessions.models import ArtifactAction, EntryType, SessionStatus


def _no_blob(blob_id: str | None) -> bool:
    """Entries without a blob are read as they were stored: without a ``blob_id`` key."""
    return blob_id is None


# Requests ----------------------------------------------------------------------------------------------------


class SessionCreate(InputModel):
    """Open a session."""

    agent_type: ShortText | None = None
    plan: ShortText | None = Field(default=None, description="Slug of a plan of the workspace.")
    context_summary: FreeForm | None = None
    external_id: PrintableId | None = Field(
        default=None, description="The caller's own key for the session; creating it again returns it (200)."
    )


class ActionCreate(InputModel):
    """Append an action entry (``message`` and ``type`` belong to typed entries)."""

    action: str = Field(min_length=1, description="What was done (at most 10,000 characters by default).")
    details: FreeForm | None = None
    id: EntryId | None = Field(default=None, description="Retry-safe id; generated when absent.")
    blob_id: BlobId | None = Field(default=None, description="A blob of this session the entry refers to (else 422).")


class WorkLogCreate(InputModel):
    """Append a typed entry."""

    message: str = Field(min_length=1, description="At most 10,000 characters by default.")
    type: EntryType = EntryType.INFO
    data: FreeForm | None = None
    id: EntryId | None = Field(default=None, description="Retry-safe id; generated when absent.")
    blob_id: BlobId | None = Field(default=None, description="A blob of this session the entry refers to (else 422).")


class WorkLogBatchCreate(InputModel):
    """Append up to 1,000 typed entries in one atomic update."""

    entries: list[WorkLogCreate] = Field(min_length=1, max_length=1000)


class ArtifactCreate(InputModel):
    """Record a file the agent touched."""

    path: str = Field(min_length=1, description="At most 1,024 characters by default.")
    action: ArtifactAction = ArtifactAction.MODIFIED
    metadata: FreeForm | None = None
    id: EntryId | None = Field(default=None, description="Retry-safe id; generated when absent.")
    blob_id: BlobId | None = Field(default=None, description="A blob of this session the entry refers to (else 422).")


class CompleteRequest(InputModel):
    """End a session as completed."""

    summary: str | None = None


class FailRequest(InputModel):
    """End a session as failed; the reason is kept as ``final_summary``."""

    reason: str | None = None


class EndRequest(InputModel):
    """End a session with an explicit final status."""

    status: Literal["completed", "failed"]
    summary: str | None = None


class HandoffRequest(InputModel):
    """Leave notes for the next agent and pause."""

    summary: str = Field(min_length=1)
    next_steps: list[str] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    context_for_next: FreeForm = Field(default_factory=dict)


class ReplayRequest(InputModel):
    """Continue a session in a new one."""

    agent_type: ShortText | None = None


# Responses ---------------------------------------------------------------------------------------------------


class SessionRead(OutputModel):
    """A session without its arrays (they have their own routes)."""

    session_id: str
    external_id: str | None
    workspace_id: str
    agent_api_key_id: str | None
    plan: str | None
    agent_type: str | None
    status: SessionStatus
    context_summary: dict[str, Any] | None
    handoff_notes: dict[str, Any] | None
    final_summary: str | None
    started_at: UtcDatetime
    last_active_at: UtcDatetime
    ended_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    duration: str = Field(description='"42m", "2h 5m" or "Unknown".')
    duration_minutes: int | None
    action_count: int
    artifact_count: int
    checkpoint_count: int
    error_count: int


class SessionPage(OutputModel):
    """One page of sessions, newest first."""

    items: list[SessionRead]
    next_cursor: str | None


class SessionList(OutputModel):
    """Sessions, newest first."""

    items: list[SessionRead]


class ActionEntry(OutputModel):
    """An action entry of the work log."""

    id: str
    action: str
    details: dict[str, Any] | None
    timestamp: UtcDatetime
    blob_id: str | None = Field(
        default=None, description="The blob of this session it refers to (left out when none).", exclude_if=_no_blob
    )


class TypedEntry(OutputModel):
    """A typed entry of the work log."""

    id: str
    message: str
    type: EntryType
    data: dict[str, Any]
    timestamp: UtcDatetime
    blob_id: str | None = Field(
        default=None, description="The blob of this session it refers to (left out when none).", exclude_if=_no_blob
    )


WorkLogEntry = ActionEntry | TypedEntry


class WorkLogPage(OutputModel):
    """A page of the work log and the number of entries matching the filter."""

    items: list[WorkLogEntry]
    total: int


class WorkLogItems(OutputModel):
    """Work-log entries."""

    items: list[WorkLogEntry]


class BatchResult(OutputModel):
    """What a batch append stored, and how many entries were already there."""

    appended: int
    duplicates: int


class Artifact(OutputModel):
    """A file an agent created, modified or deleted."""

    id: str
    path: str
    action: ArtifactAction
    metadata: dict[str, Any] | None
    timestamp: UtcDatetime
    blob_id: str | None = Field(
        default=None, description="The blob of this session it refers to (left out when none).", exclude_if=_no_blob
    )


class ArtifactList(OutputModel):
    """A page of artifacts, in the order they were recorded, and how many match the filter."""

    items: list[Artifact]
    total: int


class PlanSummary(OutputModel):
    """The plan a session works on, as the contexts show it."""

    slug: str
    title: str
    current_phase: str | None


class PlanProgress(OutputModel):
    """How far a plan has come."""

    total_tasks: int
    completed_tasks: int
    percentage: int


class PlanWithProgress(PlanSummary):
    """The plan with its progress, for the handoff context."""

    progress: PlanProgress


class HandoffContext(OutputModel):
    """What the next agent needs to pick a session up."""

    session_id: str
    agent_type: str | None
    started_at: UtcDatetime
    last_active_at: UtcDatetime
    context_summary: dict[str, Any] | None
    recent_actions: list[WorkLogEntry]
    artifacts: list[Artifact]
    handoff_notes: dict[str, Any] | None
    plan: PlanWithProgress | None = Field(
        default=None,
        description="Only when the session has a plan (left out otherwise).",
        exclude_if=lambda plan: plan is None,
    )


class EmptyProgress(OutputModel):
    """The progress of a session with no work recorded."""

    completed_steps: Literal[0] = 0
    last_action: None = None
    summary: Literal["No work recorded"] = "No work recorded"


class Progress(OutputModel):
    """A one-glance account of a non-empty work log."""

    completed_steps: int
    checkpoint_count: int
    error_count: int
    last_action: str | None
    last_action_at: UtcDatetime | None
    summary: str


ProgressSummary = EmptyProgress | Progress


class ArtifactsByAction(OutputModel):
    """Artifact paths grouped by what was done to them."""

    created: list[str]
    modified: list[str]
    deleted: list[str]


class ReplayContext(OutputModel):
    """Everything needed to continue a session from its last checkpoint."""

    session_id: str
    status: SessionStatus
    agent_type: str | None
    plan: PlanSummary | None
    started_at: UtcDatetime
    last_active_at: UtcDatetime
    duration: str
    context_summary: dict[str, Any] | None
    progress_summary: ProgressSummary
    last_checkpoint: TypedEntry | None
    checkpoints: list[TypedEntry]
    decisions: list[TypedEntry]
    errors: list[TypedEntry]
    artifacts: list[Artifact]
    artifacts_by_action: ArtifactsByAction
    recent_actions: list[WorkLogEntry]
    total_actions: int
    handoff_notes: dict[str, Any] | None
    final_summary: str | None


class McpContext(OutputModel):
    """The compact view an MCP tool or resource serves."""

    session_id: str
    agent_type: str | None
    status: SessionStatus
    workspace_id: str
    plan_slug: str | None
    started_at: UtcDatetime
    last_active_at: UtcDatetime
    ended_at: UtcDatetime | None
    duration: str
    action_count: int
    artifact_count: int
    context_summary: dict[str, Any] | None
    handoff_notes: dict[str, Any] | None
