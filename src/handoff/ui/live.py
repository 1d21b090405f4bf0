"""The dashboard's live parts: one server-sent events stream per page, on the worker's events hub, pushing HTML.

**HTML fragments, not JSON.** Each stream sends the parts of its page that changed, rendered by the very
templates and macros that render the page (``parts/*.html.j2``, ``macros.html.j2``), and htmx's SSE extension
(vendored with its license, like htmx) swaps each one in: an element names the event that replaces it
(``sse-swap="row-<id>"``, ``"entry"``, ``"summary"``...), so an event for a row that is not on the page is
ignored by the browser, and a live row or entry cannot drift from a loaded one. JSON to a script would have meant
a second renderer of every row and entry in JavaScript; the only script of our own (``static/live.js``) counts
the leases down, says in words whether the page is live, reconnecting or paused (``live-off``), keeps a row that
arrives at the top from appearing twice, and reloads a page whose stream says ``signed-out``.

**One change stream.** Streams subscribe to ``app.state.events`` (:class:`handoff.events.hub.Hub`) like the
``/v1`` event routes: each counts against its key's ``HANDOFF_MAX_STREAMS_PER_KEY`` (``Hub.admit``; past it the
page says live updates are paused and the browser retries later), ends with a ``retry:`` hint on shutdown
(``until_shutdown``), and resumes with ``Last-Event-ID`` (each message's ``id:`` is the hub position of the last
event it includes) after a drop.

**The browser session decides.** The stream is a GET under ``/ui`` behind the sealed cookie like every page (the
key is never in its URL); every :data:`KEY_CHECK_SECONDS` it re-reads the key from the database, so a revoked key
or an expired sign-in ends it within that time with ``event: signed-out``.

**Nothing falls between the page and its stream.** A page is rendered, then its stream subscribes: a change in
between would be missed. So a stream that starts afresh (not resumed) first re-sends the page's live parts as
they are now, read after subscribing (``LiveView.resync``: the Sessions rows of its filters and keyset page, the
Session page's entries after the newest it shows and its header, notes and artifacts, the Handoffs board); a
change is then in that read, or an event, or both, and the browser keeps one of each row and entry.

Events that arrive together (an agent's burst of entries) are handled together after :data:`COALESCE_SECONDS`:
each session they touch is read once, through the same domain functions as the pages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pydantic import TypeAdapter

from handoff import clock
from handoff.analytics import service as analytics
from handoff.auth import CurrentPrincipal
from handoff.claims import service as claims
from handoff.claims.schemas import ClaimRead
from handoff.errors import Gone, NotFound, RateLimited, Unauthorized
from handoff.events.hub import Hub, Selection, Subscriber
from handoff.events.mapping import Event, Position
from handoff.ops import NO_DEADLINE
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS, shutdown_signal, until_shutdown
from handoff.sessions import queries, service
from handoff.sessions.models import EntryType, SessionStatus
from handoff.sessions.schemas import SessionRead, WorkLogEntry
from handoff.ui import sessions as session_pages
from handoff.ui import views
from handoff.ui.auth import signed_in, signed_in_key
from handoff.ui.render import fragment
from handoff.workspaces import service as workspaces

#: How often a stream checks that its key still opens the workspace (a revoked key ends it within this).
KEY_CHECK_SECONDS = 2.0
#: How long a stream waits after an event for the ones that come with it, to handle them together.
COALESCE_SECONDS = 0.2
#: When a key holds all the streams it may, the browser tries again after this long.
RETRY_WHEN_FULL_MS = 30_000
#: Active claims the Handoffs page shows, newest first (``claims.service.list_claims``, as ``GET /v1/claims``).
CLAIMS_SHOWN = 200
#: The event of a row added at the top of the Sessions page's first page.
ADDED = "session-added"
#: What replaces a row that no longer matches the filters (SSE does not deliver an empty message).
REMOVED = "<!-- no longer matches the filters -->"

LastEventId = Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False, max_length=8192)]
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


# The stream ----------------------------------------------------------------------------------------------------


def _message(name: str, data: str, position: Position | None = None) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=name, data=data, id=position.encode() if position else None)


async def _still_signed_in(key_hash: str, expires: float) -> bool:
    """Whether the sign-in the stream began with still holds (read once: the scope's session is the middleware's
    to clear once the response has started)."""
    if expires <= clock.now().timestamp():
        return False
    try:
        await workspaces.authenticate_hash(key_hash)  # not the key cache: a revocation shows at the next check
    except Unauthorized:
        return False
    return True


async def _opening(view: LiveView, *, fresh: bool) -> list[ServerSentEventMessage]:
    """What a stream sends first: when it starts afresh (not resumed), the view's parts as they are now, read
    after subscribing, so a change since the page was rendered is in this read, or arrives as an event, or both
    (the parts are idempotent); then a comment: the page is current, and follows every change from here on."""
    parts = await view.resync() if fresh else []
    return [*(_message(name, html) for name, html in parts), ServerSentEventMessage(comment="live")]


async def _messages(
    request: Request[Any, Any, Any], view: LiveView, subscriber: Subscriber, sign_in: tuple[str, float]
) -> AsyncIterator[ServerSentEventMessage]:
    """The view's parts as events arrive, a comment after a heartbeat of silence, ``signed-out`` when the key
    stops opening the workspace, and a ``retry:`` hint when the hub dropped the subscriber."""
    heartbeat: float = request.app.state.settings.events_heartbeat_seconds
    checked = spoke = time.monotonic()
    while True:
        now = time.monotonic()
        wait = min(KEY_CHECK_SECONDS - (now - checked), heartbeat - (now - spoke))
        if view.wake_at is not None:
            wait = min(wait, view.wake_at - now)
        batch = []
        try:
            batch.append(await asyncio.wait_for(subscriber.queue.get(), max(0.0, wait)))
            await asyncio.sleep(COALESCE_SECONDS)
            while not subscriber.queue.empty():
                batch.append(subscriber.queue.get_nowait())
        except TimeoutError:
            pass
        now = time.monotonic()
        if now - checked >= KEY_CHECK_SECONDS:
            if not await _still_signed_in(*sign_in):
                yield _message("signed-out", "the key no longer opens this workspace, or the sign-in expired")
                return
            checked = now
        deliveries = [delivery for delivery in batch if delivery is not None]
        if deliveries:
            position = deliveries[-1].position
            for name, html in await view.parts([delivery.event for delivery in deliveries]):
                yield _message(name, html, position)
            spoke = now
        if view.wake_at is not None and now >= view.wake_at:
            view.wake_at = None
            for name, html in await view.wake():
                yield _message(name, html)
            spoke = now
        if None in batch:  # dropped by the hub (too far behind, events lost): reconnect and resume
            yield ServerSentEventMessage(comment=subscriber.reason or "dropped", retry=RETRY_AFTER_SHUTDOWN_MS)
            return
        if time.monotonic() - spoke >= heartbeat:
            yield ServerSentEventMessage(comment="keep-alive")
            spoke = time.monotonic()


async def _stream(
    request: Request[Any, Any, Any], principal: Any, view: LiveView, last_event_id: str | None
) -> ServerSentEvent:
    """Admit, subscribe (or resume), then stream ``view`` until the client leaves, the key is revoked, or the
    server shuts down."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    sign_in = signed_in_key(request)
    hub: Hub = request.app.state.events
    try:
        release = hub.admit(principal.api_key_id)
    except RateLimited:
        paused = ServerSentEventMessage(
            event="live-off",
            data="Live updates are paused: this key holds all the streams it may.",
            retry=RETRY_WHEN_FULL_MS,
        )
        return ServerSentEvent([paused], headers=headers)
    try:
        position = Position.decode(last_event_id) if last_event_id else None
        try:
            subscriber = await (hub.resume(view.selection, position) if position else hub.subscribe(view.selection))
        except Gone:  # too old to resume: from now on, the parts re-sent as they are
            position = None
            subscriber = await hub.subscribe(view.selection)
    except BaseException:
        release()
        raise
    try:
        opening = await _opening(view, fresh=position is None)  # a bad cursor is a 422 before the stream starts
    except BaseException:
        hub.unsubscribe(subscriber)
        release()
        raise

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            for message in opening:
                yield message
            async for message in until_shutdown(
                _messages(request, view, subscriber, sign_in), shutdown_signal(request)
            ):
                yield message
            if shutdown_signal(request).is_set():
                yield ServerSentEventMessage(comment="server restarting", retry=RETRY_AFTER_SHUTDOWN_MS)
        finally:
            hub.unsubscribe(subscriber)
            release()

    return ServerSentEvent(stream(), headers=headers)


def _signed_out(_: Request[Any, Any, Any], __: Unauthorized) -> ServerSentEvent:
    """A stream asked for without a valid sign-in: one ``signed-out`` (the page reloads into the sign-in form)."""
    return ServerSentEvent([_message("signed-out", "sign in with an API key")], headers={"Cache-Control": "no-cache"})


class LiveStreams(Controller):
    """``/ui/live/...``: the streams the pages connect to (their query is the page's own filters)."""

    path = "/live"
    guards = [signed_in]
    include_in_schema = False
    opt = {NO_DEADLINE: True}
    exception_handlers = {Unauthorized: _signed_out}

    @get("/sessions")
    async def sessions(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        status: FromQuery[str | None] = None,
        agent_type: FromQuery[str | None] = None,
        plan: FromQuery[str | None] = None,
        external_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """The Sessions page's rows, for the filters and page it shows."""
        chosen = session_pages.choice(status, "status", SessionStatus)
        filters = {
            "status": chosen.value if chosen else None,
            "agent_type": session_pages.text_or_none(agent_type),
            "plan": session_pages.text_or_none(plan),
            "external_id": session_pages.text_or_none(external_id),
        }
        view = SessionRows(request, principal.workspace_id, filters, session_pages.text_or_none(cursor))
        return await _stream(request, principal, view, last_event_id)

    @get("/sessions/{session_id:str}")
    async def session(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        session_id: FromPath[str],
        type: FromQuery[str | None] = None,
        edge: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """One session's page: its live tail (``after`` the newest entry it shows) and its parts that change."""
        await service.get_session(principal.workspace_id, session_id)  # another workspace's id: 404
        entry_type = session_pages.choice(type, "type", EntryType)
        view = SessionTail(
            request,
            principal.workspace_id,
            session_id,
            entry_type=entry_type,
            edge=bool(edge),
            after=session_pages.text_or_none(after),
        )
        return await _stream(request, principal, view, last_event_id)

    @get("/handoffs")
    async def handoffs(
        self, request: Request[Any, Any, Any], principal: CurrentPrincipal, last_event_id: LastEventId = None
    ) -> ServerSentEvent:
        """The Handoffs page's queue and claims."""
        board = await handoff_board(principal.workspace_id)
        view = HandoffBoard(request, principal.workspace_id, board["claims"])
        return await _stream(request, principal, view, last_event_id)
