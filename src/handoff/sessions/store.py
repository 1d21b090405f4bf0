"""What every sessions operation shares: the collection, the key filter, and how a missed update is explained.

Writes are single guarded updates. When the guard matches nothing, :func:`explain_miss` does the one read
that tells a client why (absent or in another workspace: 404; ended: 409), so no write is ever retried blindly.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pymongo.asynchronous.collection import AsyncCollection

from handoff.errors import Conflict, NotFound, SessionEnded
from handoff.sessions.lifecycle import is_ended
from handoff.sessions.models import Session

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
FULL_DETAIL = (
    "session {session_id} is full (its document would pass MongoDB's size limit); "
    "POST /v1/sessions/{session_id}/replay continues it"
)


def sessions() -> AsyncCollection[dict[str, Any]]:
    """The raw collection, for updates whose atomic operator is the point."""
    return Session.get_pymongo_collection()


def key(workspace_id: str, session_id: str) -> dict[str, Any]:
    """The filter that finds a session only inside its own workspace."""
    return {"workspace_id": workspace_id, "session_id": session_id}


def not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found")


def ended(session_id: str, status: str) -> SessionEnded:
    return SessionEnded(ENDED_DETAIL.format(session_id=session_id, status=status))


async def load(workspace_id: str, session_id: str, projection: dict[str, Any] | None = None) -> dict[str, Any]:
    """One session (by default without arrays), or 404."""
    doc = await sessions().find_one(key(workspace_id, session_id), projection or SESSION_PROJECTION)
    if doc is None:
        raise not_found(session_id)
    return doc


async def explain_miss(workspace_id: str, session_id: str) -> NoReturn:
    """Raise the reason a guarded update matched nothing."""
    doc = await sessions().find_one(key(workspace_id, session_id), {"status": 1})
    if doc is None:
        raise not_found(session_id)
    if is_ended(doc["status"]):
        raise ended(session_id, doc["status"])
    raise Conflict(f"session {session_id} changed while this request ran; retry it")
