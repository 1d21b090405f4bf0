"""Derived views of a session: pure functions from stored data to what the API shows.

No database here and no clock of their own: ``now`` is passed in. These hold the product's rules for
durations, progress, the MCP context, the counters an entry moves and the seed of a replayed session, and are
tested without MongoDB (the handoff and replay contexts are shaped in ``context_answers.py``). The importer
recomputes counters with the same functions the appends use, so an imported session answers exactly like one
built through the API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from handoff import clock
from handoff.sessions.models import EntryType, SessionStatus
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    EmptyProgress,
    McpContext,
    Progress,
    ProgressSummary,
    SessionRead,
    TypedEntry,
    WorkLogEntry,
)

Doc = Mapping[str, Any]

RECENT_ACTIONS = 20


# Durations ---------------------------------------------------------------------------------------------------


def duration_minutes(started_at: datetime | None, ended_at: datetime | None, now: datetime) -> int | None:
    """Whole minutes from start to end (or to now while the session runs); ``None`` without a start."""
    if started_at is None:
        return None
    end = clock.as_utc(ended_at) if ended_at is not None else now
    return max(0, int((end - clock.as_utc(started_at)).total_seconds() // 60))


def duration_text(minutes: int | None) -> str:
    """``Unknown`` without a start, ``Xm`` under an hour, ``Hh Mm`` from an hour."""
    if minutes is None:
        return "Unknown"
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h {minutes % 60}m"


# Counters ----------------------------------------------------------------------------------------------------


def sum_increments(entries: Iterable[Doc]) -> dict[str, int]:
    """The counters a batch of work-log entries moves: every entry is an action; checkpoints and errors count too.

    One pass that tallies the types (no per-entry dict): the importer runs it over every imported work log.
    """
    types = Counter(entry.get("type") for entry in entries)
    return {
        "action_count": types.total(),
        "checkpoint_count": types[EntryType.CHECKPOINT.value],
        "error_count": types[EntryType.ERROR.value],
    }


def last_checkpoint(entries: Iterable[Doc]) -> Doc | None:
    """The newest checkpoint entry among these, if any."""
    found: Doc | None = None
    for entry in entries:
        if entry.get("type") == EntryType.CHECKPOINT:
            found = entry
    return found


# Entries -----------------------------------------------------------------------------------------------------


def work_log_entry(entry: Doc) -> WorkLogEntry:
    """A stored work-log entry in its API shape (action entries have ``action``, typed ones ``message``)."""
    if "action" in entry:
        return ActionEntry.model_validate(entry)
    return TypedEntry.model_validate({**entry, "data": entry.get("data") or {}})


def work_log_entries(entries: Iterable[Doc]) -> list[WorkLogEntry]:
    return [work_log_entry(entry) for entry in entries]


def typed_entries(entries: Iterable[Doc]) -> list[TypedEntry]:
    return [TypedEntry.model_validate({**entry, "data": entry.get("data") or {}}) for entry in entries]


def artifacts(entries: Iterable[Doc]) -> list[Artifact]:
    return [Artifact.model_validate(entry) for entry in entries]


# Session -----------------------------------------------------------------------------------------------------


def session_read(doc: Doc, now: datetime) -> SessionRead:
    """A stored session (arrays projected out) in its API shape."""
    minutes = duration_minutes(doc.get("started_at"), doc.get("ended_at"), now)
    return SessionRead(
        session_id=doc["session_id"],
        external_id=doc.get("external_id"),
        workspace_id=doc["workspace_id"],
        agent_api_key_id=doc.get("agent_api_key_id"),
        plan=doc.get("plan"),
        agent_type=doc.get("agent_type"),
        status=doc["status"],
        context_summary=doc.get("context_summary"),
        handoff_notes=doc.get("handoff_notes"),
        final_summary=doc.get("final_summary"),
        started_at=doc["started_at"],
        last_active_at=doc["last_active_at"],
        ended_at=doc.get("ended_at"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        duration=duration_text(minutes),
        duration_minutes=minutes,
        action_count=doc.get("action_count", 0),
        artifact_count=doc.get("artifact_count", 0),
        checkpoint_count=doc.get("checkpoint_count", 0),
        error_count=doc.get("error_count", 0),
    )


def progress_summary(*, total: int, checkpoints: int, errors: int, last_entry: Doc | None) -> ProgressSummary:
    """``No work recorded`` for an empty log, else counts and the last thing done."""
    if total == 0 or last_entry is None:
        return EmptyProgress()
    return Progress(
        completed_steps=total,
        checkpoint_count=checkpoints,
        error_count=errors,
        last_action=last_entry.get("action") or last_entry.get("message"),
        last_action_at=last_entry.get("timestamp"),
        summary=f"{total} actions recorded, {checkpoints} checkpoints, {errors} errors",
    )


def mcp_context(doc: Doc, now: datetime) -> McpContext:
    """The compact context an MCP client reads."""
    return McpContext(
        session_id=doc["session_id"],
        agent_type=doc.get("agent_type"),
        status=doc["status"],
        workspace_id=doc["workspace_id"],
        plan_slug=doc.get("plan"),
        started_at=doc["started_at"],
        last_active_at=doc["last_active_at"],
        ended_at=doc.get("ended_at"),
        duration=duration_text(duration_minutes(doc.get("started_at"), doc.get("ended_at"), now)),
        action_count=doc.get("action_count", 0),
        artifact_count=doc.get("artifact_count", 0),
        context_summary=doc.get("context_summary"),
        handoff_notes=doc.get("handoff_notes"),
    )


# Replay ------------------------------------------------------------------------------------------------------


def replay_seed(view: Doc, *, now: datetime, replay_entry_id: str) -> dict[str, Any]:
    """The fields of a new session that continues ``view`` (the original, with ``last_entry``): its context,
    its one ``info`` entry and the counters that entry moves."""
    original_id = view["session_id"]
    entry = {
        "id": replay_entry_id,
        "message": f"Replayed from session {original_id}",
        "type": EntryType.INFO.value,
        "data": {
            "original_session": original_id,
            "original_actions": view.get("action_count", 0),
            "original_checkpoints": view.get("checkpoint_count", 0),
        },
        "timestamp": now,
    }
    progress = progress_summary(
        total=view.get("action_count", 0),
        checkpoints=view.get("checkpoint_count", 0),
        errors=view.get("error_count", 0),
        last_entry=view.get("last_entry"),
    )
    checkpoint = view.get("last_checkpoint")
    return {
        "context_summary": {
            "replayed_from": original_id,
            "original_started_at": clock.as_utc(view["started_at"]).isoformat(timespec="microseconds"),
            "original_status": SessionStatus(view["status"]).value,
            "inherited_context": view.get("context_summary"),
            "replay_checkpoint": typed_entries([checkpoint])[0].model_dump(mode="json") if checkpoint else None,
            "original_progress": progress.model_dump(mode="json"),
        },
        "work_log": [entry],
        **sum_increments([entry]),
        "last_checkpoint": None,
        "handoff_notes": view.get("handoff_notes"),
        "replayed_from": original_id,
    }
