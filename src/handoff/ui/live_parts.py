"""What each live page's stream sends: the parts of its page that changed, rendered by the page's own templates.

:class:`LiveView` is what a stream (``ui.live``) asks of a page: which events it listens for (its hub
:class:`~handoff.events.hub.Selection`), the parts a batch of them changes, the parts as they are now (for a
stream that starts afresh) and, for a page whose content runs out by itself (a lease), when to re-render. Every
part is ``(the SSE event an element listens for, its new HTML)``, rendered by the templates and macros of the page
(``parts/*.html.j2``), through the same domain functions as the page's handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from litestar import Request
from pydantic import TypeAdapter

from handoff import clock
from handoff.analytics import service as analytics
from handoff.claims import service as claims
from handoff.claims.schemas import ClaimRead
from handoff.errors import NotFound
from handoff.events.hub import Selection
from handoff.events.mapping import Event
from handoff.sessions import queries, service
from handoff.sessions.models import EntryType
from handoff.sessions.schemas import SessionRead, WorkLogEntry
from handoff.ui import sessions as session_pages
from handoff.ui import views
from handoff.ui.render import fragment

#: Active claims the Handoffs page shows, newest first (``claims.service.list_claims``, as ``GET /v1/claims``).
CLAIMS_SHOWN = 200
#: The event of a row added at the top of the Sessions page's first page.
ADDED = "session-added"
#: What replaces a row that no longer matches the filters (SSE does not deliver an empty message).
REMOVED = "<!-- no longer matches the filters -->"

Part = tuple[str, str]  # (the SSE event an element listens for, its new HTML)
_ENTRY = TypeAdapter[WorkLogEntry](WorkLogEntry)
_LIST_CHANGES = frozenset({"work_log.appended", "work_log.removed", "artifact.recorded", "artifact.removed"})


class LiveView:
    """What one page's stream listens for and sends; subclasses render their page's parts."""

    selection: Selection
    #: When the view wants to re-render without an event (a lease running out), as ``time.monotonic()``.
    wake_at: float | None = None

    async def parts(self, events: list[Event]) -> list[Part]:
        raise NotImplementedError

    async def wake(self) -> list[Part]:
        return []

    async def resync(self) -> list[Part]:
        """The parts as they are now, sent once when a stream starts afresh (not resumed): what changed between
        the page's render and the stream's subscription would otherwise be missed."""
        return []


# The Sessions page ---------------------------------------------------------------------------------------------


class SessionRows(LiveView):
    """The rows of the Sessions table: a changed session's row re-rendered (or removed when it no longer matches
    the filters), and a session that starts matching them (created, or its status changed into the filter's) at
    the top of the first page only, so keyset pages stay what they were. The browser replaces a row it already
    shows rather than add it twice (``static/live.js``)."""

    def __init__(
        self, request: Request[Any, Any, Any], workspace_id: str, filters: dict[str, str | None], cursor: str | None
    ) -> None:
        self.request = request
        self.workspace_id = workspace_id
        self.filters = filters
        self.cursor = cursor
        self.first_page = cursor is None
        types = {"session.created", "session.updated", "session.deleted", *_LIST_CHANGES}
        self.selection = Selection(workspace_id, None, frozenset(types))

    def _arrivals(self, events: list[Event], created: set[str]) -> set[str]:
        """The sessions these events may have brought into the filters: new ones, and (when the filters name a
        status, the only filtered field a session changes) those whose status changed."""
        if self.filters.get("status") is None:
            return created
        changed = {e.session_id for e in events if e.type == "session.updated" and "status" in e.data["changes"]}
        return created | changed

    async def parts(self, events: list[Event]) -> list[Part]:
        created = {event.session_id for event in events if event.type == "session.created"}
        arrived = self._arrivals(events, created)
        out: list[Part] = []
        for session_id in dict.fromkeys(event.session_id for event in events):
            try:
                session = await service.get_session(self.workspace_id, session_id)
            except NotFound:  # deleted
                out.append((f"row-{session_id}", REMOVED))
                continue
            if not views.session_matches(session, self.filters):
                out.append((f"row-{session_id}", REMOVED))
            elif session_id in arrived and self.first_page:
                out.append((ADDED, self._row(session)))
            elif session_id in created:  # a later page cannot show a new session
                continue
            else:
                out.append((f"row-{session_id}", self._row(session)))
        return out

    def _row(self, session: SessionRead) -> str:
        return fragment(self.request, "parts/session_row.html.j2", s=session)

    async def resync(self) -> list[Part]:
        sessions, next_cursor = await session_pages.session_rows(self.workspace_id, self.filters, self.cursor)
        context = {"sessions": sessions, "next_cursor": next_cursor, "paged": not self.first_page}
        return [("rows", fragment(self.request, "parts/session_results.html.j2", filters=self.filters, **context))]


# The Session page ----------------------------------------------------------------------------------------------


class SessionTail(LiveView):
    """One session's page: new entries at the live edge of its log (a count of them elsewhere), its header, and
    its lifecycle buttons, notes, context and artifacts when they change."""

    def __init__(
        self,
        request: Request[Any, Any, Any],
        workspace_id: str,
        session_id: str,
        *,
        entry_type: EntryType | None,
        edge: bool,
        after: str | None,
    ) -> None:
        self.request = request
        self.workspace_id = workspace_id
        self.session_id = session_id
        self.entry_type = entry_type
        self.edge = edge
        self.after = after  # the newest entry the page shows, at the edge
        self.behind = 0
        types = {"session.updated", "session.deleted", *_LIST_CHANGES}
        self.selection = Selection(workspace_id, session_id, frozenset(types))

    def _shown(self, entry: WorkLogEntry) -> bool:
        return self.entry_type is None or getattr(entry, "type", None) == self.entry_type

    async def parts(self, events: list[Event]) -> list[Part]:
        entries = [_ENTRY.validate_python(e.data["entry"]) for e in events if e.type == "work_log.appended"]
        changed: set[str] = set()
        for event in events:
            if event.type == "session.updated":
                changed |= set(event.data["changes"])
        artifacts = any(event.type.startswith("artifact.") for event in events)
        return await self._render([entry for entry in entries if self._shown(entry)], changed, artifacts=artifacts)

    async def resync(self) -> list[Part]:
        entries: list[WorkLogEntry] = []
        if self.edge:  # what was appended after the newest entry the page shows (all of its type, if it had none)
            entries, _ = await queries.work_log_page(
                self.workspace_id,
                self.session_id,
                entry_type=self.entry_type,
                offset=0,
                limit=views.LOG_PAGE_SIZE,
                order="asc",
                after=self.after,
            )
        return await self._render(entries, {"status", "context_summary"}, artifacts=True)

    async def _render(self, entries: list[WorkLogEntry], changed: set[str], *, artifacts: bool) -> list[Part]:
        """The parts for new ``entries`` (oldest first), the session fields in ``changed``, and the artifacts."""
        try:
            session = await service.get_session(self.workspace_id, self.session_id)
        except NotFound:
            return [("summary", '<div id="summary"><h1>Deleted</h1><p>This session was deleted.</p></div>')]
        out: list[Part] = []
        if entries and self.edge:
            out += [
                ("entry", fragment(self.request, "parts/entry.html.j2", item=views.timeline_item(entry)))
                for entry in entries
            ]
        elif entries:
            self.behind += len(entries)
            out.append(("behind", fragment(self.request, "parts/behind.html.j2", count=self.behind, session=session)))
        out.append(("summary", fragment(self.request, "parts/session_summary.html.j2", session=session)))
        if changed & {"status", "final_summary"}:
            buttons = views.lifecycle_buttons(session.status)
            out.append(
                (
                    "lifecycle",
                    fragment(self.request, "parts/session_lifecycle.html.j2", session=session, buttons=buttons),
                )
            )
        if changed & {"context_summary", "handoff_notes"}:
            out.append(("notes", fragment(self.request, "parts/session_notes.html.j2", session=session)))
        if artifacts:
            groups = await session_pages.artifact_groups(self.workspace_id, self.session_id)
            out.append(
                (
                    "artifacts",
                    fragment(self.request, "parts/session_artifacts.html.j2", session=session, artifact_groups=groups),
                )
            )
        return out


# The Handoffs page ---------------------------------------------------------------------------------------------


async def handoff_board(workspace_id: str) -> dict[str, Any]:
    """The Handoffs page's data, for the page and its stream alike: the waiting queue and the active claims."""
    waiting, (active, _) = await asyncio.gather(
        analytics.handoffs(workspace_id), claims.list_claims(workspace_id, state="active", limit=CLAIMS_SHOWN)
    )
    return {"waiting": waiting.items, "claims": active}


class HandoffBoard(LiveView):
    """The queue and the claims, re-rendered when a handoff waits, is claimed or released, a session changes or is
    created (a claim opens a replay), a shown claim's replay writes (its lease moves on), or a lease runs out."""

    def __init__(self, request: Request[Any, Any, Any], workspace_id: str, shown: list[ClaimRead]) -> None:
        self.request = request
        self.workspace_id = workspace_id
        types = {"session.created", "session.updated", "session.deleted", "handoff.waiting", *_LIST_CHANGES}
        types |= {"handoff.claimed", "handoff.released"}  # published by the claims once their events are in
        self.selection = Selection(workspace_id, None, frozenset(types))
        self._watch(shown)

    def _watch(self, shown: Iterable[ClaimRead]) -> None:
        shown = list(shown)
        self.replays = {claim.session_id for claim in shown if claim.session_id}
        ends = [claim.lease_expires_at for claim in shown]
        self.wake_at = _monotonic_at(min(ends)) if ends else None

    async def parts(self, events: list[Event]) -> list[Part]:
        if all(event.type in _LIST_CHANGES and event.session_id not in self.replays for event in events):
            return []  # entries of sessions no shown claim depends on
        return await self.wake()

    async def resync(self) -> list[Part]:
        return await self.wake()

    async def wake(self) -> list[Part]:
        board = await handoff_board(self.workspace_id)
        self._watch(board["claims"])
        return [("handoffs", fragment(self.request, "parts/handoffs_live.html.j2", **board))]


def _monotonic_at(at: datetime) -> float:
    """``time.monotonic()`` at the wall-clock time ``at`` (a little after, so the lease has surely run out)."""
    return time.monotonic() + max(0.0, (clock.as_utc(at) - clock.now()).total_seconds()) + 0.5
