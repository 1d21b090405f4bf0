"""A small app that streams the way the events routes must: until the shutdown signal, then a retry hint.

Run by ``test_ops_shutdown`` under uvicorn in a process of its own, so a real SIGTERM reaches uvicorn's
handler and the chained one of :func:`handoff.ops.shutdown.listen_for_shutdown`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from handoff.config import Settings
from handoff.ops import NO_DEADLINE, Operations
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS, shutdown_signal, until_shutdown

ops = Operations(Settings(data_dir=Path("/nonexistent"), metrics_enabled=False))


async def ticks() -> AsyncIterator[ServerSentEventMessage]:
    n = 0
    while True:
        yield ServerSentEventMessage(data=f"tick {n}", id=str(n))
        n += 1
        await asyncio.sleep(3600 if n > 1 else 0)  # then idle, as an event stream mostly is


@get("/stream", opt={NO_DEADLINE: True})
async def stream(request: Request[Any, Any, Any]) -> ServerSentEvent:
    async def events() -> AsyncIterator[ServerSentEventMessage]:
        async for event in until_shutdown(ticks(), shutdown_signal(request)):
            yield event
        yield ServerSentEventMessage(comment="server restarting", retry=RETRY_AFTER_SHUTDOWN_MS)

    return ServerSentEvent(events())


app = Litestar(route_handlers=[stream], lifespan=[ops.running])
