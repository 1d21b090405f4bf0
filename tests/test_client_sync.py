"""``HandoffClient`` (blocking) over a real socket: a uvicorn server on a loopback port, the real database.

The server runs as a task on the test's own event loop, serving an app that shares the test session's
database client (Beanie binds its documents process-wide, so a second client on another loop cannot be used);
the blocking client runs in a worker thread, exactly as a script would, and talks real HTTP to it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from litestar import Litestar

from handoff.app import create_app
from handoff.client import Conflict, HandoffClient, Invalid, NotFound, TooLarge, Unauthorized, Unavailable
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions.schemas import ActionEntry, Artifact, HandoffContext, SessionRead, TypedEntry
from tests.factories import Tenant
from tests.readiness import until_ready_blocking

T = TypeVar("T")
FAST: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.01}


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers (the test runner owns SIGINT)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_app(
    app: Litestar, *, port: int = 0, graceful: bool = False, shutdown_timeout: float | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port (a free one unless ``port`` is given; a given one is reusable at once
    after the server stops) from this event loop; yields its base URL. ``graceful`` stops it as SIGTERM does, so
    open event streams end with their retry hint instead of holding the server. ``shutdown_timeout`` is uvicorn's
    ``timeout_graceful_shutdown``: the requests still running that long after the stop began are cancelled."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()  # a port still taken: the error, not a stray socket's warning in a later test
        raise
    port = sock.getsockname()[1]
    server = _InLoopServer(
        uvicorn.Config(
            app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=shutdown_timeout
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        if graceful:
            app.state.shutdown.set()  # what SIGTERM sets first: the streams end with their retry hint
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()  # even when the server failed: a stray socket's warning would land on a later test


@pytest.fixture(scope="module")
async def live_url(mongod: MongodProcess, database: MongoDatabase) -> AsyncIterator[str]:
    """The service on a real port for this module, using the module's database."""
    settings = Settings(mongodb_url=mongod.url, database=database.name)
    async with serve_app(create_app(settings, database=database)) as url:
        yield url


async def in_thread(function: Callable[[], T]) -> T:
    """Run blocking client code off the loop that serves it."""
    return await asyncio.to_thread(function)


async def _doc(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    found = await database["sessions"].find_one({"session_id": session_id})
    assert found is not None
    return found


async def test_every_method_over_http(live_url: str, tenant: Tenant, database: MongoDatabase) -> None:
    def script() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with HandoffClient(live_url, tenant.secret) as handoff:
            seen["health"] = handoff.health()
            seen["ready"] = until_ready_blocking(handoff)["status"]
            handoff.create_plan("p", "Plan", phases=[{"name": "one", "tasks": [{"name": "t"}]}])
            assert [p.slug for p in handoff.list_plans()] == ["p"]
            handoff.update_plan("p", description="d")
            handoff.set_task_status("p", phase="one", task="t", status="in_progress")
            assert handoff.get_plan("p").description == "d"

            session = handoff.create_session(agent_type="coder", plan="p", external_id="thread-1")
            sid = session.session_id
            assert handoff.create_session(external_id="thread-1").session_id == sid
            assert [s.session_id for s in handoff.list_plan_sessions("p")] == [sid]
            assert handoff.list_sessions(status="active").items[0].session_id == sid
            assert handoff.get_session(sid).plan == "p"
            handoff.touch_session(sid)
            handoff.pause_session(sid)
            handoff.resume_session(sid)
            seen["action"] = handoff.log_action(sid, "ran tests")
            seen["entry"] = handoff.log_work(sid, "green", type="checkpoint")
            assert handoff.log_work_batch(sid, [{"message": "a"}, {"message": "b", "id": "b"}]).appended == 2
            assert handoff.log_work_batch(sid, [{"message": "b", "id": "b"}]).duplicates == 1
            assert handoff.get_work_log(sid).total == 4
            assert len(handoff.recent_actions(sid, limit=3)) == 3
            seen["artifact"] = handoff.record_artifact(sid, "a.py", action="created")
            assert len(handoff.list_artifacts(sid)) == 1
            handoff.update_context(sid, {"k": "v"})
            handoff.handoff(sid, "halfway", next_steps=["finish"])
            seen["handoff_context"] = handoff.get_handoff_context(sid)
            assert handoff.get_replay_context(sid).total_actions == 4
            assert handoff.get_mcp_context(sid).status == "paused"
            replay = handoff.replay_session(sid)
            seen["replay"] = replay
            handoff.complete_session(replay.session_id, "done")
            handoff.fail_session(sid, "superseded")
            other = handoff.create_session()
            handoff.end_session(other.session_id, "failed")
            handoff.delete_session(other.session_id)
        return seen

    seen = await in_thread(script)

    assert seen["health"] == {"status": "ok"}
    assert seen["ready"] == "ok"
    assert isinstance(seen["action"], ActionEntry)
    assert isinstance(seen["entry"], TypedEntry)
    assert isinstance(seen["artifact"], Artifact)
    assert isinstance(seen["handoff_context"], HandoffContext)
    assert seen["handoff_context"].handoff_notes["next_steps"] == ["finish"]
    assert isinstance(seen["replay"], SessionRead)
    original = await _doc(database, seen["handoff_context"].session_id)
    assert (original["status"], original["final_summary"]) == ("failed", "superseded")
    assert len(original["work_log"]) == 4
    assert (await _doc(database, seen["replay"].session_id))["status"] == "completed"
    assert await database["sessions"].count_documents({}) == 2


async def test_the_analytics_methods_over_http(live_url: str, tenant: Tenant) -> None:
    def script() -> list[object]:
        with HandoffClient(live_url, tenant.secret) as handoff:
            session = handoff.create_session(agent_type="coder")
            handoff.handoff(session.session_id, "waiting")
            return [
                handoff.analytics_summary().sessions.total,
                len(handoff.analytics_agents().items),
                len(handoff.analytics_activity(bucket="day").items),
                handoff.analytics_artifacts().items,
                handoff.analytics_errors().items,
                handoff.stale_sessions().items,
                [h.session_id for h in handoff.list_waiting_handoffs().items] == [session.session_id],
                handoff.get_lineage(session.session_id).descendants,
            ]

    assert await in_thread(script) == [1, 1, 1, [], [], [], True, []]


async def test_typed_errors_over_http(live_url: str, tenant: Tenant) -> None:
    def script() -> list[type[Exception]]:
        raised: list[type[Exception]] = []
        with HandoffClient(live_url, tenant.secret) as handoff:
            active = handoff.create_session()
            ended = handoff.complete_session(handoff.create_session().session_id)
            attempts: list[Callable[[], object]] = [
                lambda: handoff.get_session("sess_nope"),
                lambda: handoff.log_action(ended.session_id, "late"),
                lambda: handoff.record_artifact(active.session_id, "x" * 2000),
                lambda: handoff.log_action(active.session_id, "big", details={"x": "y" * 70_000}),
            ]
            for attempt in attempts:
                try:
                    attempt()
                except Exception as exc:
                    raised.append(type(exc))
        with HandoffClient(live_url, "hk_wrong") as stranger:
            try:
                stranger.list_sessions()
            except Unauthorized:
                raised.append(Unauthorized)
        return raised

    assert await in_thread(script) == [NotFound, Conflict, Invalid, TooLarge, Unauthorized]


class FlakySync(httpx.BaseTransport):
    """The blocking twin of ``test_client.Flaky``: forward, then answer 503 once (the write landed)."""

    def __init__(self, inner: httpx.BaseTransport, path_suffix: str) -> None:
        self.inner = inner
        self.path_suffix = path_suffix
        self.failed = False
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith(self.path_suffix):
            return self.inner.handle_request(request)
        self.attempts += 1
        response = self.inner.handle_request(request)
        response.read()
        if self.failed:
            return response
        self.failed = True
        return httpx.Response(503, headers={"retry-after": "0"}, json={"status": 503, "detail": "failover"})

    def close(self) -> None:
        self.inner.close()


async def test_a_retry_on_503_stores_the_artifact_once(live_url: str, tenant: Tenant, database: MongoDatabase) -> None:
    transport = FlakySync(httpx.HTTPTransport(), "/artifacts")

    def script() -> tuple[str, Artifact]:
        with HandoffClient(live_url, tenant.secret, transport=transport, **FAST) as handoff:
            session = handoff.create_session()
            return session.session_id, handoff.record_artifact(session.session_id, "src/app.py")

    session_id, artifact = await in_thread(script)

    assert transport.attempts == 2
    assert [a["id"] for a in (await _doc(database, session_id))["artifacts"]] == [artifact.id]


async def test_a_server_that_is_gone_raises_unavailable(tenant: Tenant) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there

    def script() -> None:
        with HandoffClient(f"http://127.0.0.1:{port}", tenant.secret, max_retries=1, **FAST) as handoff:
            handoff.get_session("sess_x")

    with pytest.raises(Unavailable) as raised:
        await in_thread(script)
    assert raised.value.status is None
