"""The artifact append stays one update of one document: the artifacts rollup adds a field to it, never a second
write (``handoff.analytics.rollup``). Its own module: the listening client it binds the models to is closed at the
end of the test."""

from __future__ import annotations

from pathlib import Path

from pymongo import monitoring

from handoff.app import create_app
from handoff.config import Settings
from handoff.localdb import MongodProcess
from tests.api import Api
from tests.factories import make_tenant
from tests.inprocess import in_process
from tests.listening import StartedCommands, listened_database


class Writes(StartedCommands):
    """The write commands sent, with their collection."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("update", "insert", "delete", "findAndModify", "commitTransaction"):
            self.writes.append((event.command_name, str(event.command.get(event.command_name, ""))))


async def test_an_artifact_append_is_one_update_of_its_session_and_nothing_else(mongod: MongodProcess) -> None:
    writes = Writes()
    async with listened_database(mongod.url, writes, "t_rollup") as database:
        settings = Settings(
            mongodb_url=mongod.url,
            database=database.name,
            data_dir=Path("/nonexistent"),
            artifacts_rollup_interval_seconds=0,
        )
        tenant = await make_tenant("rollup-writes")
        async with in_process(create_app(settings, database=database)) as http:
            api = Api(http, tenant)
            sid = (await api.create())["session_id"]
            writes.writes.clear()
            await api.post(sid, "artifacts", {"path": "src/a.py", "action": "created"}, 201)
            assert writes.writes == [("update", "sessions")]
            stored = await database["sessions"].find_one({"session_id": sid})
            assert stored is not None
    assert stored["rollup_dirty"] is True
