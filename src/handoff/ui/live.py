"""The dashboard's live parts: one server-sent events stream per page, on the worker's events hub, pushing HTML.

**HTML fragments, not JSON.** Each stream sends the parts of its page that changed (``ui.live_parts``), rendered by
the very templates and macros that render the page (``parts/*.html.j2``, ``macros.html.j2``), and htmx's SSE
extension (vendored with its license, like htmx) swaps each one in: an element names the event that replaces it
(``sse-swap="row-<id>"``, ``"entry"``, ``"summary"``...), so an event for a row that is not on the page is ignored
by the browser, and a live row or entry cannot drift from a loaded one. JSON to a script would have meant a second
renderer of every row and entry in JavaScript; the only script of our own (``static/live.js``) counts the leases
down, says in words whether the page is live, reconnecting or paused (``live-off``), keeps a row that arrives at the
top from appearing twice, and reloads a page whose stream says ``signed-out``.

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
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, FromQuery, HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from handoff import clock
from handoff.auth import CurrentPrincipal
from handoff.errors import Gone, RateLimited, Unauthorized
from handoff.events.hub import Hub, Subscriber
from handoff.events.mapping import Position
from handoff.ops import NO_DEADLINE
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS, shutdown_signal, until_shutdown
from handoff.sessions import service
from handoff.sessions.models import EntryType
from handoff.ui import sessions as session_pages
from handoff.ui.auth import signed_in, signed_in_key
from handoff.ui.live_parts import HandoffBoard, LiveView, SessionRows, SessionTail, handoff_board
from handoff.workspaces import service as workspaces

#: How often a stream checks that its key still opens the workspace (a revoked key ends it within this).
KEY_CHECK_SECONDS = 2.0
#: How long a stream waits after an event for the ones that come with it, to handle them together.
COALESCE_SECONDS = 0.2
#: When a key holds all the streams it may, the browser tries again after this long.
RETRY_WHEN_FULL_MS = 30_000

LastEventId = Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False, max_length=8192)]


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

    @get("/sessions", dependencies=session_pages.SESSIONS_LISTING)
    async def sessions(
        self,
        request: Request[Any, Any, Any],
        principal: CurrentPrincipal,
        listing: session_pages.Listing,
        last_event_id: LastEventId = None,
    ) -> ServerSentEvent:
        """The Sessions page's rows, for the filters and page it shows."""
        view = SessionRows(request, principal.workspace_id, listing.filters, listing.cursor)
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
