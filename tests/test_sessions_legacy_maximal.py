"""A session stored before the paged log at the largest MongoDB let it grow: ~60,000 entries, near 16 MiB.

One migration is one transaction (``sessions.migration``): the old document read, deleted, and the new one with
its pages (the whole log again, ~12 MiB) inserted. A transaction that large must still fit MongoDB's limits
(``transactionLifetimeLimitSeconds``, 60 s by default; its oplog entries are split past 16 MiB since 4.2) on a
loaded host, and the session must answer every route after it as it did before. The document is built as the
other legacy tests build theirs (``test_sessions_legacy.make_legacy`` of a session made through the API), then its
log grown to that size in the entries' own shape.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from litestar import Litestar

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import migration, misses
from handoff.sessions.limits import stored_size
from tests.api import Api, ok
from tests.test_sessions_legacy import READS, answers, build, make_legacy

MIB = 1024 * 1024
ENTRIES = 60_000
#: An entry's stored size, about (its message padded to it): the document comes to ~15.5 MiB with the copies.
ENTRY_BYTES = 260
NOTABLE = ("checkpoint", "decision", "error")


@pytest.fixture(scope="module")
def settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    """The default page bounds (500 entries, 256 KiB): the pages a real service would write."""
    return Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"))


@pytest.fixture(scope="module")
def app(settings: Settings, database: MongoDatabase) -> Litestar:
    return create_app(settings, database=database)


def _type(n: int) -> str:
    """About one entry in ten notable (as a long agent log goes), so the copies fit beside the log."""
    if n % 20 == 1:
        return "checkpoint"
    if n % 50 == 7:
        return "error"
    if n % 30 == 11:
        return "decision"
    return "info" if n % 7 else "warning"


async def _maximal_legacy(api: Api, database: MongoDatabase) -> tuple[str, dict[str, Any]]:
    """A legacy session (artifacts included) whose work log holds :data:`ENTRIES` entries of ~200 bytes."""
    sid = await build(api, entries=6, artifacts=5)
    legacy = await make_legacy(database, sid)
    first = legacy["work_log"][0]
    log = []
    for n in range(ENTRIES):
        entry = {**first, "id": f"e{n}", "type": _type(n), "timestamp": first["timestamp"] + timedelta(milliseconds=n)}
        entry["message"] = f"m {n} " + "x" * max(0, ENTRY_BYTES - stored_size({**entry, "message": f"m {n} "}))
        log.append(entry)
    notable = [entry for entry in log if entry["type"] in NOTABLE]
    legacy |= {
        "work_log": log,
        "recent_entries": log[-20:],
        "notable_entries": notable,
        "action_count": len(log),
        "checkpoint_count": sum(entry["type"] == "checkpoint" for entry in log),
        "error_count": sum(entry["type"] == "error" for entry in log),
        "last_checkpoint": next(entry for entry in reversed(log) if entry["type"] == "checkpoint"),
        "payload_bytes": sum(stored_size(entry) for entry in (*log, *legacy["artifacts"], *notable)),
    }
    await database["sessions"].replace_one({"_id": legacy["_id"]}, legacy)
    return sid, legacy


async def test_a_legacy_session_near_16_mib_is_migrated_by_handoff_migrate_and_answers_as_before(
    api: Api, database: MongoDatabase, settings: Settings
) -> None:
    sid, legacy = await _maximal_legacy(api, database)
    size = len(bson.encode(legacy))
    before = await answers(api, sid)

    migrated = await migration.migrate_workspaces(bounds=misses.page_bounds(settings))

    assert 15 * MIB < size < 16 * MIB
    assert migrated == 1
    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert doc["_id"] == f"{doc['workspace_id']}/{sid}"
    pages = await database["log_pages"].find({"session_id": sid}).sort("no", 1).to_list(None)
    assert doc["pages_version"] == len(pages) > ENTRIES // 500
    stored = [entry["id"] for page in pages if page["kind"] == "work_log" for entry in page["entries"]]
    assert [*stored, *(entry["id"] for entry in doc["work_log"])] == [f"e{n}" for n in range(ENTRIES)]
    assert await answers(api, sid) == before


async def test_the_first_write_to_a_legacy_session_near_16_mib_migrates_it_and_every_route_answers(
    api: Api, database: MongoDatabase
) -> None:
    sid, legacy = await _maximal_legacy(api, database)
    before = await answers(api, sid)

    appended = await api.post(sid, "work-log", {"id": "late", "message": "after the upgrade", "type": "error"}, 201)

    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert doc["migrated"] is True
    pages = await database["log_pages"].find({"session_id": sid}).to_list(None)
    entries = [*doc["work_log"], *doc["artifacts"], *(entry for page in pages for entry in page["entries"])]
    assert doc["payload_bytes"] == sum(stored_size(entry) for entry in entries)
    after = await answers(api, sid)
    assert after[0]["action_count"] == ENTRIES + 1
    # What the new last entry does not reach: the oldest thousand, checkpoints, a range, an id prefix (their items;
    # the work log's totals grew by one), an entry, the artifacts.
    for n in (1, 2, 4, 5):
        assert after[n]["items"] == before[n]["items"], READS[n]
    assert after[6] == before[6]
    assert after[8:11] == before[8:11]
    last = ok(await api.call("GET", f"/{sid}/work-log", params={"order": "desc", "limit": 2}))
    assert [item["id"] for item in last["items"]] == ["late", f"e{ENTRIES - 1}"]
    assert appended["id"] == "late"
    assert len(legacy["work_log"]) == ENTRIES
