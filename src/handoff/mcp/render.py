"""Compact text for the MCP tools: what an agent reads, a few lines instead of a JSON dump.

Every tool answers with this text *and* the full schema as structured content; the text is bounded (long
strings cut, long lists summarised) so a big session never floods an agent's context. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from handoff.analytics.schemas import WaitingHandoff
from handoff.blobs.schemas import BlobRead
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    HandoffContext,
    McpContext,
    ReplayContext,
    SessionRead,
    TypedEntry,
    WorkLogEntry,
)

TEXT_LIMIT = 200
JSON_LIMIT = 400
LIST_LIMIT = 5
ARTIFACT_LIMIT = 10


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """One line of at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def compact_json(value: Any, limit: int = JSON_LIMIT) -> str:
    """A JSON value on one line, cut at ``limit`` characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _bullets(items: Sequence[str], limit: int = LIST_LIMIT) -> list[str]:
    lines = [f"- {clip(item)}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"- … and {len(items) - limit} more")
    return lines


def entry_line(entry: WorkLogEntry) -> str:
    """``[checkpoint] Tests pass (2026-11-24 15:30 UTC)`` or ``[action] ran pytest (…)``."""
    if isinstance(entry, ActionEntry):
        return f"[action] {clip(entry.action)} ({when(entry.timestamp)}){_blob(entry.blob_id)}"
    return f"[{entry.type}] {clip(entry.message)} ({when(entry.timestamp)}){_blob(entry.blob_id)}"


def _blob(blob_id: str | None) -> str:
    """Where an entry's or artifact's content is, for the agent to read (the blob resource's name ends in it)."""
    return f" [blob {blob_id}]" if blob_id else ""


def session_line(session: SessionRead) -> str:
    """The one-line state of a session."""
    parts = [f"session {session.session_id}", session.status.value]
    if session.agent_type:
        parts.append(f"agent {session.agent_type}")
    if session.plan:
        parts.append(f"plan {session.plan}")
    parts.append(
        f"{session.action_count} entries, {session.artifact_count} artifacts, "
        f"{session.checkpoint_count} checkpoints, {session.error_count} errors"
    )
    parts.append(f"duration {session.duration}")
    return " · ".join(parts)


def started(session: SessionRead) -> str:
    return (
        f"Started {session_line(session)}.\n"
        f"Use session_id {session.session_id!r} with log_work, log_action, record_artifact, update_context, "
        "handoff, complete_session and fail_session."
    )


def logged(session_id: str, entry: TypedEntry | ActionEntry) -> str:
    kind = "action" if isinstance(entry, ActionEntry) else entry.type.value
    return f"Logged {kind} entry {entry.id!r} to {session_id}."


def recorded(session_id: str, artifact: Artifact) -> str:
    return f"Recorded artifact {artifact.path!r} ({artifact.action.value}, id {artifact.id!r}) on {session_id}."


def attached(session_id: str, artifact: Artifact, blob: BlobRead) -> str:
    return (
        f"{recorded(session_id, artifact)} Its content is blob {blob.blob_id} ({blob.size:,} bytes, "
        f"{blob.content_type}): handoff://sessions/{session_id}/blobs/{blob.blob_id}"
    )


def context_updated(session: SessionRead, keys: Iterable[str], *, replace: bool) -> str:
    verb = "Replaced the context with" if replace else "Set context keys"
    names = ", ".join(sorted(keys)) or "(none)"
    return f"{verb} {names} on {session.session_id}. Context now: {compact_json(session.context_summary or {})}"


def handed_off(session: SessionRead) -> str:
    return (
        f"Handed off {session.session_id}; it is now {session.status.value}. The next agent calls "
        f"get_handoff_context or replay_session with session_id {session.session_id!r}."
    )


def replayed(new: SessionRead, original_id: str) -> str:
    return (
        f"Replayed {original_id} into new session {new.session_id} ({new.status.value}); it inherits the context "
        f"and handoff notes. Use session_id {new.session_id!r} from now on; call get_replay_context on "
        f"{original_id} for its checkpoints, decisions and errors."
    )


def ended(session: SessionRead) -> str:
    text = f"Session {session.session_id} is {session.status.value} after {session.duration}."
    if session.final_summary:
        text += f" Final summary: {clip(session.final_summary)}"
    return text


def _notes(notes: Mapping[str, Any] | None) -> list[str]:
    if not notes:
        return ["Handoff notes: none"]
    lines = [f"Handoff summary: {clip(str(notes.get('summary', '')), 500)}"]
    next_steps = [str(step) for step in notes.get("next_steps") or []]
    blockers = [str(item) for item in notes.get("blockers") or []]
    if next_steps:
        lines += ["Next steps:", *_bullets(next_steps, 10)]
    if blockers:
        lines += ["Blockers:", *_bullets(blockers, 10)]
    if notes.get("context_for_next"):
        lines.append(f"Context for next: {compact_json(notes['context_for_next'])}")
    return lines


def _artifact_summary(artifacts: Sequence[Artifact]) -> str:
    shown = ", ".join(f"{clip(a.path, 120)} ({a.action.value}){_blob(a.blob_id)}" for a in artifacts[-ARTIFACT_LIMIT:])
    more = f" (newest {ARTIFACT_LIMIT} of {len(artifacts)})" if len(artifacts) > ARTIFACT_LIMIT else ""
    return f"Artifacts{more}: {shown}" if artifacts else "Artifacts: none"


def handoff_context(ctx: HandoffContext) -> str:
    """The handoff context as the next agent should read it."""
    lines = [
        f"Handoff context of {ctx.session_id} (agent {ctx.agent_type or '-'}, started {when(ctx.started_at)}, "
        f"last active {when(ctx.last_active_at)})"
    ]
    if ctx.plan is not None:
        progress = ctx.plan.progress
        lines.append(
            f"Plan {ctx.plan.slug} ({clip(ctx.plan.title, 80)}): phase {ctx.plan.current_phase or '-'}, "
            f"{progress.completed_tasks}/{progress.total_tasks} tasks ({progress.percentage}%)"
        )
    lines += _notes(ctx.handoff_notes)
    if ctx.context_summary:
        lines.append(f"Context: {compact_json(ctx.context_summary)}")
    if ctx.recent_actions:
        shown = ctx.recent_actions[:LIST_LIMIT]
        lines.append(f"Recent work (newest first, {len(shown)} of {len(ctx.recent_actions)}):")
        lines += [f"- {entry_line(entry)}" for entry in shown]
    lines.append(_artifact_summary(ctx.artifacts))
    return "\n".join(lines)


def replay_context(ctx: ReplayContext) -> str:
    """Where a session stands, for the agent that continues it."""
    progress = ctx.progress_summary
    lines = [
        f"Replay context of {ctx.session_id} ({ctx.status.value}, agent {ctx.agent_type or '-'}, "
        f"duration {ctx.duration}, {ctx.total_actions} entries)",
        f"Progress: {progress.summary}; last: {clip(progress.last_action or '-', 120)}",
    ]
    if ctx.plan is not None:
        lines.append(f"Plan {ctx.plan.slug}: phase {ctx.plan.current_phase or '-'}")
    if ctx.last_checkpoint is not None:
        lines.append(f"Last checkpoint: {entry_line(ctx.last_checkpoint)}")
    for title, entries in (("Decisions", ctx.decisions), ("Errors", ctx.errors)):
        if entries:
            lines.append(f"{title} ({len(entries)}, newest {min(len(entries), LIST_LIMIT)}):")
            lines += [f"- {entry_line(entry)}" for entry in entries[-LIST_LIMIT:]]
    by_action = ctx.artifacts_by_action
    for label, paths in (
        ("created", by_action.created),
        ("modified", by_action.modified),
        ("deleted", by_action.deleted),
    ):
        if paths:
            more = f" (+{len(paths) - ARTIFACT_LIMIT} more)" if len(paths) > ARTIFACT_LIMIT else ""
            lines.append(f"Files {label}: {', '.join(clip(p, 120) for p in paths[:ARTIFACT_LIMIT])}{more}")
    if ctx.context_summary:
        lines.append(f"Context: {compact_json(ctx.context_summary)}")
    lines += _notes(ctx.handoff_notes)
    if ctx.final_summary:
        lines.append(f"Final summary: {clip(ctx.final_summary, 500)}")
    return "\n".join(lines)


def mcp_context(ctx: McpContext) -> str:
    """The MCP context resource's body: compact JSON."""
    return ctx.model_dump_json()


def waiting_handoffs(items: Sequence[WaitingHandoff], *, limit: int) -> str:
    """The sessions waiting for a next agent."""
    if not items:
        return "No handoffs are waiting."
    more = " (the longest waiting; raise limit for more)" if len(items) >= limit else ""
    lines = [f"{len(items)} session(s) wait for a next agent{more}:"]
    for item in items:
        line = (
            f"- {item.session_id} (agent {item.agent_type or '-'}, paused since {when(item.paused_since)}): "
            f"{clip(item.summary, 160)}"
        )
        if item.next_steps:
            line += f" | next: {clip('; '.join(item.next_steps), 160)}"
        if item.blockers:
            line += f" | blockers: {clip('; '.join(item.blockers), 120)}"
        lines.append(line)
    lines.append("Call replay_session with one of these session_ids to take it over.")
    return "\n".join(lines)


def resume_instructions(ctx: HandoffContext) -> str:
    """The prompt that turns a handoff context into instructions for the next agent."""
    return "\n".join(
        [
            f"You are taking over session {ctx.session_id} from a previous agent "
            f"({ctx.agent_type or 'unknown type'}). Here is what it left you:",
            "",
            handoff_context(ctx),
            "",
            "How to continue:",
            f"1. Call replay_session with session_id {ctx.session_id!r} to open your own session that continues "
            "this one (it inherits the context and the handoff notes). Use the new session_id for every later call.",
            "2. Deal with the blockers first, then work through the next steps in order.",
            "3. Record progress as you go: log_work with type 'checkpoint' after each finished step and 'decision' "
            "for each choice you make, log_action for commands you run, record_artifact for every file you touch.",
            "4. When the work is done call complete_session with a short summary. If you must stop before that, "
            "call handoff with a summary, the next steps and any blockers, so the next agent can pick it up.",
        ]
    )
