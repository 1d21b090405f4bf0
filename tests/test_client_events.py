"""``events()`` of both clients against the real service: every event once, in order, across a restart of the
server; the ``410``, ``404``, ``401`` it raises; a ``429`` it waits out; the blocking twin.

The server is uvicorn on a loopback port in the test's loop (as in ``test_client_sync``); "restarting" it stops
that server (its streams end as on any shutdown) and starts a new app on the same port.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from handoff.app import create_app
from handoff.client import (
    AsyncHandoffClient,
    Event,
    Gone,
    HandoffClient,
    HandoffClientError,
    NotFound,
    RateLimited,
    Unauthorized,
)
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import service
from handoff.sessions.schemas import ActionCreate
from tests.factories import Tenant
from tests.test_client_sync import in_thread, serve_app

pytestmark = pytest.mark.timeout(90)
FAST: dict[str, Any] = {"backoff_base": 0.05, "backoff_max": 0.5}


@pytest.fixture
def events_settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    return Settings(
        mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"), max_streams_per_key=1
    )


@asynccontextmanager
async def serve_on(port: int, settings: Settings, database: MongoDatabase) -> AsyncIterator[str]:
    """The service on ``port`` (reusable at once after it stops), until the block ends, then stopped as SIGTERM
    stops it."""
    async with serve_app(create_app(settings, database=database), port=port, graceful=True) as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def collect(events: AsyncIterator[Event], into: list[Event], last: str) -> None:
    """Take events into ``into`` until one of type ``last``."""
    async for event in events:
        into.append(event)
        if event.type == last:
            return


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail("the condition never held")


async def go_live(handoff: AsyncHandoffClient, session_id: str, got: list[Event]) -> list[str]:
    """Append warm-up entries until the first of them arrives: the stream is live from then on. Their ids."""
    written: list[str] = []
    while not got:
        written.append(f"w{len(written)}")
        await handoff.log_action(session_id, "warm-up", id=written[-1])
        await asyncio.sleep(0.05)
    return written


def entry_ids(events: list[Event]) -> list[str | None]:
    return [e.data["entry"]["id"] if e.type == "work_log.appended" else e.type for e in events]


async def test_every_event_once_and_in_order_across_a_server_restart(
    events_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    port = free_port()
    ws = tenant.workspace.workspace_id
    got: list[Event] = []
    async with AsyncHandoffClient(f"http://127.0.0.1:{port}", tenant.secret, **FAST) as handoff:
        async with serve_on(port, events_settings, database):
            sid = (await handoff.create_session(agent_type="coder")).session_id
            events = handoff.events(sid)
            reader = asyncio.create_task(collect(events, got, "session.updated"))
            warm = await go_live(handoff, sid, got)
            for i in range(3):
                await handoff.log_action(sid, f"before {i}", id=f"b{i}")
            await until(lambda: len(got) >= 4)
        # The server is down and the client retrying: written now, these must arrive once it is back.
        for i in range(3):
            action = ActionCreate(action=f"while down {i}", id=f"d{i}")
            await service.log_action(ws, sid, action, settings=events_settings)
        async with serve_on(port, events_settings, database):
            await handoff.pause_session(sid)
            await asyncio.wait_for(reader, 30)
            await events.aclose()  # type: ignore[attr-defined]
    first = warm.index(got[0].data["entry"]["id"])
    assert entry_ids(got) == [*warm[first:], "b0", "b1", "b2", "d0", "d1", "d2", "session.updated"]
    assert got[-1].data["changes"]["status"] == "paused"
    assert len({e.id for e in got}) == len(got)
    assert all(e.session_id == sid for e in got)


async def test_what_cannot_be_waited_out_is_raised(
    events_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    async with serve_on(free_port(), events_settings, database) as url:
        async with AsyncHandoffClient(url, tenant.secret, **FAST) as handoff:
            with pytest.raises(Gone, match="subscribe afresh"):
                async with aclosing(handoff.events(last_event_id="not-a-token")) as events:
                    await anext(events)
            with pytest.raises(NotFound):
                async with aclosing(handoff.events("nope")) as events:
                    await anext(events)
        async with AsyncHandoffClient(url, "hk_wrong", **FAST) as stranger:
            with pytest.raises(Unauthorized):
                async with aclosing(stranger.events()) as events:
                    await anext(events)


async def test_a_429_is_waited_out_and_raised_only_past_max_reconnects(
    events_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """The key may hold one stream (``max_streams_per_key=1``): a second waits until the first one ends."""
    async with (
        serve_on(free_port(), events_settings, database) as url,
        AsyncHandoffClient(url, tenant.secret, **FAST) as handoff,
        httpx.AsyncClient(base_url=url, timeout=20) as raw,
    ):
        sid = (await handoff.create_session()).session_id
        got: list[Event] = []
        async with raw.stream("GET", "/v1/events", headers=tenant.headers) as holder:
            assert holder.status_code == 200
            with pytest.raises(RateLimited) as refused:
                async with aclosing(handoff.events(max_reconnects=0)) as events:
                    await anext(events)
            assert refused.value.retry_after is not None
            waiting = handoff.events(sid)
            reader = asyncio.create_task(collect(waiting, got, "work_log.appended"))
            await asyncio.sleep(0.3)  # it is refused, waits, tries again
            assert not got
        # The held stream is closed: the waiting one gets in.
        while not reader.done():
            await handoff.log_action(sid, "anyone there?")
            await asyncio.sleep(0.1)
        await reader
        await waiting.aclose()  # type: ignore[attr-defined]
    assert got[-1].data["entry"]["action"] == "anyone there?"


async def test_the_blocking_twin_resumes_from_an_event_id(
    events_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    async with (
        serve_on(free_port(), events_settings, database) as url,
        AsyncHandoffClient(url, tenant.secret, **FAST) as handoff,
    ):
        sid = (await handoff.create_session()).session_id
        got: list[Event] = []
        reader = asyncio.create_task(collect(handoff.events(sid), got, "session.updated"))
        warm = await go_live(handoff, sid, got)
        await handoff.log_work_batch(sid, [{"message": "one", "id": "e1"}, {"message": "two", "id": "e2"}])
        await handoff.pause_session(sid)
        await asyncio.wait_for(reader, 30)
        first = got[0]

        def follow() -> list[Event]:
            with HandoffClient(url, tenant.secret, **FAST) as blocking:
                seen: list[Event] = []
                for event in blocking.events(sid, last_event_id=first.id):
                    seen.append(event)
                    if event.type == "session.updated":
                        return seen
            return seen

        resumed = await in_thread(follow)
    assert [(e.id, e.type, e.data) for e in resumed] == [(e.id, e.type, e.data) for e in got[1:]]
    assert entry_ids(resumed)[-3:] == ["e1", "e2", "session.updated"]
    assert warm


DROPPED = "this consumer fell 1 events behind; reconnect with Last-Event-ID"


def always_dropping_app(connections: list[str | None]) -> Litestar:
    """A service whose session streams end, every time, with a slow-consumer ``event: error`` before any event
    (the service's own hub lets a resumed consumer catch up, so it cannot be made to do this on purpose)."""

    @get("/v1/sessions/{session_id:str}/events")
    async def events(request: Request[Any, Any, Any]) -> ServerSentEvent:
        connections.append(request.headers.get("last-event-id"))

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            yield ServerSentEventMessage(comment="subscribed")
            yield ServerSentEventMessage(event="error", data=json.dumps({"type": "error", "detail": DROPPED}))

        return ServerSentEvent(messages())

    return Litestar([events])


async def test_a_stream_dropped_before_each_first_event_backs_off_and_raises_saying_why() -> None:
    """A stream that is dropped before it hands anything out, every time it reconnects: the client must not spin
    on it forever, and says why it gave up."""
    connections: list[str | None] = []
    async with (
        serve_app(always_dropping_app(connections)) as url,
        AsyncHandoffClient(url, "hk_test", **FAST) as handoff,
    ):
        with pytest.raises(HandoffClientError, match=f"dropped 3 times: {DROPPED}"):
            await asyncio.wait_for(collect(handoff.events("ses_1", max_reconnects=2), [], "never"), 30)
    assert connections == [None, None, None]  # the first try and max_reconnects more, none with an id to resume
