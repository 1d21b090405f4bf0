"""Calling the app in-process, on the test's own event loop.

Litestar's ``AsyncTestClient`` runs the app in a portal thread with a loop of its own, where the session-wide
``AsyncMongoClient`` (bound to the test loop) cannot be used; httpx's ASGI transport runs the app on this loop.
The app's real lifespan runs around it, held in a task of its own: an async fixture's setup and teardown run in
different tasks, and the lifespan's anyio task group (the MCP session manager) must be entered and left in one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from litestar import Litestar


@asynccontextmanager
async def in_process(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``app``, with the app's lifespan running for as long as it is open."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold_lifespan() -> None:
        try:
            async with app.lifespan():
                started.set()
                await stop.wait()
        finally:
            started.set()

    holder = asyncio.create_task(hold_lifespan())
    await started.wait()
    if holder.done():
        holder.result()  # the lifespan failed to start: raise its error
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        stop.set()
        await holder
