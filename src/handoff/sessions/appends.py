"""Appending to a session's work log and artifacts: one atomic ``$push`` per request, idempotent by id.

The update's filter carries every guard: the workspace, an open status, "no entry with these ids yet" and
"room left under the size cap". Its update pushes the entries, moves the counters and the running byte count,
and stamps ``last_active_at`` in the same operation, so concurrent writers lose nothing and counters are exact.
When the guard matches nothing, one read says why: a retried id with the same content is answered with the
stored entry, other content is a client bug (422), an ended session is 409, a full one 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo.errors import WriteError

from handoff import clock
from handoff.config import Settings
from handoff.errors import Conflict, FieldError, Invalid, SessionFull
from handoff.sessions import store, views
from handoff.sessions.lifecycle import Operation, accepted_statuses, is_ended
from handoff.sessions.limits import check_entry, stored_size

Array = Literal["work_log", "artifacts"]

#: MongoDB's codes for "the write is too large": the document would pass 16 MiB (10334, 17419, 17420), or one
#: update's changes do not fit the storage engine's cache (388, TransactionTooLargeForCache: seen on the bundled
#: server's 0.25 GB cache for a ~15 MiB update; a retry cannot succeed). The second line of defence behind the cap.
DOCUMENT_TOO_LARGE_CODES = frozenset({10334, 17419, 17420, 388})
MAX_ATTEMPTS = 3


@dataclass(slots=True)
class AppendOutcome:
    """What an append stored, and which requested entries were already there (as stored)."""

    appended: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    repeats: int = 0  # entries repeated inside the request itself

    @property
    def duplicate_count(self) -> int:
        """Entries not written because their id was already stored or repeated in the request."""
        return len(self.duplicates) + self.repeats


def new_entry_id() -> str:
    """A generated entry id (matches the client-id pattern)."""
    return uuid.uuid4().hex


def _content(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in entry.items() if name != "timestamp"}


def _dedupe_request(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Drop repeats of one id inside a request (same content); other content under one id is a 422."""
    unique: dict[str, dict[str, Any]] = {}
    repeats = 0
    for entry in entries:
        seen = unique.get(entry["id"])
        if seen is None:
            unique[entry["id"]] = entry
        elif _content(seen) == _content(entry):
            repeats += 1
        else:
            raise _id_reused(entry["id"])
    return list(unique.values()), repeats


def _id_reused(entry_id: str) -> Invalid:
    return Invalid(
        f"id {entry_id!r} is already used by an entry with other content; use a new id",
        errors=[FieldError(field="id", message="already used with other content")],
    )


def counted_size(array: Array, entries: list[dict[str, Any]]) -> int:
    """What appending ``entries`` adds to ``payload_bytes``: their bytes, plus, for the work log, the copies
    ``notable_entries`` keeps of its checkpoints, decisions and errors (as many as the log has, so they count
    against the cap). The 20-entry ``recent_entries`` window is bounded and lives in the headroom under 16 MiB."""
    copies = views.notable_entries(entries) if array == "work_log" else []
    return sum(stored_size(entry) for entry in (*entries, *copies))


def _update(array: Array, entries: list[dict[str, Any]], size: int, now: Any) -> dict[str, Any]:
    increments: dict[str, int] = (
        views.sum_increments(entries) if array == "work_log" else {"artifact_count": len(entries)}
    )
    stamps: dict[str, Any] = {"last_active_at": now, "updated_at": now}
    if array == "work_log" and (checkpoint := views.last_checkpoint(entries)) is not None:
        stamps["last_checkpoint"] = checkpoint
    pushes: dict[str, Any] = {array: {"$each": entries}}
    if array == "work_log":
        # The copies the handoff and replay contexts read instead of the whole log (models.Session, queries.py).
        pushes["recent_entries"] = {"$each": entries, "$slice": -views.RECENT_ACTIONS}
        if notable := views.notable_entries(entries):
            pushes["notable_entries"] = {"$each": notable}
    return {
        "$push": pushes,
        "$inc": {**increments, "payload_bytes": size},
        "$set": stamps,
    }


async def append(
    workspace_id: str, session_id: str, *, array: Array, entries: list[dict[str, Any]], settings: Settings
) -> AppendOutcome:
    """Append entries (each with an ``id``) atomically; see the module docstring for the guarantees."""
    for entry in entries:
        check_entry(entry, settings)
    pending, repeats = _dedupe_request(entries)
    now = clock.now()
    for entry in pending:
        entry["timestamp"] = now
    outcome = AppendOutcome()
    collection = store.sessions()
    for _ in range(MAX_ATTEMPTS):
        ids = [entry["id"] for entry in pending]
        size = counted_size(array, pending)
        guard = {
            **store.key(workspace_id, session_id),
            "status": {"$in": accepted_statuses(Operation.WRITE)},
            f"{array}.id": {"$nin": ids},
            "payload_bytes": {"$lte": settings.max_session_bytes - size},
        }
        try:
            result = await collection.update_one(guard, _update(array, pending, size, now))
        except WriteError as exc:
            if exc.code in DOCUMENT_TOO_LARGE_CODES:
                raise SessionFull(store.FULL_DETAIL.format(session_id=session_id)) from exc
            raise
        if result.matched_count:
            outcome.appended = pending
            break
        pending = await _diagnose(
            workspace_id, session_id, array=array, pending=pending, size=size, settings=settings, outcome=outcome
        )
        if not pending:
            break
    else:
        raise Conflict(f"session {session_id} changed while appending; retry with the same ids")
    outcome.repeats = repeats
    return outcome


async def _diagnose(
    workspace_id: str,
    session_id: str,
    *,
    array: Array,
    pending: list[dict[str, Any]],
    size: int,
    settings: Settings,
    outcome: AppendOutcome,
) -> list[dict[str, Any]]:
    """One read after a missed append: record duplicates and return what is left to write, or raise why."""
    ids = [entry["id"] for entry in pending]
    view = await store.sessions().find_one(
        store.key(workspace_id, session_id),
        {
            "_id": 0,
            "status": 1,
            "payload_bytes": 1,
            "stored": {"$filter": {"input": f"${array}", "cond": {"$in": ["$$this.id", ids]}}},
        },
    )
    if view is None:
        raise store.not_found(session_id)
    stored = {entry["id"]: entry for entry in view.get("stored") or []}
    if stored:
        for entry in pending:
            if entry["id"] in stored and _content(stored[entry["id"]]) != _content(entry):
                raise _id_reused(entry["id"])
        outcome.duplicates.extend(stored[entry["id"]] for entry in pending if entry["id"] in stored)
        return [entry for entry in pending if entry["id"] not in stored]
    if is_ended(view["status"]):
        raise store.ended(session_id, view["status"])
    if view.get("payload_bytes", 0) > settings.max_session_bytes - size:
        raise SessionFull(store.FULL_DETAIL.format(session_id=session_id))
    return pending
