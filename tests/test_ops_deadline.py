"""The request deadline (``HANDOFF_REQUEST_TIMEOUT_SECONDS``): a frozen primary costs a client at most the deadline,
then a 503 with ``Retry-After``; once the server thaws the service recovers by itself and nothing acknowledged
is lost. Routes that stream opt out.

The frozen server is a mongod of this module's own (SIGSTOP on the shared one would stall every other test);
the app runs in-process on it with a two-second deadline. The client's own timeout is the deadline plus a
margin, so a service that answered later than its deadline fails the test with a ``ReadTimeout``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, get

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoClient, MongoDatabase, create_client, init_database
from handoff.errors import Unavailable, handle_exception
from handoff.localdb import MongodProcess, start_mongod
from handoff.mcp.backend import ServiceBackend
from handoff.ops import NO_DEADLINE
from handoff.ops.deadline import DeadlineMiddleware
from handoff.workspaces.schemas import Principal
from tests.api import ok, problem
from tests.factories import Tenant, make_tenant
from tests.inprocess import in_process
from tests.test_ops_metrics import Samples, scrape

DEADLINE_SECONDS = 2.0
MARGIN_SECONDS = 3.0
RECOVERY_ATTEMPTS = 60


@pytest.fixture(scope="module")
def own_mongod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongodProcess]:
    server = start_mongod(Path(tmp_path_factory.mktemp("frozen")))
    yield server
    os.kill(server.pid, signal.SIGCONT)  # whatever a failed test left it in
    server.stop()


@pytest.fixture(scope="module")
async def own_database(own_mongod: MongodProcess) -> AsyncIterator[MongoDatabase]:
    client = create_client(own_mongod.url, Settings(mongodb_url=own_mongod.url))
    try:
        yield await init_database(client, "deadline")
    finally:
        await client.close()


@pytest.fixture
async def frozen_client(own_mongod: MongodProcess, own_database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    await own_database.client.drop_database(own_database.name)
    database = await init_database(own_database.client, own_database.name)
    settings = Settings(
        mongodb_url=own_mongod.url,
        database=database.name,
        data_dir=Path("/nonexistent"),
        request_timeout_seconds=DEADLINE_SECONDS,
    )
    async with in_process(create_app(settings, database=database)) as http:
        http.timeout = httpx.Timeout(DEADLINE_SECONDS + MARGIN_SECONDS)
        yield http


def database_errors(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "handoff_mongodb_errors_total")


async def append(http: httpx.AsyncClient, tenant: Tenant, session_id: str, entry_id: str) -> httpx.Response:
    entry = {"message": f"entry {entry_id}", "id": entry_id}
    return await http.post(f"/v1/sessions/{session_id}/work-log", json=entry, headers=tenant.headers)


async def test_a_frozen_primary_gives_503_within_the_deadline_then_the_service_recovers(
    own_mongod: MongodProcess, frozen_client: httpx.AsyncClient
) -> None:
    http = frozen_client
    tenant = await make_tenant("frozen")
    session_id = ok(await http.post("/v1/sessions", json={}, headers=tenant.headers), 201)["session_id"]
    acknowledged = set()
    for n in range(5):
        ok(await append(http, tenant, session_id, f"before-{n}"), 201)
        acknowledged.add(f"before-{n}")

    errors_before = database_errors(await scrape(http))
    os.kill(own_mongod.pid, signal.SIGSTOP)
    try:
        frozen = await append(http, tenant, session_id, "during")  # a ReadTimeout here: past the deadline
        body = problem(frozen, 503)
        assert int(frozen.headers["Retry-After"]) > 0
        assert "database" in body["detail"].lower()
        read = await http.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
        problem(read, 503)
    finally:
        os.kill(own_mongod.pid, signal.SIGCONT)

    assert database_errors(await scrape(http)) - errors_before == 2  # both 503s, by the driver's error class

    # No restart, no reconnect by hand: the same app and client recover, and the retried append lands once.
    for _ in range(RECOVERY_ATTEMPTS):
        retried = await append(http, tenant, session_id, "during")
        if retried.status_code != 503:
            break
        await asyncio.sleep(0.5)
    # 201, or 200 when the write the 503 answered had reached the server before it froze and was applied on thaw
    assert retried.status_code in {200, 201}, retried.text
    assert retried.json()["id"] == "during"
    acknowledged.add("during")
    log = ok(await http.get(f"/v1/sessions/{session_id}/work-log", headers=tenant.headers))
    assert {entry["id"] for entry in log["items"]} == acknowledged
    assert log["total"] == len(acknowledged)  # the write the 503 answered may have landed: it is not doubled
    assert ok(await http.get(f"/v1/sessions/{session_id}", headers=tenant.headers))["action_count"] == 6


# Streams opt out ------------------------------------------------------------------------------------------------


def slow_ping_app(client: MongoClient) -> Litestar:
    """Two routes that wait past the deadline and then ask the database: one under it, one opted out."""

    async def ping_late() -> dict[str, Any]:
        await asyncio.sleep(0.5)
        reply = await client.admin.command("ping")
        return {"ok": reply["ok"]}

    @get("/bounded")
    async def bounded() -> dict[str, Any]:
        return await ping_late()

    @get("/stream", opt={NO_DEADLINE: True})
    async def stream() -> dict[str, Any]:
        return await ping_late()

    return Litestar(
        route_handlers=[bounded, stream],
        middleware=[DeadlineMiddleware(0.25)],
        exception_handlers={Exception: handle_exception},
    )


async def test_a_route_that_streams_is_not_cut_by_the_deadline(mongo_client: MongoClient) -> None:
    transport = httpx.ASGITransport(app=slow_ping_app(mongo_client))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        problem(await http.get("/bounded"), 503)  # the deadline ran out while it slept: 503, not a late answer
        assert ok(await http.get("/stream"))["ok"] == 1


async def test_an_mcp_tool_call_on_a_frozen_primary_is_unavailable_within_the_deadline(
    own_mongod: MongodProcess, frozen_client: httpx.AsyncClient
) -> None:
    """MCP tools run in the session manager's tasks, outside the deadline middleware: the backend applies it."""
    tenant = await make_tenant("frozen-mcp")
    settings = Settings(mongodb_url=own_mongod.url, request_timeout_seconds=DEADLINE_SECONDS)
    backend = ServiceBackend(Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id), settings)
    session = await backend.create_session(agent_type="mcp")
    os.kill(own_mongod.pid, signal.SIGSTOP)
    try:
        with pytest.raises(Unavailable):  # a TimeoutError here instead: past the deadline
            await asyncio.wait_for(
                backend.log_work(session.session_id, "during", id="during"), DEADLINE_SECONDS + MARGIN_SECONDS
            )
    finally:
        os.kill(own_mongod.pid, signal.SIGCONT)
