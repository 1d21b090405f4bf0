"""Group commit (``sessions/group_commit.py``): concurrent appends share bulk writes, and every one of them still
gets its own exact answer: 201 once per stored entry, 200 for an id stored before, nothing lost or doubled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from pymongo import monitoring

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import group_commit
from tests.api import Api, ok
from tests.factories import Tenant
from tests.listening import StartedCommands, listened_database


class UpdateCommands(StartedCommands):
    """How many ``update`` commands reached each collection, and how many updates they carried."""

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            self.commands[event.command["update"]] += 1
            self.updates[event.command["update"]] += len(event.command.get("updates", []))


@pytest.fixture(scope="module")
def seen() -> UpdateCommands:
    return UpdateCommands()


@pytest.fixture(scope="module")
async def database(mongod: MongodProcess, seen: UpdateCommands) -> AsyncIterator[MongoDatabase]:
    """This module's database, reached through a client that counts update commands."""
    async with listened_database(mongod.url, seen, "t_group_commit") as database:
        yield database


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


async def test_concurrent_appends_share_bulks_and_each_is_answered_exactly(
    client: httpx.AsyncClient, tenant: Tenant, seen: UpdateCommands
) -> None:
    api = Api(client, tenant)
    sessions = [(await api.create())["session_id"] for _ in range(4)]
    await api.post(sessions[0], "work-log", {"id": "old", "message": "stored before"}, 201)

    async def append(n: int) -> httpx.Response:
        sid = sessions[n % len(sessions)]
        # every 10th request retries the entry stored before; the others are new
        body = {"id": "old", "message": "stored before"} if n % 10 == 0 else {"id": f"e{n}", "message": f"m{n}"}
        return await api.call("POST", f"/{sessions[0] if n % 10 == 0 else sid}/work-log", body)

    seen.commands.clear()
    seen.updates.clear()
    responses = await asyncio.gather(*(append(n) for n in range(120)))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 108, 200: 12}, statuses
    assert all(response.json()["id"] == "old" for response in responses if response.status_code == 200)
    assert seen.commands["sessions"] < seen.updates["sessions"], "no two appends shared a bulk"
    for n, sid in enumerate(sessions):
        page = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000}))
        ids = [entry["id"] for entry in page["items"]]
        expected = {f"e{k}" for k in range(120) if k % 10 and k % len(sessions) == n} | ({"old"} if n == 0 else set())
        assert sorted(ids) == sorted(expected)
        assert page["total"] == len(ids) == (await api.get(sid))["action_count"]


async def test_each_update_of_a_bulk_gets_its_own_answer_and_a_miss_never_inserts(
    database: MongoDatabase, seen: UpdateCommands
) -> None:
    """Against the real server: matches, misses on an existing document, misses on a missing one, in shared
    bulks; every answer exact, nothing inserted."""
    collection = database["group_commit_probe"]
    await collection.insert_many([{"_id": f"d{n}", "open": n % 2 == 0, "n": 0} for n in range(8)])
    commit = group_commit.GroupCommit(lambda: collection, max_in_flight=1)  # the rest wait, then share a bulk
    guards = [{"_id": f"d{n}", "open": True} for n in range(8)] + [{"_id": "absent", "open": True}]
    answers = await asyncio.gather(*(commit.update(guard, {"$inc": {"n": 1}}) for guard in guards * 3))
    assert answers == ([n % 2 == 0 for n in range(8)] + [False]) * 3
    assert seen.commands["group_commit_probe"] < seen.updates["group_commit_probe"] == 27  # bulks were shared
    stored = {doc["_id"]: doc["n"] async for doc in collection.find({})}
    assert stored == {f"d{n}": 3 if n % 2 == 0 else 0 for n in range(8)}  # no document inserted by a miss
    with pytest.raises(ValueError, match="_id"):
        await commit.update({"open": True}, {"$inc": {"n": 1}})
