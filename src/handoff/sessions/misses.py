"""Why a guarded write matched nothing, found with one read instead of a blind retry.

Every write's filter carries its guards (the workspace, an open status, the paged layout, and for appends more).
When it matches nothing, :func:`explain_miss` raises the client's answer: absent or another workspace's: 404;
ended: 409. A session stored in the old layout is not an error: it is migrated (``seals.migrate``) and the call
returns, so the caller runs its write again, now on the paged document.
"""

from __future__ import annotations

from handoff.config import Settings
from handoff.errors import Conflict
from handoff.sessions import migration, store
from handoff.sessions.lifecycle import is_ended
from handoff.sessions.paging import PageBounds


def page_bounds(settings: Settings | None) -> PageBounds:
    """The open pages' bounds the settings give (the defaults without settings: a write that does not append,
    such as a transition, migrates with them, and the next append seals to the configured bounds)."""
    if settings is None:
        fields = Settings.model_fields
        return PageBounds(entries=fields["page_entries"].default, bytes=fields["page_bytes"].default)
    return PageBounds(entries=settings.page_entries, bytes=settings.page_bytes)


async def explain_miss(workspace_id: str, session_id: str, *, settings: Settings | None = None) -> None:
    """Raise the reason a guarded write matched nothing; return (after migrating it) for an old-layout session."""
    doc = await store.sessions().find_one(store.key(workspace_id, session_id), {"status": 1, "pages_version": 1})
    if doc is None:
        raise store.not_found(session_id)
    if is_ended(doc["status"]):
        raise store.ended(session_id, doc["status"])
    if "pages_version" not in doc:
        await migration.migrate(workspace_id, session_id, bounds=page_bounds(settings))
        return
    raise Conflict(f"session {session_id} changed while this request ran; retry it")
