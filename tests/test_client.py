"""``AsyncHandoffClient`` against the real service: every method, every typed error, retries that store once.

The client reaches the app in-process through ``httpx.ASGITransport`` on the test's own loop (where the
session's database client lives); what it sends and reads is the service's real HTTP, and every effect is
checked in MongoDB. The blocking twin runs over a real socket in ``test_client_sync.py``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from litestar import Litestar

from handoff.analytics.schemas import (
    Activity,
    AgentList,
    ErrorList,
    HandoffList,
    Lineage,
    PathList,
    StaleList,
    Summary,
)
from handoff.client import (
    AsyncHandoffClient,
    Conflict,
    HandoffClient,
    HandoffClientError,
    Invalid,
    NotFound,
    RetryPolicy,
    TooLarge,
    Unauthorized,
    Unavailable,
    _core,
    load_client_config,
)
from handoff.db import MongoDatabase
from handoff.plans.schemas import PlanRead
from handoff.sessions.schemas import (
    ActionEntry,
    Artifact,
    BatchResult,
    HandoffContext,
    McpContext,
    ReplayContext,
    SessionPage,
    SessionRead,
    TypedEntry,
    WorkLogCreate,
    WorkLogPage,
)
from tests.factories import Tenant
from tests.readiness import until_ready

T = TypeVar("T")
BASE_URL = "http://testserver"
FAST = {"backoff_base": 0.001, "backoff_max": 0.01}


@asynccontextmanager
async def held(context: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave ``context`` in a task of its own.

    anyio cancel scopes (an app's lifespan, an MCP client) must be left in the task that entered them, and an
    async fixture's setup and teardown run in two different tasks.
    """
    entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def hold() -> None:
        try:
            async with context as value:
                entered.set_result(value)
                await stop.wait()
        except BaseException as exc:
            if entered.done():
                raise
            entered.set_exception(exc)

    holder = asyncio.create_task(hold())
    try:
        yield await entered
    finally:
        stop.set()
        await holder


def running(app: Litestar) -> AbstractAsyncContextManager[None]:
    """The app's lifespan, held in one task."""
    return held(app.lifespan())


class Flaky(httpx.AsyncBaseTransport):
    """Forwards to the app, but makes the first ``times`` matching requests look failed to the client.

    ``mode`` says how: ``"lost-503"`` forwards the request (it is applied) and answers 503 anyway, like a
    failover between the write and the answer; ``"503"`` answers 503 without forwarding; ``"read-error"``
    forwards and then drops the connection; ``"connect-error"`` fails before sending.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, match: Callable[[httpx.Request], bool], mode: str, times: int = 1
    ):
        self.inner = inner
        self.match = match
        self.mode = mode
        self.remaining = times
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if not self.match(request) or self.remaining <= 0:
            return await self.inner.handle_async_request(request)
        self.remaining -= 1
        if self.mode == "connect-error":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "503":
            return _problem_503()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if self.mode == "read-error":
            raise httpx.ReadError("connection reset by peer", request=request)
        return _problem_503()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _problem_503() -> httpx.Response:
    return httpx.Response(
        503,
        headers={"content-type": "application/problem+json", "retry-after": "2"},
        json={"type": "about:blank", "title": "Service unavailable", "status": 503, "detail": "no primary"},
    )


def _probes_readiness(request: httpx.Request) -> bool:
    return request.url.path == "/readyz"


def posts_to(suffix: str) -> Callable[[httpx.Request], bool]:
    return lambda request: request.method == "POST" and request.url.path.endswith(suffix)


@pytest.fixture
async def running_app(app: Litestar) -> AsyncIterator[Litestar]:
    async with running(app):
        yield app


@pytest.fixture
async def handoff(running_app: Litestar, tenant: Tenant) -> AsyncIterator[AsyncHandoffClient]:
    transport = httpx.ASGITransport(app=running_app)
    async with AsyncHandoffClient(BASE_URL, tenant.secret, transport=transport, **FAST) as client:
        yield client


def flaky_client(app: Litestar, tenant: Tenant, **flaky: Any) -> tuple[AsyncHandoffClient, Flaky]:
    transport = Flaky(httpx.ASGITransport(app=app), **flaky)
    return AsyncHandoffClient(BASE_URL, tenant.secret, transport=transport, **FAST), transport


async def _doc(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    found = await database["sessions"].find_one({"session_id": session_id})
    assert found is not None, session_id
    return found


# Every method --------------------------------------------------------------------------------------------------


async def test_every_session_method_reaches_the_service(
    handoff: AsyncHandoffClient, database: MongoDatabase, tenant: Tenant
) -> None:
    assert await handoff.health() == {"status": "ok"}
    assert (await until_ready(handoff))["status"] == "ok"

    session = await handoff.create_session(agent_type="coder", context_summary={"goal": "fix login"})
    assert isinstance(session, SessionRead)
    assert session.status == "active"
    assert session.workspace_id == tenant.workspace.workspace_id
    sid = session.session_id

    assert (await handoff.get_session(sid)).session_id == sid
    page = await handoff.list_sessions(agent_type="coder", limit=10)
    assert isinstance(page, SessionPage)
    assert [s.session_id for s in page.items] == [sid]
    assert (await handoff.touch_session(sid)).status == "active"
    assert (await handoff.pause_session(sid)).status == "paused"
    assert (await handoff.resume_session(sid)).status == "active"

    action = await handoff.log_action(sid, "ran pytest", details={"exit": 1})
    assert isinstance(action, ActionEntry)
    assert action.id  # generated by the client
    entry = await handoff.log_work(sid, "Reproduced the bug", type="checkpoint", data={"test": "test_login"})
    assert isinstance(entry, TypedEntry)
    assert entry.type == "checkpoint"
    batch = await handoff.log_work_batch(
        sid,
        [
            WorkLogCreate(message="chose bcrypt", type="decision"),  # type: ignore[arg-type]
            {"message": "flaky test", "type": "error"},
            {"message": "given id", "id": "b-3"},
        ],
    )
    assert batch == BatchResult(appended=3, duplicates=0)
    work_log = await handoff.get_work_log(sid, type="decision")
    assert isinstance(work_log, WorkLogPage)
    assert [e.message for e in work_log.items] == ["chose bcrypt"]  # type: ignore[union-attr]
    assert (await handoff.get_work_log(sid, order="desc", limit=2)).total == 5
    recent = await handoff.recent_actions(sid, limit=2)
    assert recent[0].id == "b-3"

    artifact = await handoff.record_artifact(sid, "src/login.py", action="modified", metadata={"lines": 12})
    assert isinstance(artifact, Artifact)
    await handoff.record_artifact(sid, "tests/test_login.py", action="created")
    assert [a.path for a in await handoff.list_artifacts(sid, action="created")] == ["tests/test_login.py"]

    merged = await handoff.update_context(sid, {"branch": "fix/login"})
    assert merged.context_summary == {"goal": "fix login", "branch": "fix/login"}
    replaced = await handoff.update_context(sid, {"only": 1}, replace=True)
    assert replaced.context_summary == {"only": 1}

    handed = await handoff.handoff(
        sid, "Root cause found", next_steps=["write the fix"], blockers=["no staging"], context_for_next={"pr": 7}
    )
    assert handed.status == "paused"
    assert handed.handoff_notes == {
        "summary": "Root cause found",
        "next_steps": ["write the fix"],
        "blockers": ["no staging"],
        "context_for_next": {"pr": 7},
    }
    context = await handoff.get_handoff_context(sid)
    assert isinstance(context, HandoffContext)
    assert len(context.recent_actions) == 5
    replay_context = await handoff.get_replay_context(sid)
    assert isinstance(replay_context, ReplayContext)
    assert [c.message for c in replay_context.checkpoints] == ["Reproduced the bug"]
    mcp_context = await handoff.get_mcp_context(sid)
    assert isinstance(mcp_context, McpContext)
    assert mcp_context.artifact_count == 2

    replay = await handoff.replay_session(sid, agent_type="reviewer")
    assert replay.session_id.startswith("ses_replay_")
    assert replay.agent_type == "reviewer"
    assert replay.context_summary is not None
    assert replay.context_summary["replayed_from"] == sid

    done = await handoff.complete_session(replay.session_id, "fixed")
    assert (done.status, done.final_summary) == ("completed", "fixed")
    failed = await handoff.fail_session(sid, "gave up")
    assert (failed.status, failed.final_summary) == ("failed", "gave up")
    third = await handoff.create_session()
    ended = await handoff.end_session(third.session_id, "completed", summary="nothing to do")
    assert ended.status == "completed"

    await handoff.delete_session(third.session_id)
    assert await database["sessions"].count_documents({"session_id": third.session_id}) == 0
    stored = await _doc(database, sid)
    assert stored["action_count"] == 5
    assert [a["path"] for a in stored["artifacts"]] == ["src/login.py", "tests/test_login.py"]


async def test_every_plan_method_reaches_the_service(handoff: AsyncHandoffClient, database: MongoDatabase) -> None:
    plan = await handoff.create_plan(
        "login-fix",
        "Fix the login",
        description="Two phases",
        phases=[{"name": "investigate", "tasks": [{"name": "reproduce"}]}, {"name": "fix", "tasks": []}],
        current_phase="investigate",
    )
    assert isinstance(plan, PlanRead)
    assert plan.progress.total_tasks == 1
    assert [p.slug for p in await handoff.list_plans()] == ["login-fix"]
    assert (await handoff.get_plan("login-fix")).title == "Fix the login"
    assert (await handoff.update_plan("login-fix", current_phase="fix")).current_phase == "fix"
    done = await handoff.set_task_status("login-fix", phase="investigate", task="reproduce", status="completed")
    assert done.progress.percentage == 100
    session = await handoff.create_session(plan="login-fix")
    assert [s.session_id for s in await handoff.list_plan_sessions("login-fix")] == [session.session_id]
    assert (await handoff.get_handoff_context(session.session_id)).plan is not None
    assert await database["plans"].count_documents({"slug": "login-fix"}) == 1


async def test_every_analytics_method_reaches_the_service(handoff: AsyncHandoffClient) -> None:
    first = await handoff.create_session(agent_type="coder")
    await handoff.log_work(first.session_id, "boom", type="error")
    await handoff.record_artifact(first.session_id, "src/a.py", action="created")
    await handoff.handoff(first.session_id, "over to you", next_steps=["finish"])
    replay = await handoff.replay_session(first.session_id)
    await handoff.complete_session(replay.session_id)
    waiting = await handoff.create_session(agent_type="writer")
    await handoff.handoff(waiting.session_id, "draft done", blockers=["needs review"])
    since = datetime.now(UTC) - timedelta(hours=1)

    summary = await handoff.analytics_summary(since=since)
    agents = await handoff.analytics_agents()
    activity = await handoff.analytics_activity(bucket="hour", until=datetime.now(UTC) + timedelta(hours=1))
    paths = await handoff.analytics_artifacts(limit=5)
    errors = await handoff.analytics_errors(limit=5)
    stale = await handoff.stale_sessions(idle_minutes=1)
    handoffs = await handoff.list_waiting_handoffs(limit=10)
    lineage = await handoff.get_lineage(replay.session_id)

    assert isinstance(summary, Summary)
    assert summary.sessions.total == 3
    assert isinstance(agents, AgentList)
    assert {a.agent_type for a in agents.items} == {"coder", "writer"}
    assert isinstance(activity, Activity)
    assert sum(bucket.started for bucket in activity.items) == 3
    assert isinstance(paths, PathList)
    assert [p.path for p in paths.items] == ["src/a.py"]
    assert isinstance(errors, ErrorList)
    assert [e.message for e in errors.items] == ["boom"]
    assert isinstance(stale, StaleList)
    assert stale.items == []
    assert isinstance(handoffs, HandoffList)
    assert [(h.session_id, h.blockers) for h in handoffs.items] == [(waiting.session_id, ["needs review"])]
    assert isinstance(lineage, Lineage)
    assert [a.session_id for a in lineage.ancestors] == [first.session_id]
    with pytest.raises(Invalid):
        await handoff.analytics_summary(since="not a date")


async def test_external_id_and_idempotency_key_make_creation_get_or_create(
    handoff: AsyncHandoffClient, database: MongoDatabase
) -> None:
    first = await handoff.create_session(external_id="thread-42", agent_type="coder")
    again = await handoff.create_session(external_id="thread-42", agent_type="coder")
    keyed = await handoff.create_session(idempotency_key="run-7")
    keyed_again = await handoff.create_session(idempotency_key="run-7")

    assert again.session_id == first.session_id
    assert keyed_again.session_id == keyed.session_id
    assert await database["sessions"].count_documents({}) == 2


async def test_an_append_repeated_with_its_id_is_stored_once(
    handoff: AsyncHandoffClient, database: MongoDatabase
) -> None:
    session = await handoff.create_session()
    first = await handoff.log_work(session.session_id, "step", id="s-1")
    second = await handoff.log_work(session.session_id, "step", id="s-1")

    assert first == second
    assert len((await _doc(database, session.session_id))["work_log"]) == 1


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync, async_ = public(HandoffClient), public(AsyncHandoffClient)
    assert set(sync) - {"close"} == set(async_) - {"aclose"}
    for name in set(sync) & set(async_):
        assert list(sync[name].parameters) == list(async_[name].parameters), name


# Typed errors ----------------------------------------------------------------------------------------------------


async def test_a_bad_key_raises_unauthorized(running_app: Litestar) -> None:
    transport = httpx.ASGITransport(app=running_app)
    async with AsyncHandoffClient(BASE_URL, "hk_not_a_key", transport=transport) as client:
        with pytest.raises(Unauthorized) as raised:
            await client.list_sessions()

    assert raised.value.status == 401
    assert raised.value.title == "Unauthorized"
    assert raised.value.detail


async def test_an_unknown_session_raises_not_found(handoff: AsyncHandoffClient) -> None:
    with pytest.raises(NotFound) as raised:
        await handoff.get_session("sess_missing")

    assert raised.value.status == 404
    assert "sess_missing" in raised.value.detail


async def test_writing_to_an_ended_session_raises_conflict(handoff: AsyncHandoffClient) -> None:
    session = await handoff.complete_session((await handoff.create_session()).session_id)

    with pytest.raises(Conflict) as raised:
        await handoff.log_work(session.session_id, "too late")

    assert raised.value.status == 409
    assert "replay" in raised.value.detail


async def test_invalid_input_raises_invalid_with_the_field(handoff: AsyncHandoffClient) -> None:
    session = await handoff.create_session()

    with pytest.raises(Invalid) as bad_type:
        await handoff.log_work(session.session_id, "x", type="bogus")  # type: ignore[arg-type]
    with pytest.raises(Invalid) as bad_plan:
        await handoff.create_session(plan="no-such-plan")

    assert bad_type.value.status == 422
    assert any("type" in problem.field for problem in bad_type.value.errors)
    assert "type" in str(bad_type.value)
    assert bad_plan.value.errors[0].field == "plan"


async def test_an_oversized_payload_raises_too_large(handoff: AsyncHandoffClient, database: MongoDatabase) -> None:
    session = await handoff.create_session()

    with pytest.raises(TooLarge) as raised:
        await handoff.log_work(session.session_id, "big", data={"blob": "x" * 70_000})

    assert raised.value.status == 413
    assert (await _doc(database, session.session_id))["work_log"] == []


async def test_a_service_that_stays_unavailable_raises_unavailable_after_bounded_retries(
    running_app: Litestar, tenant: Tenant
) -> None:
    client, transport = flaky_client(running_app, tenant, match=lambda _: True, mode="503", times=100)
    async with client:
        with pytest.raises(Unavailable) as raised:
            await client.list_sessions()

    assert raised.value.status == 503
    assert raised.value.detail == "no primary"
    assert len(transport.seen) == 4  # the first attempt and max_retries=3 retries


async def test_no_connection_at_all_raises_unavailable_without_status(tenant: Tenant) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with AsyncHandoffClient(
        BASE_URL, tenant.secret, transport=httpx.MockTransport(refuse), max_retries=2, **FAST
    ) as client:
        with pytest.raises(Unavailable) as raised:
            await client.get_session("sess_x")

    assert raised.value.status is None
    assert "3 attempt" in raised.value.detail


async def test_an_unexpected_status_raises_the_base_error(tenant: Tenant) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="<html>oops</html>")

    async with AsyncHandoffClient(BASE_URL, tenant.secret, transport=httpx.MockTransport(broken)) as client:
        with pytest.raises(HandoffClientError) as raised:
            await client.get_session("sess_x")

    assert type(raised.value) is HandoffClientError
    assert (raised.value.status, raised.value.detail) == (500, "<html>oops</html>")


# Retries -------------------------------------------------------------------------------------------------------


async def test_a_readiness_503_is_passed_on_as_it_is_and_waited_out_by_until_ready(
    running_app: Litestar, tenant: Tenant
) -> None:
    client, transport = flaky_client(running_app, tenant, match=_probes_readiness, mode="503", times=2)
    async with client:
        with pytest.raises(Unavailable):
            await client.ready()
        assert len(transport.seen) == 1  # a probe's 503 is its answer: not retried
        ready = await until_ready(client)

    assert ready["status"] == "ok"
    assert [request.url.path for request in transport.seen] == ["/readyz"] * 3


@pytest.mark.parametrize("mode", ["lost-503", "read-error", "connect-error", "503"])
async def test_a_retried_append_is_stored_once(
    running_app: Litestar, tenant: Tenant, database: MongoDatabase, mode: str
) -> None:
    client, transport = flaky_client(running_app, tenant, match=posts_to("/work-log"), mode=mode)
    async with client:
        session = await client.create_session()
        entry = await client.log_work(session.session_id, "Tests pass", type="checkpoint")

    work_log = (await _doc(database, session.session_id))["work_log"]
    assert [e["id"] for e in work_log] == [entry.id]
    attempts = [r for r in transport.seen if r.url.path.endswith("/work-log")]
    assert len(attempts) == 2
    assert attempts[0].content == attempts[1].content  # the same generated id both times


async def test_a_retried_create_and_replay_store_one_session_each(
    running_app: Litestar, tenant: Tenant, database: MongoDatabase
) -> None:
    client, transport = flaky_client(running_app, tenant, match=posts_to("/sessions"), mode="lost-503")
    async with client:
        session = await client.create_session(agent_type="coder")
        transport.match, transport.remaining = posts_to("/replay"), 1
        replay = await client.replay_session(session.session_id)

    assert await database["sessions"].count_documents({"agent_type": "coder"}) == 2
    assert await database["sessions"].count_documents({"session_id": replay.session_id}) == 1
    keys = [r.headers["idempotency-key"] for r in transport.seen if r.url.path.endswith("/sessions")]
    assert len(keys) == 2
    assert keys[0] == keys[1]


async def test_a_retried_complete_whose_first_attempt_landed_returns_the_ended_session(
    running_app: Litestar, tenant: Tenant
) -> None:
    client, _ = flaky_client(running_app, tenant, match=posts_to("/complete"), mode="lost-503")
    async with client:
        session = await client.create_session()
        done = await client.complete_session(session.session_id, "shipped")
        # Without an uncertain attempt, an ended session still refuses.
        with pytest.raises(Conflict):
            await client.complete_session(session.session_id, "shipped")

    assert (done.status, done.final_summary) == ("completed", "shipped")


async def test_a_retried_delete_whose_first_attempt_landed_succeeds(
    running_app: Litestar, tenant: Tenant, database: MongoDatabase
) -> None:
    transport = Flaky(httpx.ASGITransport(app=running_app), match=lambda r: r.method == "DELETE", mode="lost-503")
    async with AsyncHandoffClient(BASE_URL, tenant.secret, transport=transport, **FAST) as client:
        session = await client.create_session()
        await client.delete_session(session.session_id)
        with pytest.raises(NotFound):
            await client.delete_session(session.session_id)

    assert await database["sessions"].count_documents({}) == 0


async def test_no_retries_when_disabled(running_app: Litestar, tenant: Tenant) -> None:
    transport = Flaky(httpx.ASGITransport(app=running_app), match=lambda _: True, mode="503")
    async with AsyncHandoffClient(BASE_URL, tenant.secret, transport=transport, max_retries=0) as client:
        with pytest.raises(Unavailable):
            await client.list_sessions()

    assert len(transport.seen) == 1


# Configuration and policy (pure) --------------------------------------------------------------------------------


def test_configuration_comes_from_arguments_then_the_environment() -> None:
    env = {"HANDOFF_URL": "https://handoff.example/", "HANDOFF_API_KEY": "hk_env"}

    assert load_client_config(environ=env).url == "https://handoff.example"
    assert load_client_config(environ=env).api_key == "hk_env"
    assert load_client_config("http://other:9", "hk_arg", environ=env).api_key == "hk_arg"
    assert load_client_config(environ={}).url == "http://127.0.0.1:8000"
    assert load_client_config(environ={}).api_key is None


def test_the_backoff_grows_and_stays_bounded() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base=0.5, backoff_max=4.0)

    assert 0.25 <= policy.delay(0) <= 0.5
    assert 2.0 <= policy.delay(3) <= 4.0
    assert policy.delay(9) <= 4.0
    assert policy.delay(0, retry_after=2.0) == 2.0  # the service's Retry-After, within the cap
    assert policy.delay(0, retry_after=60.0) == 4.0
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_retries=-1)


def test_ids_in_paths_are_escaped() -> None:
    call = _core.get_session("../plans?x=1")

    assert call.spec.path == "/v1/sessions/..%2Fplans%3Fx%3D1"


async def test_an_agent_loop_claims_beats_and_completes_through_the_client(handoff: AsyncHandoffClient) -> None:
    assert await handoff.claim_handoff() is None
    waiting = await handoff.create_session(agent_type="coder")
    await handoff.handoff(waiting.session_id, "over to you")
    made = await handoff.claim_handoff(agent_type="coder", lease_seconds=60)
    assert made is not None
    assert made.handoff_session_id == waiting.session_id
    assert (await handoff.heartbeat_claim(made.claim_id)).claim_id == made.claim_id
    await handoff.complete_session(made.session.session_id, "done")
    assert (await handoff.get_claim(made.claim_id)).state == "completed"
    assert [claim.claim_id for claim in (await handoff.list_claims(state="completed")).items] == [made.claim_id]
