"""Concurrent writers on one session (api.md: "Guarded in the update filter, so two racing requests cannot both
win"; appends are atomic and idempotent): many clients at once lose nothing, store nothing twice, and counters
stay exact.

Every request runs through the app in-process on this event loop, interleaving at each database round trip, so
the updates really race at the server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.workspaces import service as workspaces
from tests.factories import Tenant

CLIENTS = 4


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    """One app for the module (building one costs far more than a test here)."""
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


@pytest.fixture
async def agents(client: httpx.AsyncClient, app: Litestar, tenant: Tenant) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Several HTTP clients of one workspace, each with an API key of its own (``client`` holds the lifespan)."""
    async with AsyncExitStack() as stack:
        found: list[httpx.AsyncClient] = []
        for number in range(CLIENTS):
            _, secret = await workspaces.create_api_key(tenant.workspace.slug, name=f"agent-{number}")
            found.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app),
                        base_url="http://testserver",
                        headers={"Authorization": f"Bearer {secret}"},
                    )
                )
            )
        yield found


async def _session(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.post("/v1/sessions", json={}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    sid: str = response.json()["session_id"]
    return sid


async def _stored(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    doc = await database["sessions"].find_one({"session_id": session_id}, {"_id": 0})
    assert doc is not None
    return doc


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def test_200_concurrent_appends_from_several_clients_store_200_entries_with_exact_counters(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    types = ["info", "checkpoint", "error", "warning", "success", "decision", "checkpoint", "error"]

    def request(number: int) -> Any:
        agent = agents[number % CLIENTS]
        if number % 5 == 0:
            return agent.post(f"/v1/sessions/{sid}/actions", json={"action": f"a{number}"})
        entry_type = types[number % len(types)]
        return agent.post(f"/v1/sessions/{sid}/work-log", json={"message": f"m{number}", "type": entry_type})

    responses = await asyncio.gather(*(request(number) for number in range(200)))

    assert _statuses(responses) == {201: 200}
    stored = await _stored(database, sid)
    entries = stored["work_log"]
    assert len(entries) == 200
    assert len({entry["id"] for entry in entries}) == 200
    assert sorted(entry.get("action") or entry["message"] for entry in entries) == sorted(
        f"a{n}" if n % 5 == 0 else f"m{n}" for n in range(200)
    )
    typed = Counter(entry.get("type") for entry in entries)
    assert stored["action_count"] == 200
    assert stored["checkpoint_count"] == typed["checkpoint"]
    assert stored["error_count"] == typed["error"]
    assert typed["checkpoint"] > 0
    assert typed["error"] > 0
    assert stored["last_checkpoint"] == [entry for entry in entries if entry.get("type") == "checkpoint"][-1]
    session = (await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)).json()
    assert (session["action_count"], session["checkpoint_count"], session["error_count"]) == (
        200,
        typed["checkpoint"],
        typed["error"],
    )
    assert (await client.get(f"/v1/sessions/{sid}/work-log?limit=1", headers=tenant.headers)).json()["total"] == 200


async def test_concurrent_retries_of_one_append_store_it_once(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    body = {"message": "deploy", "type": "checkpoint", "data": {"v": 2}, "id": "deploy-1"}

    responses = await asyncio.gather(
        *(agents[n % CLIENTS].post(f"/v1/sessions/{sid}/work-log", json=body) for n in range(20))
    )

    assert _statuses(responses) == {201: 1, 200: 19}
    assert len({response.text for response in responses}) == 1
    stored = await _stored(database, sid)
    assert [entry["id"] for entry in stored["work_log"]] == ["deploy-1"]
    assert (stored["action_count"], stored["checkpoint_count"]) == (1, 1)


async def test_concurrent_retries_of_one_artifact_store_it_once(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    body = {"path": "a.py", "action": "created", "id": "art-1"}

    responses = await asyncio.gather(
        *(agents[n % CLIENTS].post(f"/v1/sessions/{sid}/artifacts", json=body) for n in range(12))
    )

    assert _statuses(responses) == {201: 1, 200: 11}
    stored = await _stored(database, sid)
    assert (len(stored["artifacts"]), stored["artifact_count"]) == (1, 1)


async def test_concurrent_overlapping_batches_store_each_id_once(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    batches = [[{"message": f"m{i}", "id": f"e{i}"} for i in range(start, start + 20)] for start in range(0, 100, 10)]

    responses = await asyncio.gather(
        *(
            agents[n % CLIENTS].post(f"/v1/sessions/{sid}/work-log/batch", json={"entries": batch})
            for n, batch in enumerate(batches)
        )
    )

    assert _statuses(responses) == {201: len(batches)}
    results = [response.json() for response in responses]
    assert sum(result["appended"] for result in results) == 110
    assert sum(result["duplicates"] for result in results) == 200 - 110
    stored = await _stored(database, sid)
    assert sorted(entry["id"] for entry in stored["work_log"]) == sorted(f"e{i}" for i in range(110))
    assert stored["action_count"] == 110


async def test_10_concurrent_replays_of_one_session_get_10_distinct_ids(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)

    responses = await asyncio.gather(*(agents[n % CLIENTS].post(f"/v1/sessions/{sid}/replay") for n in range(10)))

    assert _statuses(responses) == {201: 10}
    ids = {response.json()["session_id"] for response in responses}
    assert len(ids) == 10
    assert all(replay_id.startswith("ses_replay_") for replay_id in ids)
    assert await database["sessions"].count_documents({"replayed_from": sid}) == 10


async def test_complete_and_fail_racing_one_wins_the_other_gets_409(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sessions = [await _session(client, tenant) for _ in range(10)]

    for sid in sessions:
        completed, failed = await asyncio.gather(
            agents[0].post(f"/v1/sessions/{sid}/complete", json={"summary": "done"}),
            agents[1].post(f"/v1/sessions/{sid}/fail", json={"reason": "broken"}),
        )

        assert sorted([completed.status_code, failed.status_code]) == [200, 409]
        winner, loser = (completed, failed) if completed.status_code == 200 else (failed, completed)
        assert "ended" in loser.json()["detail"]
        stored = await _stored(database, sid)
        assert stored["status"] == winner.json()["status"]
        assert stored["final_summary"] == ("done" if winner is completed else "broken")


async def test_appends_racing_an_end_are_either_stored_and_counted_or_refused(
    agents: list[httpx.AsyncClient], client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    appends = [agents[n % CLIENTS].post(f"/v1/sessions/{sid}/actions", json={"action": f"a{n}"}) for n in range(40)]

    results = await asyncio.gather(
        *appends[:20], client.post(f"/v1/sessions/{sid}/complete", headers=tenant.headers), *appends[20:]
    )
    ended, responses = results[20], results[:20] + results[21:]

    assert ended.status_code == 200
    statuses = _statuses(responses)
    assert set(statuses) <= {201, 409}
    stored = await _stored(database, sid)
    assert len(stored["work_log"]) == stored["action_count"] == statuses[201]


async def test_racing_creates_with_one_external_id_make_one_session(
    agents: list[httpx.AsyncClient], database: MongoDatabase
) -> None:
    responses = await asyncio.gather(
        *(agents[n % CLIENTS].post("/v1/sessions", json={"external_id": "thread-race"}) for n in range(10))
    )

    assert _statuses(responses) == {201: 1, 200: 9}
    assert len({response.json()["session_id"] for response in responses}) == 1
    assert await database["sessions"].count_documents({"external_id": "thread-race"}) == 1


async def test_racing_creates_with_one_idempotency_key_make_one_session(
    agents: list[httpx.AsyncClient], database: MongoDatabase
) -> None:
    responses = await asyncio.gather(
        *(
            agents[n % CLIENTS].post("/v1/sessions", json={"agent_type": "a"}, headers={"Idempotency-Key": "race"})
            for n in range(10)
        )
    )

    assert _statuses(responses) == {201: 1, 200: 9}
    assert len({response.json()["session_id"] for response in responses}) == 1
    assert await database["sessions"].count_documents({}) == 1
