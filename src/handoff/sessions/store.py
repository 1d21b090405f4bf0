"""What every sessions operation shares: the collection, the key filter, and how a missed update is explained.

Writes are single guarded updates; when the guard matches nothing, ``misses.explain_miss`` does the one read
that tells a client why, so no write is ever retried blindly. Every write's filter also requires the paged
layout (:data:`PAGED`): a session stored before it is migrated first.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from handoff.errors import NotFound, SessionEnded, SessionFull
from handoff.sessions.models import LogPage, Session

#: The stored fields a Session body is made of. Listed rather than "everything but the arrays": MongoDB 6.0
#: reads a whole embedded array for any projection that names it, even to exclude it, so an inclusion projection
#: keeps get-session, listings and transitions as cheap on a 10,000-entry session as on an empty one.
SESSION_FIELDS = (
    "session_id",
    "external_id",
    "workspace_id",
    "agent_api_key_id",
    "plan",
    "agent_type",
    "status",
    "context_summary",
    "handoff_notes",
    "final_summary",
    "started_at",
    "last_active_at",
    "ended_at",
    "created_at",
    "updated_at",
    "action_count",
    "artifact_count",
    "checkpoint_count",
    "error_count",
)
SESSION_PROJECTION: dict[str, Any] = {"_id": 0, **dict.fromkeys(SESSION_FIELDS, 1)}

ENDED_DETAIL = "session {session_id} has ended ({status}); POST /v1/sessions/{session_id}/replay continues it"
FULL_DETAIL = "session {session_id} is full ({reason}); POST /v1/sessions/{session_id}/replay continues it"


def sessions() -> AsyncCollection[dict[str, Any]]:
    """The raw collection, for updates whose atomic operator is the point."""
    return Session.get_pymongo_collection()


def pages() -> AsyncCollection[dict[str, Any]]:
    """The sealed pages of every session's work log and artifacts."""
    return LogPage.get_pymongo_collection()


def page_key(workspace_id: str, session_id: str, kind: str) -> dict[str, Any]:
    """The filter of one session's pages of one kind (the shard key's prefix first)."""
    return {"workspace_id": workspace_id, "session_id": session_id, "kind": kind}


def first_page(doc: dict[str, Any], kind: str) -> int:
    """A session document's ``pages_from`` for a kind: its pages numbered below are a clear's leftovers, which
    every read of pages leaves out (``purges.py``)."""
    found: int = (doc.get("pages_from") or {}).get(kind, 0)
    return found


def key(workspace_id: str, session_id: str) -> dict[str, Any]:
    """The filter that finds a session only inside its own workspace."""
    return {"workspace_id": workspace_id, "session_id": session_id}


#: The condition every write's filter carries: the session is stored in the paged layout.
PAGED: dict[str, Any] = {"pages_version": {"$exists": True}}


def not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found")


def ended(session_id: str, status: str) -> SessionEnded:
    return SessionEnded(ENDED_DETAIL.format(session_id=session_id, status=status))


def full(session_id: str, cap: int | None = None) -> SessionFull:
    """The 409 of a write that would pass the operator's cap (``cap``) or, without one, MongoDB's document limit."""
    reason = (
        f"it would pass the cap of {cap} stored bytes a session may hold"
        if cap
        else "its document would pass MongoDB's size limit"
    )
    return SessionFull(FULL_DETAIL.format(session_id=session_id, reason=reason))


def as_stored(collection: AsyncCollection[dict[str, Any]]) -> AsyncCollection[dict[str, Any]]:
    """``collection`` decoding BSON dates as the naive UTC datetimes they are rather than as aware ones: half the
    cost of decoding and of writing each as text (an aware one's ``bson`` offset is Python code). For reads whose
    times only go out as text (``schemas.isoformat`` and ``clock.as_utc`` take both), hundreds at a time."""
    return collection.with_options(codec_options=collection.codec_options.with_options(tz_aware=False))


async def load(
    workspace_id: str, session_id: str, projection: dict[str, Any] | None = None, *, naive_times: bool = False
) -> dict[str, Any]:
    """One session (by default without arrays), or 404; ``naive_times``: see :func:`as_stored`."""
    collection = as_stored(sessions()) if naive_times else sessions()
    doc = await collection.find_one(key(workspace_id, session_id), projection or SESSION_PROJECTION)
    if doc is None:
        raise not_found(session_id)
    return doc
