"""One change stream per worker, fanned out to that worker's subscribers through bounded queues.

A fresh subscriber joins the :class:`Hub`: its one change stream on ``sessions`` (all workspaces; each change
is mapped once and offered only to the subscribers of the workspace its ``_id`` names) is opened on the first
subscriber and closed with the app. A subscriber that resumes (``Last-Event-ID``) gets a change stream of its
own instead, filtered to its workspace on the server and started ``resume_after`` its token, so it receives
exactly what it missed and then everything after it, in order; it feeds the same kind of bounded queue.

A queue of the hub's stream that is full means a consumer that cannot keep up: it is emptied and closed with the
reason, the consumer gets a final ``event: error`` and reconnects with the last id it received, so memory per
subscriber is bounded by ``HANDOFF_EVENTS_QUEUE_SIZE`` and nothing is lost. A resumed stream's own change stream
waits for room in its queue instead: it holds nobody else up, and a consumer catching up on a long backlog (which
its change stream replays far faster than a client reads) would otherwise be dropped again on every resume.
Streams are read with ``try_next`` (each waits at most :data:`MAX_AWAIT_MS` on the server) rather than cancelled
mid-read, so closing one never cuts a connection.

An event of :data:`~handoff.events.mapping.WITH_SESSION` (``session.updated``) carries the Session body as
``GET /v1/sessions/{id}`` answers it, which the change itself does not hold, and a ``handoff.waiting`` of a claim
that let go carries the handoff notes from it (``mapping.needs_body``): :class:`Bodies` reads it once per
change on this worker, however many subscribers hear of it, and only when one of them wants the event. It is the
session *as read when the event was first sent*: a later write may already show in it (its ``changes`` are
exactly this change's), and it is ``null`` when the session was deleted in between. A resumed stream meeting a
change the hub's stream already sent (within the last :data:`BODIES_KEPT` changes) sends the same body.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from handoff import clock
from handoff.errors import Gone, RateLimited, Unavailable
from handoff.events.mapping import Event, Position, events_of, needs_body, with_body, workspace_filter
from handoff.sessions import store, views

logger = logging.getLogger("handoff.events")

#: Only the operations that mean something to a client (not drops, renames or invalidations).
OPERATIONS: dict[str, Any] = {"$match": {"operationType": {"$in": ["insert", "update", "delete"]}}}
#: How long one read of a change stream waits on the server; a stream being closed ends within it.
MAX_AWAIT_MS = 500
#: Wait before reopening the hub's stream after an error (a step-down the driver's one retry did not ride out).
REOPEN_DELAY_SECONDS = 1.0
#: How many changes' Session bodies a worker keeps, so a resumed stream sends the body the hub's stream sent.
BODIES_KEPT = 1_024
GONE_DETAIL = (
    "Last-Event-ID is not a position this service can resume from (too old for the oplog, or not an event id): "
    "re-read the session and subscribe afresh, without Last-Event-ID"
)


@dataclass(frozen=True, slots=True)
class Selection:
    """The events one subscriber asked for: always one workspace, optionally one session and some types."""

    workspace_id: str
    session_id: str | None = None
    types: frozenset[str] | None = None

    def wants(self, event: Event) -> bool:
        return (
            event.workspace_id == self.workspace_id
            and (self.session_id is None or event.session_id == self.session_id)
            and (self.types is None or event.type in self.types)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event and the position a stream resumes from after it (its SSE ``id:``)."""

    event: Event
    position: Position


def deliveries(change: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[Delivery]:
    """The events of ``change`` with their positions; ``before`` is the stream's resume token just before it."""
    events = events_of(change, clock.now())
    last = len(events) - 1
    token = change["_id"]["_data"]
    if before is None and last > 0:  # cannot happen on a stream that has answered once; resume at the change
        before = change["_id"]
    return [
        Delivery(event, Position(token) if i == last else Position(before["_data"], i + 1))  # type: ignore[index]
        for i, event in enumerate(events)
    ]


class Subscriber:
    """One stream's bounded queue; ``None`` in it ends the stream with :attr:`reason`."""

    def __init__(self, selection: Selection, size: int) -> None:
        self.selection = selection
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue(size + 1)  # + 1: room for the final None
        self.size = size
        self.reason: str | None = None

    def offer(self, delivery: Delivery) -> None:
        if self.reason is not None or not self.selection.wants(delivery.event):
            return
        if self.queue.qsize() >= self.size:
            self.close(f"this consumer fell {self.size} events behind; reconnect with Last-Event-ID")
            return
        self.queue.put_nowait(delivery)

    async def put(self, delivery: Delivery) -> None:
        """Like :meth:`offer`, but wait for room: for a stream of the subscriber's own, which may wait for it."""
        if self.reason is None and self.selection.wants(delivery.event):
            await self.queue.put(delivery)  # close() empties the queue first, so its None always finds room

    def close(self, reason: str) -> None:
        """End the stream with ``reason``, dropping what it had not read (it resumes from what it had)."""
        if self.reason is not None:
            return
        self.reason = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class BodyReadFailed(PyMongoError):
    """The read of a Session body failed: the stream reopens before its change (its position is not lost, unlike
    an ``OperationFailure`` of the change stream itself)."""


class Bodies:
    """The Session body of each change whose events carry one, read once per change on this worker.

    Keyed by the change's resume token, so the hub's stream and resumed streams that meet the same change share
    one read (the first to meet it reads, the others wait for that read) and send the same body.
    """

    def __init__(self, kept: int = BODIES_KEPT) -> None:
        self.kept = kept
        self._read: OrderedDict[str, asyncio.Future[dict[str, Any] | None]] = OrderedDict()

    async def of(self, token: str, workspace_id: str, session_id: str) -> dict[str, Any] | None:
        """The body for the change of ``token``: the session as read now, or ``None`` once it is deleted."""
        found = self._read.get(token)
        if found is None:
            found = asyncio.ensure_future(_session_body(workspace_id, session_id))
            self._read[token] = found
            if len(self._read) > self.kept:
                self._read.popitem(last=False)
        try:
            return await asyncio.shield(found)  # a stream that stops waiting does not cancel the others' read
        except PyMongoError as exc:
            if self._read.get(token) is found:  # not remembered: the next stream to meet the change reads again
                del self._read[token]
            raise BodyReadFailed(f"reading the session for an event failed: {exc}") from exc


async def _session_body(workspace_id: str, session_id: str) -> dict[str, Any] | None:
    doc = await store.sessions().find_one(store.key(workspace_id, session_id), store.SESSION_PROJECTION)
    return None if doc is None else views.session_read(doc, clock.now()).model_dump(mode="json")


@dataclass(slots=True)
class Cursor:
    """The resume token after the last change a stream delivered in full: where to reopen it after a failure."""

    token: Mapping[str, Any] | None = None


async def _pump(
    stream: AsyncChangeStream[Any],
    deliver: Callable[[Delivery], Awaitable[None]],
    running: Callable[[], bool],
    *,
    wanted: Callable[[Event], bool],
    bodies: Bodies,
    cursor: Cursor,
    skip: int = 0,
) -> None:
    """Read ``stream`` while ``running()``, handing each change's deliveries to ``deliver`` (the first ``skip`` of
    the first change are ones the subscriber already has), with the Session body of those ``wanted`` that carry
    one. A change is delivered whole or not at all: a failed read of its body leaves ``cursor`` before it."""
    cursor.token = stream.resume_token
    while running() and stream.alive:
        change = await stream.try_next()
        if change is not None:
            found = deliveries(change, cursor.token)[skip:]
            for i, delivery in enumerate(found):
                event = delivery.event
                if needs_body(event) and wanted(event):
                    body = await bodies.of(change["_id"]["_data"], event.workspace_id, event.session_id)
                    found[i] = replace(delivery, event=with_body(event, body))
            for delivery in found:
                await deliver(delivery)
            skip = 0
        cursor.token = stream.resume_token


class Hub:
    """The worker's change stream and its subscribers; one per app, on ``app.state.events``."""

    def __init__(self, *, queue_size: int, max_streams_per_key: int) -> None:
        self.queue_size = queue_size
        self.max_streams_per_key = max_streams_per_key
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self._streams_per_key: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._private: set[asyncio.Task[None]] = set()
        self._resumed: set[Subscriber] = set()
        self._bodies = Bodies()

    @property
    def closing(self) -> bool:
        """The hub is closing (or closed): it takes no more subscribers."""
        return self._stopping.is_set()

    def admit(self, api_key_id: str) -> Callable[[], None]:
        """Count one more open stream of this key (``429`` past ``HANDOFF_MAX_STREAMS_PER_KEY``); call the returned
        function once when it ends."""
        if self._streams_per_key[api_key_id] >= self.max_streams_per_key:
            raise RateLimited(
                f"this API key already holds {self.max_streams_per_key} event streams (HANDOFF_MAX_STREAMS_PER_KEY)",
                headers={"Retry-After": "1"},
            )
        self._streams_per_key[api_key_id] += 1

        def release() -> None:
            self._streams_per_key[api_key_id] -= 1
            if not self._streams_per_key[api_key_id]:
                del self._streams_per_key[api_key_id]

        return release

    async def subscribe(self, selection: Selection) -> Subscriber:
        """A subscriber to everything from now on (the hub's stream is open when this returns)."""
        self._refuse_when_closing()
        if self._task is None or self._task.done():
            self._opened = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._opened), name="handoff-events-hub")
        assert self._opened is not None
        await asyncio.shield(self._opened)
        subscriber = Subscriber(selection, self.queue_size)
        self._subscribers[selection.workspace_id].add(subscriber)
        return subscriber

    async def resume(self, selection: Selection, position: Position) -> Subscriber:
        """A subscriber fed by a stream of its own from ``position``; ``410`` when it cannot resume from there."""
        self._refuse_when_closing()
        pipeline = [OPERATIONS, {"$match": workspace_filter(selection.workspace_id)}]
        try:
            stream = await store.sessions().watch(
                pipeline, resume_after=position.resume_token(), max_await_time_ms=MAX_AWAIT_MS
            )
        except OperationFailure as exc:  # ChangeStreamHistoryLost, a token the server cannot parse or find
            raise Gone(GONE_DETAIL) from exc
        subscriber = Subscriber(selection, self.queue_size)

        def running() -> bool:
            return subscriber.reason is None and not self._stopping.is_set()

        async def feed() -> None:
            async with stream:
                try:
                    await _pump(
                        stream,
                        subscriber.put,
                        running,
                        wanted=subscriber.selection.wants,
                        bodies=self._bodies,
                        cursor=Cursor(),
                        skip=position.skip,
                    )
                except PyMongoError as exc:
                    logger.warning("a resumed event stream failed: %s", exc)
                    subscriber.close("the event stream was interrupted; reconnect with Last-Event-ID")

        task = asyncio.create_task(feed(), name="handoff-events-resumed")
        self._private.add(task)
        task.add_done_callback(self._private.discard)
        self._resumed.add(subscriber)
        return subscriber

    def _refuse_when_closing(self) -> None:
        # A closed hub opens no stream: the subscriber would wait for one forever.
        if self.closing:
            raise Unavailable("the server is shutting down; reconnect with Last-Event-ID")

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber whose stream ended (its own change stream, if it has one, closes within a read)."""
        subscriber.close("unsubscribed")
        self._resumed.discard(subscriber)
        self._subscribers[subscriber.selection.workspace_id].discard(subscriber)
        if not self._subscribers[subscriber.selection.workspace_id]:
            del self._subscribers[subscriber.selection.workspace_id]

    def _wanted(self, event: Event) -> bool:
        return any(subscriber.selection.wants(event) for subscriber in self._subscribers.get(event.workspace_id, ()))

    async def _deliver(self, delivery: Delivery) -> None:
        for subscriber in tuple(self._subscribers.get(delivery.event.workspace_id, ())):
            subscriber.offer(delivery)

    def _drop_all(self, reason: str) -> None:
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.close(reason)
        self._subscribers.clear()
        for subscriber in self._resumed:
            subscriber.close(reason)

    async def _run(self, opened: asyncio.Future[None]) -> None:
        """Keep the hub's stream open, resuming after the last change seen when it fails, until the app stops."""
        cursor = Cursor()
        while not self._stopping.is_set():
            try:
                stream = await store.sessions().watch(
                    [OPERATIONS], resume_after=cursor.token, max_await_time_ms=MAX_AWAIT_MS
                )
                if not opened.done():
                    opened.set_result(None)
                async with stream:
                    await _pump(
                        stream,
                        self._deliver,
                        lambda: not self._stopping.is_set(),
                        wanted=self._wanted,
                        bodies=self._bodies,
                        cursor=cursor,
                    )
            except PyMongoError as exc:
                if not opened.done():  # no stream at all (a standalone mongod has no change streams)
                    opened.set_exception(Unavailable(f"events are unavailable: {exc}"))
                    return
                logger.warning("the events change stream failed, reopening it: %s", exc)
                if isinstance(exc, OperationFailure):  # the position itself is gone: subscribers must start afresh
                    cursor.token = None
                    self._drop_all("events were lost; re-read the session and subscribe afresh")
                await asyncio.sleep(REOPEN_DELAY_SECONDS)

    async def close(self) -> None:
        """Stop every stream (each ends within one read) and end every subscriber."""
        self._stopping.set()
        self._drop_all("the server is shutting down; reconnect with Last-Event-ID")
        tasks = [task for task in (self._task, *self._private) if task is not None]
        for task in tasks:
            with suppress(Exception):
                await task
