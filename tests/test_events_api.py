"""Server-sent events over a real socket (uvicorn on a loopback port, the real replica-set mongod): what each write
streams and in which order, an exact resume with ``Last-Event-ID``, the ``410`` and ``429`` answers, heartbeats,
and tenancy (a workspace never hears of another's sessions, even ones of the same external id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff import bulk
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS
from tests.api import problem
from tests.factories import Tenant
from tests.test_client_sync import serve_app
from tests.test_ops_metrics import parse, value

pytestmark = pytest.mark.timeout(60)


@dataclass
class Message:
    event: str | None
    id: str | None
    data: Any
    comment: str | None = None
    retry: str | None = None


class Reader:
    """The messages of one open event stream, parsed as an EventSource would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def message(self) -> Message:
        fields: dict[str, str] = {}
        comment = None
        while True:
            line = await anext(self.lines)
            if line == "":
                if fields or comment is not None:
                    data = json.loads(fields["data"]) if fields.get("data") else None
                    return Message(fields.get("event"), fields.get("id"), data, comment, fields.get("retry"))
                continue
            if line.startswith(":"):
                comment = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    async def events(self, count: int) -> list[Message]:
        """The next ``count`` events (comments skipped)."""
        found: list[Message] = []
        while len(found) < count:
            message = await self.message()
            if message.event is not None:
                found.append(message)
        return found


@pytest.fixture
def events_settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    return Settings(
        mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"), max_streams_per_key=3
    )


@pytest.fixture
async def http(events_settings: Settings, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_app(create_app(events_settings, database=database)) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
    ):
        yield client


@asynccontextmanager
async def stream(
    http: httpx.AsyncClient, tenant: Tenant, path: str = "/v1/events", last_event_id: str | None = None, **params: Any
) -> AsyncIterator[Reader]:
    headers = dict(tenant.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", path, headers=headers, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        assert (await reader.message()).comment == "subscribed"  # the stream is live from here on
        yield reader


async def call(http: httpx.AsyncClient, tenant: Tenant, method: str, path: str, body: Any = None) -> Any:
    response = await http.request(method, f"/v1/sessions{path}", headers=tenant.headers, json=body)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def test_writes_stream_their_events_in_order(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async with stream(http, tenant) as reader:
        session = await call(http, tenant, "POST", "", {"agent_type": "coder", "external_id": "job-1"})
        sid = session["session_id"]
        entry = await call(http, tenant, "POST", f"/{sid}/actions", {"action": "read the spec"})
        await call(http, tenant, "POST", f"/{sid}/work-log/batch", {"entries": [{"message": "a"}, {"message": "b"}]})
        await call(http, tenant, "POST", f"/{sid}/artifacts", {"path": "src/a.py", "action": "created"})
        await call(http, tenant, "POST", f"/{sid}/handoff", {"summary": "half done", "next_steps": ["finish"]})
        await call(http, tenant, "DELETE", f"/{sid}/work-log/{entry['id']}")
        await call(http, tenant, "DELETE", f"/{sid}")
        got = await reader.events(9)
    assert [m.event for m in got] == [
        "session.created",
        "work_log.appended",
        "work_log.appended",
        "work_log.appended",
        "artifact.recorded",
        "session.updated",
        "handoff.waiting",
        "work_log.removed",
        "session.deleted",
    ]
    assert all(m.data["type"] == m.event and m.data["session_id"] == sid and m.data["at"] for m in got)
    assert got[0].data["session"]["agent_type"] == "coder"
    assert got[1].data["entry"]["action"] == "read the spec"
    assert [m.data["entry"]["message"] for m in got[2:4]] == ["a", "b"]
    assert got[4].data["artifact"]["path"] == "src/a.py"
    assert got[5].data["changes"]["status"] == "paused"
    assert got[5].data["session"]["session_id"] == sid  # its body's value: test_session_updated_carries_the_body
    assert got[6].data["handoff_notes"]["summary"] == "half done"
    assert got[7].data["ids"] == [entry["id"]]
    assert len({m.id for m in got}) == 9  # every event has an id of its own


async def test_last_event_id_resumes_with_exactly_the_missed_events(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async with stream(http, tenant) as witness:  # stays connected throughout: what the resumed one must match
        async with stream(http, tenant) as reader:
            sid = (await call(http, tenant, "POST", ""))["session_id"]
            batch = {"entries": [{"message": str(i)} for i in range(3)]}
            await call(http, tenant, "POST", f"/{sid}/work-log/batch", batch)
            seen = await reader.events(2)  # created and the batch's first entry: the cut is inside the batch
        await call(http, tenant, "POST", f"/{sid}/actions", {"action": "while away"})
        await call(http, tenant, "POST", f"/{sid}/pause")
        everything = await witness.events(6)
        async with stream(http, tenant, last_event_id=seen[-1].id) as resumed:
            missed = await resumed.events(4)
            await call(http, tenant, "POST", f"/{sid}/resume")
            after = await resumed.events(1)
    assert [m.id for m in everything[:2]] == [m.id for m in seen]
    assert [(m.id, m.event, m.data) for m in missed] == [(m.id, m.event, m.data) for m in everything[2:]]
    assert [m.data["entry"]["message"] for m in missed[:2]] == ["1", "2"]
    assert after[0].event == "session.updated"
    assert after[0].data["changes"]["status"] == "active"


async def test_session_updated_carries_the_body(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """``session.updated`` carries the Session body as GET answers it, read once per change on the worker: a stream
    resumed later sends the body the live one sent, and one that meets the change only after a delete, ``null``."""
    async with stream(http, tenant) as live:
        sid = (await call(http, tenant, "POST", "", {"agent_type": "coder"}))["session_id"]
        await call(http, tenant, "POST", f"/{sid}/handoff", {"summary": "half done", "next_steps": ["finish"]})
        created, paused, _ = await live.events(3)
        read = await call(http, tenant, "GET", f"/{sid}")
    moving = ("duration", "duration_minutes")  # move with the clock
    assert paused.event == "session.updated"
    assert paused.data["changes"]["status"] == "paused"
    assert {k: v for k, v in paused.data["session"].items() if k not in moving} == {
        k: v for k, v in read.items() if k not in moving
    }
    await call(http, tenant, "POST", f"/{sid}/resume")  # the session is active now
    async with stream(http, tenant, last_event_id=created.id) as resumed:
        again = (await resumed.events(1))[0]
    assert (again.id, again.data) == (paused.id, paused.data)  # the body the live stream sent, not a new read

    # A stream that does not want session.updated reads no body; one resumed after the delete finds none.
    async with stream(http, tenant, types="session.created,session.deleted") as quiet:
        gone = (await call(http, tenant, "POST", ""))["session_id"]
        await call(http, tenant, "POST", f"/{gone}/pause")
        await call(http, tenant, "DELETE", f"/{gone}")
        born, _ = await quiet.events(2)
    async with stream(http, tenant, last_event_id=born.id) as resumed:
        updated, deleted = await resumed.events(2)
    assert (updated.event, updated.data["changes"]["status"], updated.data["session"]) == (
        "session.updated",
        "paused",
        None,
    )
    assert deleted.event == "session.deleted"


async def test_a_token_that_cannot_be_resumed_is_410(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async with stream(http, tenant) as reader:
        await call(http, tenant, "POST", "")
        token = (await reader.events(1))[0].id
    assert token is not None
    # A resume token's KeyString starts with its cluster time: Timestamp(1, 1) is long before this oplog began.
    expired = token[:2] + "0000000100000001" + token[18:]
    for bad in ("not-a-token", "82ab", expired):
        response = await http.get("/v1/events", headers={**tenant.headers, "Last-Event-ID": bad})
        body = problem(response, 410)
        assert "subscribe afresh" in body["detail"]


async def test_more_streams_than_the_key_may_hold_are_429(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async with stream(http, tenant), stream(http, tenant), stream(http, tenant):
        problem(await http.get("/v1/events", headers=tenant.headers), 429)
    for _ in range(100):  # the slots come back once the server has seen the streams end
        async with http.stream("GET", "/v1/events", headers=tenant.headers) as response:
            if response.status_code == 200:
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the streams' slots never came back")


async def test_a_session_stream_and_its_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    problem(await http.get("/v1/sessions/nope/events", headers=tenant.headers), 404)
    one = (await call(http, tenant, "POST", ""))["session_id"]
    other = (await call(http, tenant, "POST", ""))["session_id"]
    async with stream(http, tenant, f"/v1/sessions/{one}/events", types="work_log.appended") as reader:
        await call(http, tenant, "POST", f"/{other}/actions", {"action": "elsewhere"})
        await call(http, tenant, "POST", f"/{one}/pause")
        await call(http, tenant, "POST", f"/{one}/resume")
        await call(http, tenant, "POST", f"/{one}/actions", {"action": "here"})
        got = await reader.events(1)
    assert got[0].data["session_id"] == one
    assert got[0].data["entry"]["action"] == "here"
    problem(await http.get("/v1/events", headers=tenant.headers, params={"types": "nope"}), 422)


async def test_agent_type_filter(http: httpx.AsyncClient, tenant: Tenant) -> None:
    coder = (await call(http, tenant, "POST", "", {"agent_type": "coder"}))["session_id"]
    async with stream(http, tenant, agent_type="reviewer") as reader:
        await call(http, tenant, "POST", f"/{coder}/actions", {"action": "not for reviewers"})
        reviewer = (await call(http, tenant, "POST", "", {"agent_type": "reviewer"}))["session_id"]
        await call(http, tenant, "POST", f"/{reviewer}/actions", {"action": "for reviewers"})
        got = await reader.events(2)
    assert [(m.event, m.data["session_id"]) for m in got] == [
        ("session.created", reviewer),
        ("work_log.appended", reviewer),
    ]


async def test_no_event_crosses_workspaces(http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant) -> None:
    """Both workspaces hold a session of external id ``shared``; each stream hears only of its own."""
    async with stream(http, tenant) as ours, stream(http, other_tenant) as theirs:
        mine = (await call(http, tenant, "POST", "", {"external_id": "shared"}))["session_id"]
        their = (await call(http, other_tenant, "POST", "", {"external_id": "shared"}))["session_id"]
        await call(http, other_tenant, "POST", f"/{their}/actions", {"action": "theirs"})
        await call(http, other_tenant, "DELETE", f"/{their}")
        await call(http, tenant, "DELETE", f"/{mine}")
        got = await ours.events(2)
        their_events = await theirs.events(3)
    assert [(m.event, m.data["session_id"]) for m in got] == [("session.created", mine), ("session.deleted", mine)]
    assert [m.event for m in their_events] == ["session.created", "work_log.appended", "session.deleted"]
    assert all(m.data["session_id"] == their for m in their_events)
    # The same holds for a resumed stream (a change stream of its own, filtered on the server).
    async with stream(http, tenant, last_event_id=got[0].id) as resumed:
        assert [m.event for m in await resumed.events(1)] == ["session.deleted"]


async def test_a_quiet_stream_sends_comments(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant, events_settings: Settings
) -> None:
    settings = events_settings.model_copy(update={"events_heartbeat_seconds": 0.05})
    async with (
        serve_app(create_app(settings, database=database)) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
        stream(client, tenant) as reader,
    ):
        assert (await reader.message()).comment == "keep-alive"
        sid = (await call(client, tenant, "POST", ""))["session_id"]
        assert (await reader.events(1))[0].data["session_id"] == sid
        # silent again: the comments go on after an event, and after a comment
        assert [(await reader.message()).comment for _ in range(2)] == ["keep-alive", "keep-alive"]


async def test_a_consumer_that_falls_behind_is_dropped_and_resumes_without_loss(
    database: MongoDatabase, tenant: Tenant, events_settings: Settings
) -> None:
    """A client that stops reading: once the socket's buffers are full its queue (4 here) fills, the stream ends
    with an ``event: error`` saying why, and a resume from the last id it read gets the rest, each once, in order.
    The server holds at most the queue's events for it meanwhile, not everything written."""
    settings = events_settings.model_copy(update={"events_queue_size": 4})
    batches, size = 30, 15
    total = 1 + batches * size  # the session's created and its entries
    note = "x" * 60_000  # about 60 kB an event (the data limit is 64 KiB): far more than loopback buffers hold
    async with (
        serve_app(create_app(settings, database=database)) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as client,
        stream(client, tenant) as stalled,
    ):
        sid = (await call(client, tenant, "POST", ""))["session_id"]
        for batch in range(batches):
            entries = [{"id": f"{batch}-{i:03d}", "message": "m", "data": {"note": note}} for i in range(size)]
            await call(client, tenant, "POST", f"/{sid}/work-log/batch", {"entries": entries})
        received: list[Message] = []
        while (message := await stalled.message()).event != "error":
            if message.event is not None:
                received.append(message)
        assert "behind" in message.data["detail"]
        with pytest.raises(StopAsyncIteration):  # and the stream ends there
            await stalled.message()
        assert 0 < len(received) < total
        rest: list[Message] = []
        for _ in range(total):  # as a client does: resume from the last id until caught up (each catch-up may be
            async with stream(client, tenant, last_event_id=[*received, *rest][-1].id) as resumed:  # dropped too)
                while len(received) + len(rest) < total:
                    message = await resumed.message()
                    if message.event == "error":
                        break
                    if message.event is not None:
                        rest.append(message)
            if len(received) + len(rest) == total:
                break
    ids = [m.data["entry"]["id"] for m in [*received, *rest] if m.event == "work_log.appended"]
    assert ids == [f"{batch}-{i:03d}" for batch in range(batches) for i in range(size)]  # no gap or duplicate, in order
    assert len({m.id for m in [*received, *rest]}) == total


async def test_streams_are_counted_in_the_metrics(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """``handoff_event_subscribers`` counts the open streams and ``handoff_events_streamed_total`` each event sent,
    by type, as the routes stream them (issue 17)."""
    before = parse((await http.get("/metrics")).text)
    async with stream(http, tenant) as one, stream(http, tenant) as two:
        sid = (await call(http, tenant, "POST", ""))["session_id"]
        await call(http, tenant, "POST", f"/{sid}/actions", {"action": "counted"})
        await one.events(2)
        await two.events(2)
        during = parse((await http.get("/metrics")).text)
    assert value(during, "handoff_event_subscribers") - value(before, "handoff_event_subscribers") == 2
    for kind in ("session.created", "work_log.appended"):
        sent = value(during, "handoff_events_streamed_total", type=kind)
        assert sent - value(before, "handoff_events_streamed_total", type=kind) == 2  # once to each stream


async def test_no_event_crosses_workspaces_with_colliding_session_ids(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, events_settings: Settings, tmp_path: Path
) -> None:
    """Both workspaces hold a session of the *same id* (imported, as a move between systems does): neither stream,
    live or resumed, carries the other workspace's events of it, its ``session.deleted`` included."""
    rows = tmp_path / "sessions.jsonl"
    rows.write_text(json.dumps({"session_id": "ses_shared", "status": "active", "started_at": "2026-12-01T10:00:00Z"}))

    async def import_into(owner: Tenant) -> None:
        result = await bulk.import_files([rows], workspace=owner.workspace.slug, settings=events_settings, workers=0)
        assert result.imported == 1, result

    async with stream(http, tenant) as ours, stream(http, other_tenant) as theirs:
        primer = await call(http, tenant, "POST", "")
        start = (await ours.events(1))[0]  # a position before everything below
        await import_into(other_tenant)
        await call(http, other_tenant, "POST", "/ses_shared/actions", {"action": "theirs"})
        await call(http, other_tenant, "DELETE", "/ses_shared")
        their_events = await theirs.events(3)
        await import_into(tenant)
        await call(http, tenant, "DELETE", "/ses_shared")
        got = await ours.events(2)
    assert start.data["session_id"] == primer["session_id"]
    assert [m.event for m in their_events] == ["session.created", "work_log.appended", "session.deleted"]
    assert their_events[0].data["session"]["workspace_id"] == other_tenant.workspace.workspace_id
    async with stream(http, tenant, last_event_id=start.id) as resumed:  # a change stream filtered on the server
        replayed = await resumed.events(2)
    for received in (got, replayed):
        assert [(m.event, m.data["session_id"]) for m in received] == [
            ("session.created", "ses_shared"),
            ("session.deleted", "ses_shared"),
        ]
        assert received[0].data["session"]["workspace_id"] == tenant.workspace.workspace_id


async def test_each_event_reaches_the_streams_of_its_session_and_of_its_workspace(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The hub offers an event to the streams of its session and those of the whole workspace only; each gets it
    once, with the same id and bytes (encoded once for all of them)."""
    one = (await call(http, tenant, "POST", ""))["session_id"]
    other = (await call(http, tenant, "POST", ""))["session_id"]
    async with (
        stream(http, tenant, f"/v1/sessions/{one}/events") as mine,
        stream(http, tenant, f"/v1/sessions/{other}/events") as elsewhere,
        stream(http, tenant) as everything,
    ):
        await call(http, tenant, "POST", f"/{one}/actions", {"action": "here"})
        await call(http, tenant, "POST", f"/{other}/actions", {"action": "there"})
        (here,) = await mine.events(1)
        (there,) = await elsewhere.events(1)
        both = await everything.events(2)
    assert (here.data["session_id"], here.data["entry"]["action"]) == (one, "here")
    assert (there.data["session_id"], there.data["entry"]["action"]) == (other, "there")
    assert [(m.id, m.data) for m in both] == [(here.id, here.data), (there.id, there.data)]


async def test_a_shutdown_ends_streams_with_the_retry_hint(
    database: MongoDatabase, tenant: Tenant, events_settings: Settings
) -> None:
    """When the server begins to shut down, the hub ends every stream through its queue, live and resumed alike: a
    ``retry:`` hint, not an ``event: error``, then the end of the body; a stream asked for after that ends the same
    way at once."""
    app = create_app(events_settings, database=database)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        async with stream(client, tenant) as live:
            await call(client, tenant, "POST", "")
            (created,) = await live.events(1)
            async with stream(client, tenant, last_event_id=created.id) as resumed:
                app.state.shutdown.set()  # what SIGTERM sets first (handoff.ops.shutdown)
                ends = [await live.message(), await resumed.message()]
                for reader in (live, resumed):
                    with pytest.raises(StopAsyncIteration):
                        await reader.message()
        async with stream(client, tenant) as late:
            ends.append(await late.message())
            with pytest.raises(StopAsyncIteration):
                await late.message()
    for end in ends:
        assert (end.event, end.comment, end.retry) == (None, "server restarting", str(RETRY_AFTER_SHUTDOWN_MS))
