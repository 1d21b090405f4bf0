"""Every command the service sends to the collections that shard (``sessions``, ``log_pages``, ``log_notables``,
``log_newest_notables``) names its workspace.

The shard key of each is ``{workspace_id, session_id}``; a query without ``workspace_id`` would be sent to every
shard of a sharded cluster. A PyMongo ``CommandListener`` records each command of a run through every kind of
API flow (creation, appends that seal pages, every read, removals, transitions, replay, handoff, analytics,
migration of an old-layout session, deletion) and the test fails on any filter that lacks the prefix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar
from pymongo import monitoring

from handoff.analytics.rollup import worker as rollup
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.api import Api, ok
from tests.factories import make_tenant, small_pages_app
from tests.inprocess import in_process
from tests.listening import StartedCommands, listened_database
from tests.test_sessions_legacy import make_legacy

SHARDED = frozenset({"sessions", "log_pages", "log_notables", "log_newest_notables"})
#: Where each command keeps the filters it applies (insert documents carry their workspace themselves).
FILTERS = {
    "find": lambda command: [command.get("filter", {})],
    "update": lambda command: [update["q"] for update in command["updates"]],
    "delete": lambda command: [delete["q"] for delete in command["deletes"]],
    "findAndModify": lambda command: [command.get("query", {})],
    "count": lambda command: [command.get("query", {})],
    "aggregate": lambda command: _pipeline_matches(command["pipeline"]),
    "insert": lambda command: list(command["documents"]),
}


def _pipeline_matches(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first ``$match`` of a pipeline and of each ``$lookup`` sub-pipeline into a sharded collection."""
    found: list[dict[str, Any]] = [pipeline[0].get("$match", {}) if pipeline else {}]
    for stage in pipeline:
        lookup = stage.get("$lookup") or stage.get("$unionWith")
        if isinstance(lookup, dict) and lookup.get("from", lookup.get("coll")) in SHARDED:
            found += _pipeline_matches(lookup.get("pipeline", []))
    return found


class Recorder(StartedCommands):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.paused = False

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Leave out the test's own commands (rewriting a session into the old layout)."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.paused:
            return
        name = event.command_name
        collection = event.command.get(name)
        if name in FILTERS and collection in SHARDED:
            self.commands.append((name, dict(event.command)))


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
async def database(mongod: MongodProcess, recorder: Recorder) -> AsyncIterator[MongoDatabase]:
    """This module's database, reached through a client that records commands."""
    async with listened_database(mongod.url, recorder, "t_sharding") as database:
        yield database


app = small_pages_app(scope="function")


@pytest.fixture
def recorded(recorder: Recorder) -> Recorder:
    recorder.commands.clear()
    return recorder


async def test_every_command_on_sessions_and_pages_carries_the_workspace(
    app: Litestar, database: MongoDatabase, recorded: Recorder
) -> None:
    tenant = await make_tenant("shards")
    async with in_process(app) as client:
        api = Api(client, tenant)
        await _every_flow(api, client, tenant.headers, database, recorded)

    assert len(recorded.commands) > 200
    missing = [
        (name, command.get(name), where)
        for name, command in recorded.commands
        for where in FILTERS[name](command)
        if "workspace_id" not in where
    ]
    assert missing == []
    kinds = {name for name, _ in recorded.commands}
    assert {"find", "update", "delete", "aggregate", "insert"} <= kinds


async def _every_flow(
    api: Api, client: httpx.AsyncClient, headers: dict[str, str], database: MongoDatabase, recorder: Recorder
) -> None:
    plan = {"slug": "p", "title": "P", "phases": [{"name": "build", "tasks": [{"name": "t"}]}]}
    assert (await client.post("/v1/plans", json=plan, headers=headers)).status_code == 201
    sid = (await api.create(plan="p", agent_type="coder", external_id="ext-1"))["session_id"]
    assert (await api.call("POST", "", {"external_id": "ext-1"})).status_code == 200
    for n in range(30):
        await api.post(
            sid, "work-log", {"id": f"e{n}", "message": f"m{n}", "type": "checkpoint" if n % 3 else "error"}, 201
        )
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"b{n}"} for n in range(9)]}, 201)
    await api.post(sid, "actions", {"id": "e1", "action": "again"}, 422)
    await api.post(sid, "work-log", {"id": "e1", "message": "m1", "type": "checkpoint"}, 200)
    for n in range(10):
        await api.post(sid, "artifacts", {"id": f"f{n}", "path": f"{n}.py", "action": "created"}, 201)
    await rollup.catch_up(api.tenant.workspace.workspace_id, batch_size=2)  # the artifacts rollup's pass
    for path, params in [
        ("", {}),
        ("/work-log", {"limit": 1000}),
        ("/work-log", {"type": "error", "offset": 3}),
        ("/work-log", {"order": "desc", "after": "e2", "before": "e20"}),
        ("/work-log", {"id_prefix": "e1", "after": "e3"}),
        ("/work-log/e5", {}),
        ("/recent-actions", {}),
        ("/artifacts", {"action": "created", "offset": 2}),
        ("/artifacts", {"has_blob": "true"}),
        ("/artifacts/f1", {}),
        ("/handoff-context", {}),
        ("/replay-context", {}),
        ("/mcp-context", {}),
    ]:
        ok(await api.call("GET", f"/{sid}{path}", params=params))
    assert (await api.call("DELETE", f"/{sid}/work-log/e2")).status_code == 204
    assert (await api.call("DELETE", f"/{sid}/work-log/e28")).status_code == 204
    assert (await api.call("POST", f"/{sid}/work-log/pop")).status_code == 200
    assert (await api.call("POST", f"/{sid}/artifacts/pop")).status_code == 200
    await api.post(sid, "touch", None, 200)
    assert (await api.call("PATCH", f"/{sid}/context", {"k": "v"})).status_code == 200
    await api.post(sid, "handoff", {"summary": "s"}, 200)
    await api.post(sid, "resume", None, 200)
    await api.post(sid, "pause", None, 200)
    replay = (await api.post(sid, "replay", None, 201))["session_id"]
    await rollup.catch_up(api.tenant.workspace.workspace_id)  # after the pop: the route reads none dirty, then one
    await api.post(replay, "artifacts", {"id": "late", "path": "late.py"}, 201)
    for route in ("summary", "agents", "activity", "artifacts", "errors", "stale", "handoffs", f"lineage/{replay}"):
        assert (await client.get(f"/v1/analytics/{route}", headers=headers)).status_code == 200
    assert (await client.get("/v1/plans/p/sessions", headers=headers)).status_code == 200
    assert (await client.get("/v1/sessions", params={"status": "paused"}, headers=headers)).status_code == 200
    assert (await api.call("DELETE", f"/{sid}/artifacts")).status_code == 204
    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204
    await api.post(sid, "complete", {}, 200)
    assert (await api.call("DELETE", f"/{sid}")).status_code == 204
    old = (await api.create())["session_id"]
    for n in range(9):
        await api.post(old, "work-log", {"message": f"m{n}"}, 201)
    with recorder.pause():
        await make_legacy(database, old)
    await api.post(old, "work-log", {"message": "after"}, 201)


def _winning_plans(explained: Any) -> Iterator[Any]:
    """Every plan MongoDB chose in an explain answer (an aggregation nests one per stage that reads)."""
    if isinstance(explained, dict):
        for key, value in explained.items():
            if key == "winningPlan":
                yield value
            else:
                yield from _winning_plans(value)
    elif isinstance(explained, list):
        for value in explained:
            yield from _winning_plans(value)


#: What a command sent by the service must not need: a scan of a whole collection or an in-memory sort.
_SLOW_STAGES = ('"COLLSCAN"', '"stage": "SORT"')


async def test_every_query_on_sessions_and_pages_reads_an_index(
    app: Litestar, database: MongoDatabase, recorded: Recorder
) -> None:
    """Each query of the flows above, explained as it was sent: an index scan, never a collection scan or a
    blocking sort (the paged reads seek by position, id or filter; none walks a log)."""
    tenant = await make_tenant("explained")
    async with in_process(app) as client:
        await _every_flow(Api(client, tenant), client, tenant.headers, database, recorded)
    commands = [(name, command) for name, command in recorded.commands if name in {"find", "aggregate", "update"}]
    assert len(commands) > 150

    slow = []
    with recorded.pause():
        for name, command in commands:
            sent = {key: value for key, value in command.items() if not key.startswith(("$", "lsid", "txnNumber"))}
            sent.pop("readConcern", None)
            sent.pop("writeConcern", None)
            sent.pop("startTransaction", None)
            sent.pop("autocommit", None)
            plan = await database.command({"explain": sent, "verbosity": "queryPlanner"})
            text = json.dumps(list(_winning_plans(plan)), default=str)
            if any(stage in text for stage in _SLOW_STAGES) or ("IXSCAN" not in text and "IDHACK" not in text):
                slow.append((name, command.get(name), command.get("filter") or command.get("pipeline")))
    assert slow == []
