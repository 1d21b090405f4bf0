"""Graceful shutdown: the signal long streams wait on, so a SIGTERM ends them with a retry hint instead of a cut.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, closes the idle ones, lets the requests in flight
finish (at most ``HANDOFF_SHUTDOWN_TIMEOUT_SECONDS``, then cancels them), and only then runs the app's lifespan
shutdown, which closes the database client. A short request finishes by itself; a stream (server-sent events)
never would, and would hold the worker for the whole timeout and then be cut. So the app keeps a
:class:`ShutdownSignal` on its state (``app.state.shutdown``), set the moment the signal arrives, before uvicorn
waits: a stream waits on it, sends its retry hint and ends, and the client reconnects, to another worker or to
the restarted one, with ``Last-Event-ID``::

    from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS, shutdown_signal, until_shutdown

    async def events(request: Request) -> ServerSentEvent:
        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async for event in until_shutdown(source(), shutdown_signal(request)):
                yield event
            yield ServerSentEventMessage(comment="server restarting", retry=RETRY_AFTER_SHUTDOWN_MS)
        return ServerSentEvent(stream())

uvicorn owns the signal handlers; :func:`listen_for_shutdown` chains onto the handler it installed while the
lifespan runs (and restores it after), so uvicorn's own shutdown proceeds exactly as before. Where no server
installed one (an in-process test client), nothing is chained and the signal is set when the lifespan ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

from litestar.connection import ASGIConnection

T = TypeVar("T")

#: The ``retry:`` a stream ended by a shutdown sends: reconnect after a second (to the next worker).
RETRY_AFTER_SHUTDOWN_MS = 1_000
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignal:
    """Set once the server begins a graceful shutdown; streams end when it is."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


def shutdown_signal(connection: ASGIConnection[Any, Any, Any, Any]) -> ShutdownSignal:
    """The app's shutdown signal, for a handler that streams."""
    found: ShutdownSignal = connection.app.state.shutdown
    return found


async def until_shutdown(source: AsyncIterator[T], shutdown: ShutdownSignal) -> AsyncGenerator[T, None]:
    """Yield ``source``'s items until it ends or shutdown begins, whichever is first; ``source`` is closed either way.

    A shutdown does not wait for the next item (a stream may be idle for minutes): the pending read is cancelled.
    """
    stopping = asyncio.ensure_future(shutdown.wait())
    item: asyncio.Future[T] | None = None
    try:
        while not shutdown.is_set():
            item = asyncio.ensure_future(anext(source))
            await asyncio.wait((item, stopping), return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                item.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration):
                    await item
                return
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        stopping.cancel()
        if item is not None and not item.done():  # cancelled from outside (the client left) mid-read
            item.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await item
        aclose: Callable[[], Any] | None = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


@contextmanager
def listen_for_shutdown(shutdown: ShutdownSignal) -> Iterator[None]:
    """Set ``shutdown`` when a server's SIGTERM/SIGINT handler is about to run, for as long as the block lasts."""
    loop = asyncio.get_running_loop()
    restore: dict[int, Any] = {}

    def chain(previous: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None], None]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            with suppress(RuntimeError):  # the loop closed: nothing left to tell
                loop.call_soon_threadsafe(shutdown.set)
            previous(signum, frame)

        return on_signal

    with suppress(ValueError):  # signal handlers can only be set from the main thread
        for signum in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(signum)
            # Only a server's handler is chained: not the defaults (SIG_DFL, Python's KeyboardInterrupt).
            if callable(previous) and previous is not signal.default_int_handler:
                restore[signum] = previous
                signal.signal(signum, chain(previous))
    try:
        yield
    finally:
        shutdown.set()
        for chained, handler in restore.items():
            with suppress(ValueError):
                signal.signal(chained, handler)
