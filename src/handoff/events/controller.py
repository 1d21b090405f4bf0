"""The events routes: one session's stream and the workspace's, as server-sent events.

Everything that can fail (an unknown session, the per-key limit, an unusable ``Last-Event-ID``) fails before the
response starts, as a problem+json; once it has, the stream runs until the client leaves, the consumer falls too
far behind (a final ``event: error``), or the server shuts down (a ``retry:`` hint, when the hub ends the
subscriber: see ``hub.Hub.stop_streams``).

The stream is a plain :class:`~litestar.response.Stream` of ``text/event-stream`` bytes rather than a
``ServerSentEvent`` of messages, because one event goes to every subscriber of its session: :func:`encoded` makes
its message once (with Litestar's own ``ServerSentEventMessage.encode``, so the bytes are those Litestar would
write) and each stream sends those bytes, where ``ServerSentEvent`` would encode a copy per stream. Events that
are already waiting in a subscriber's queue when its stream wakes go out in one write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEventMessage, Stream

from handoff import metrics
from handoff.auth import CurrentPrincipal
from handoff.errors import Gone
from handoff.events.hub import GONE_DETAIL, Delivery, Hub, Selection, Subscriber
from handoff.events.mapping import Position, parse_types
from handoff.openapi import EVENT_STREAM, event_stream, problems
from handoff.ops import NO_DEADLINE
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS
from handoff.sessions import service, store

LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        max_length=8192,
        description="Resume after this event: every later one, exactly once, in order.",
    ),
]
Types = Annotated[
    str | None,
    QueryParameter(description="Comma-separated event types to receive (default: all).", max_length=1000),
]
RESPONSES = {
    200: event_stream("The events, each with its resume token as `id:`, until the client leaves"),
    **problems(404, 410, 429),
}
#: The most events one write to the socket carries (those already queued when the stream wakes).
BATCH = 256
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
SUBSCRIBED = ServerSentEventMessage(comment="subscribed").encode()
KEEP_ALIVE = ServerSentEventMessage(comment="keep-alive").encode()
RESTARTING = ServerSentEventMessage(comment="server restarting", retry=RETRY_AFTER_SHUTDOWN_MS).encode()


def _json(value: Any) -> str:
    def default(item: Any) -> Any:
        if isinstance(item, datetime):
            return item.isoformat().replace("+00:00", "Z")
        return str(item)

    return json.dumps(value, default=default, separators=(",", ":"))


class AgentTypes:
    """The agent type of each session a stream filtered by ``agent_type`` meets, looked up once per session."""

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        self.known: dict[str, str | None] = {}

    async def of(self, session_id: str, data: dict[str, Any]) -> str | None:
        if session_id not in self.known:
            if data.get("session") is not None:  # a session.updated of a session deleted since carries null
                self.known[session_id] = data["session"].get("agent_type")
            else:
                doc = await store.sessions().find_one(store.key(self.workspace_id, session_id), {"agent_type": 1})
                self.known[session_id] = None if doc is None else doc.get("agent_type")
        return self.known[session_id]


@contextmanager
def _finally(call: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        call()


def encoded(delivery: Delivery) -> bytes:
    """The delivery's SSE message, encoded by the first stream that sends it and shared by the others."""
    if delivery.encoded is None:
        event = delivery.event
        message = ServerSentEventMessage(id=delivery.position.encode(), event=event.type, data=_json(event.data))
        delivery.encoded = message.encode()
    return delivery.encoded


def _ending(subscriber: Subscriber) -> bytes:
    """What ends a stream the hub ended: the retry hint when the server is stopping, else ``event: error``."""
    if subscriber.restarting:
        return RESTARTING
    return ServerSentEventMessage(event="error", data=_json({"type": "error", "detail": subscriber.reason})).encode()


class Heartbeat:
    """Nudges a stream silent for ``seconds`` (:meth:`Subscriber.nudge`), so that it sends a keep-alive: one timer
    that fires once a period and re-arms itself from the last message sent, instead of a timeout around each read
    (which cost more than the rest of the read: a timer scheduled and cancelled for every event)."""

    def __init__(self, subscriber: Subscriber, seconds: float) -> None:
        self.subscriber = subscriber
        self.seconds = seconds
        self.loop = asyncio.get_running_loop()
        self.spoke = self.loop.time()
        self._timer = self.loop.call_at(self.spoke + seconds, self._check)

    def sent(self) -> None:
        """The stream has just written to its client."""
        self.spoke = self.loop.time()

    def _check(self) -> None:
        due = self.spoke + self.seconds
        if self.loop.time() >= due:  # silent for a whole period
            self.subscriber.nudge()
            due = self.loop.time() + self.seconds
        self._timer = self.loop.call_at(due, self._check)

    def cancel(self) -> None:
        self._timer.cancel()


async def _messages(
    subscriber: Subscriber, *, heartbeat: float, agent_type: str | None, ended: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The subscriber's events as SSE bytes, a comment after each ``heartbeat`` of silence, and a final message
    when the hub ended it (too slow: ``event: error``; the server stopping: a ``retry:`` hint); ``ended`` is
    called when the stream ends, however it does (the client leaving cancels it)."""
    agents = AgentTypes(subscriber.selection.workspace_id) if agent_type is not None else None
    queue = subscriber.queue
    with metrics.subscribed(), _finally(ended):
        yield SUBSCRIBED
        beat = Heartbeat(subscriber, heartbeat)
        try:
            while True:
                batch = [await queue.get()]
                while batch[-1] is not None and len(batch) < BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                chunk: list[bytes] = []
                for delivery in batch:
                    if delivery is None:
                        if subscriber.reason is None:  # a nudge of the heartbeat
                            chunk.append(KEEP_ALIVE)
                            continue
                        chunk.append(_ending(subscriber))
                        yield b"".join(chunk)
                        return
                    event = delivery.event
                    if agents is not None and await agents.of(event.session_id, event.data) != agent_type:
                        continue
                    metrics.event_streamed(event.type)
                    chunk.append(encoded(delivery))
                if chunk:
                    yield b"".join(chunk)
                    beat.sent()
        finally:
            beat.cancel()


class EventController(Controller):
    """Live events of a workspace's sessions (server-sent events)."""

    tags = ["events"]

    async def _stream(
        self,
        request: Request[Any, Any, State],
        api_key_id: str,
        selection: Selection,
        last_event_id: str | None,
        agent_type: str | None = None,
    ) -> Stream:
        hub: Hub = request.app.state.events
        release = hub.admit(api_key_id)
        try:
            if last_event_id:
                position = Position.decode(last_event_id)
                if position is None:
                    raise Gone(GONE_DETAIL)
                subscriber = await hub.resume(selection, position)
            else:
                subscriber = await hub.subscribe(selection)
        except BaseException:
            release()
            raise
        heartbeat = request.app.state.settings.events_heartbeat_seconds

        def ended() -> None:
            hub.unsubscribe(subscriber)
            release()

        stream = _messages(subscriber, heartbeat=heartbeat, agent_type=agent_type, ended=ended)
        return Stream(stream, media_type=EVENT_STREAM, headers=HEADERS)

    @get("/sessions/{session_id:str}/events", opt={NO_DEADLINE: True}, responses=RESPONSES)
    async def session_events(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: FromPath[str],
        types: Types = None,
        last_event_id: LastEventId = None,
    ) -> Stream:
        """One session's events as they happen (``text/event-stream``); resume with ``Last-Event-ID``."""
        selected = parse_types(types)
        await service.get_session(principal.workspace_id, session_id)  # the 404 of every session route
        selection = Selection(principal.workspace_id, session_id, selected)
        return await self._stream(request, principal.api_key_id, selection, last_event_id)

    @get("/events", opt={NO_DEADLINE: True}, responses=RESPONSES)
    async def workspace_events(
        self,
        request: Request[Any, Any, State],
        principal: CurrentPrincipal,
        session_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
        agent_type: Annotated[str | None, QueryParameter(max_length=200)] = None,
        types: Types = None,
        last_event_id: LastEventId = None,
    ) -> Stream:
        """The workspace's events as they happen, optionally of one session, agent type or some event types."""
        selection = Selection(principal.workspace_id, session_id, parse_types(types))
        return await self._stream(request, principal.api_key_id, selection, last_event_id, agent_type)
