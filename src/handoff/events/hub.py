"""One change stream per worker, fanned out to that worker's subscribers through bounded queues.

A fresh subscriber joins the :class:`Hub`: its one change stream on ``sessions`` (all workspaces) is opened on the
first subscriber and closed with the app. Each change is mapped once, and only when a stream follows its session
(``pump``); its events are offered only to the subscribers of its session and to those of its whole workspace,
which the hub keeps indexed by workspace and session, so an event costs nothing to the other streams of its
workspace. A subscriber that resumes (``Last-Event-ID``) gets a change stream of its own instead, filtered to its
workspace on the server and started ``resume_after`` its token, so it receives exactly what it missed and then
everything after it, in order; it feeds the same kind of bounded queue.

A queue of the hub's stream that is full means a consumer that cannot keep up: it is emptied and closed with the
reason, the consumer gets a final ``event: error`` and reconnects with the last id it received, so memory per
subscriber is bounded by ``HANDOFF_EVENTS_QUEUE_SIZE`` and nothing is lost. A resumed stream's own change stream
waits for room in its queue instead: it holds nobody else up, and a consumer catching up on a long backlog (which
its change stream replays far faster than a client reads) would otherwise be dropped again on every resume.
Streams are read with ``try_next`` (each waits at most :data:`MAX_AWAIT_MS` on the server) rather than cancelled
mid-read, so closing one never cuts a connection.

A consumer waits on its queue and nothing else: when the server begins to shut down (the app's shutdown signal,
:meth:`Hub.stop_streams`) every subscriber is ended through its queue with :attr:`Subscriber.restarting` set, so a
stream needs no second task per read to watch for the signal; it sends its retry hint and ends.

An event of :data:`~handoff.events.mapping.WITH_SESSION` carries the Session body, read once per change on this
worker by :class:`~handoff.events.bodies.Bodies`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import OperationFailure, PyMongoError

from handoff.errors import Gone, RateLimited, Unavailable
from handoff.events.bodies import Bodies
from handoff.events.mapping import Event, Position, workspace_filter
from handoff.events.pump import Cursor, Delivery, deliveries, pump
from handoff.sessions import store

if TYPE_CHECKING:
    from handoff.ops.shutdown import ShutdownSignal

__all__ = ["GONE_DETAIL", "SHUTTING_DOWN", "Delivery", "Hub", "Selection", "Subscriber", "deliveries"]

logger = logging.getLogger("handoff.events")

#: Only the operations that mean something to a client (not drops, renames or invalidations).
OPERATIONS: dict[str, Any] = {"$match": {"operationType": {"$in": ["insert", "update", "delete"]}}}
#: How long one read of a change stream waits on the server; a stream being closed ends within it.
MAX_AWAIT_MS = 500
#: Wait before reopening the hub's stream after an error (a step-down the driver's one retry did not ride out).
REOPEN_DELAY_SECONDS = 1.0
SHUTTING_DOWN = "the server is shutting down; reconnect with Last-Event-ID"
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


class Subscriber:
    """One stream's bounded queue; ``None`` in it ends the stream with :attr:`reason`, and :attr:`restarting` says
    whether that end is the server shutting down (reconnect after the retry hint) rather than a drop. A ``None``
    while :attr:`reason` is unset is a :meth:`nudge`, which only a consumer that asks for them gets."""

    def __init__(self, selection: Selection, size: int) -> None:
        self.selection = selection
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue(size + 1)  # + 1: room for the final None
        self.size = size
        self.reason: str | None = None
        self.restarting = False

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

    def nudge(self) -> None:
        """Wake the consumer waiting on an empty queue without an event (its stream has been silent for a while and
        sends a keep-alive), so that it needs no timer of its own around every read."""
        if self.reason is None and self.queue.empty():
            self.queue.put_nowait(None)

    def close(self, reason: str, *, restarting: bool = False) -> None:
        """End the stream with ``reason``, dropping what it had not read (it resumes from what it had)."""
        if self.reason is not None:
            return
        self.reason = reason
        self.restarting = restarting
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    """The worker's change stream and its subscribers; one per app, on ``app.state.events``."""

    def __init__(self, *, queue_size: int, max_streams_per_key: int, shutdown: ShutdownSignal | None = None) -> None:
        self.queue_size = queue_size
        self.max_streams_per_key = max_streams_per_key
        # workspace -> session id (None: the whole workspace) -> subscribers: an event is offered to two groups
        self._subscribers: dict[str, dict[str | None, set[Subscriber]]] = {}
        self._streams_per_key: Counter[str] = Counter()
        self._stopping = asyncio.Event()
        self._streams_stopped = False
        self._task: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._private: set[asyncio.Task[None]] = set()
        self._resumed: set[Subscriber] = set()
        self._bodies = Bodies()
        self._shutdown = shutdown
        self._watcher: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        """The hub is closing (or closed), or the server shutting down: a consumer has nothing left to resume."""
        return self._restarting or self._stopping.is_set()

    @property
    def _restarting(self) -> bool:
        # The flag, or the signal itself: a stream may subscribe between the signal and its watcher's turn.
        return self._streams_stopped or (self._shutdown is not None and self._shutdown.is_set())

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
        self._refuse_when_closed()
        self._watch_for_shutdown()
        if self._task is None or self._task.done():
            self._opened = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._opened), name="handoff-events-hub")
        assert self._opened is not None
        await asyncio.shield(self._opened)
        subscriber = Subscriber(selection, self.queue_size)
        if self._restarting:  # the server began to stop since the request came: the stream ends at once
            subscriber.close(SHUTTING_DOWN, restarting=True)
            return subscriber
        group = self._subscribers.setdefault(selection.workspace_id, {})
        group.setdefault(selection.session_id, set()).add(subscriber)
        return subscriber

    async def resume(self, selection: Selection, position: Position) -> Subscriber:
        """A subscriber fed by a stream of its own from ``position``; ``410`` when it cannot resume from there."""
        self._refuse_when_closed()
        self._watch_for_shutdown()
        pipeline = [OPERATIONS, {"$match": workspace_filter(selection.workspace_id)}]
        try:
            stream = await store.sessions().watch(
                pipeline, resume_after=position.resume_token(), max_await_time_ms=MAX_AWAIT_MS
            )
        except OperationFailure as exc:  # ChangeStreamHistoryLost, a token the server cannot parse or find
            raise Gone(GONE_DETAIL) from exc
        subscriber = Subscriber(selection, self.queue_size)
        if self._restarting:
            subscriber.close(SHUTTING_DOWN, restarting=True)

        def running() -> bool:
            return subscriber.reason is None and not self._stopping.is_set()

        async def feed() -> None:
            async with stream:
                try:
                    await pump(
                        stream,
                        subscriber.put,
                        running,
                        heard=lambda _, session_id: selection.session_id in (None, session_id),
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

    def _refuse_when_closed(self) -> None:
        # A closed hub opens no stream: the subscriber would wait for one forever.
        if self._stopping.is_set():
            raise Unavailable(SHUTTING_DOWN)

    def _watch_for_shutdown(self) -> None:
        """End every stream when the server's shutdown signal is set (one task for the worker, started with the
        first stream: the hub may be made before the loop runs)."""
        if self._shutdown is None or self._watcher is not None:
            return

        async def watch(shutdown: ShutdownSignal) -> None:
            await shutdown.wait()
            self.stop_streams()

        self._watcher = asyncio.create_task(watch(self._shutdown), name="handoff-events-shutdown")

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber whose stream ended (its own change stream, if it has one, closes within a read)."""
        subscriber.close("unsubscribed")
        self._resumed.discard(subscriber)
        selection = subscriber.selection
        group = self._subscribers.get(selection.workspace_id)
        if group is None or (same := group.get(selection.session_id)) is None:
            return
        same.discard(subscriber)
        if not same:
            del group[selection.session_id]
            if not group:
                del self._subscribers[selection.workspace_id]

    def _audience(self, event: Event) -> tuple[set[Subscriber], ...]:
        """The subscribers that may want ``event``: those of its session and those of its whole workspace."""
        group = self._subscribers.get(event.workspace_id)
        if group is None:
            return ()
        return tuple(found for key in (event.session_id, None) if (found := group.get(key)))

    def _heard(self, workspace_id: str, session_id: str) -> bool:
        group = self._subscribers.get(workspace_id)
        return group is not None and (session_id in group or None in group)

    def _wanted(self, event: Event) -> bool:
        return any(subscriber.selection.wants(event) for same in self._audience(event) for subscriber in same)

    async def _deliver(self, delivery: Delivery) -> None:
        for same in self._audience(delivery.event):
            for subscriber in same:  # offer() never awaits, so no stream leaves the set while it is walked
                subscriber.offer(delivery)

    def _drop_all(self, reason: str, *, restarting: bool = False) -> None:
        for group in self._subscribers.values():
            for same in group.values():
                for subscriber in same:
                    subscriber.close(reason, restarting=restarting)
        self._subscribers.clear()
        for subscriber in self._resumed:
            subscriber.close(reason, restarting=restarting)

    def stop_streams(self) -> None:
        """End every stream with the hint to reconnect, now and for any that subscribes from now on: the server is
        shutting down (its change streams run on until :meth:`close`, after the requests in flight)."""
        self._streams_stopped = True
        self._drop_all(SHUTTING_DOWN, restarting=True)

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
                    await pump(
                        stream,
                        self._deliver,
                        lambda: not self._stopping.is_set(),
                        heard=self._heard,
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
        self._drop_all(SHUTTING_DOWN, restarting=True)
        if self._watcher is not None:
            self._watcher.cancel()
            with suppress(asyncio.CancelledError):
                await self._watcher
        tasks = [task for task in (self._task, *self._private) if task is not None]
        for task in tasks:
            with suppress(Exception):
                await task
