"""Live events of sessions as server-sent events, from MongoDB change streams (issue 15).

``mapping`` says what a change on ``sessions`` means (pure), ``hub`` keeps the worker's change stream and its
subscribers' bounded queues, ``controller`` serves ``GET /v1/events`` and ``GET /v1/sessions/{id}/events``.
Change streams need a replica set (the bundled mongod is one); a standalone mongod answers ``503`` here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from handoff.config import Settings
from handoff.events.hub import Hub


@asynccontextmanager
async def running(app: Litestar, settings: Settings) -> AsyncIterator[None]:
    """The app's :class:`Hub` on ``app.state.events`` while the app runs; its streams end when the server begins to
    shut down (``app.state.shutdown``, set by :mod:`handoff.ops` before this starts) and close when it stops."""
    hub = Hub(
        queue_size=settings.events_queue_size,
        max_streams_per_key=settings.max_streams_per_key,
        shutdown=app.state.shutdown,
    )
    app.state.events = hub
    try:
        yield
    finally:
        await hub.close()
