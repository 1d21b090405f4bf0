"""Sessions stored before the paged log (api.md: "Existing data keeps working").

Such a session is one document with an ObjectId ``_id`` holding its whole work log and artifacts, plus the copies
of the context lists (``recent_entries``, ``notable_entries``, ``context_lists``) and ``payload_bytes`` over the
arrays, and none of the paged layout's fields. The tests build a session through the API, rewrite it into exactly
that old shape, and check every read answers as before; that the first write moves it into the paged layout (new
``_id``, pages, the copies gone) and answers the same afterwards; and that ``handoff migrate`` moves them all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from click.testing import CliRunner
from pymongo.database import Database

from handoff.cli import cli
from handoff.db import MongoDatabase
from handoff.sessions import migration
from handoff.sessions.limits import stored_size
from tests.api import Api, ok
from tests.factories import small_pages_app

TYPES = ["info", "checkpoint", "info", "decision", "error", "warning"]
PAGED_FIELDS = ("pages_version", "open_bytes", "sealed", "stored_bytes", "appended", "sealed_upto", "last_removal")


app = small_pages_app()


def legacy_document(paged: dict[str, Any], pages: list[dict[str, Any]]) -> dict[str, Any]:
    """The session as the service stored it before pages: whole arrays on the document, the context lists."""
    doc = {name: value for name, value in paged.items() if name not in PAGED_FIELDS}
    doc["_id"] = ObjectId()
    for kind in ("work_log", "artifacts"):
        sealed = [entry for page in pages if page["kind"] == kind for entry in page["entries"]]
        doc[kind] = [*sealed, *paged[kind]]
    notable = [entry for entry in doc["work_log"] if entry.get("type") in ("checkpoint", "decision", "error")]
    doc["recent_entries"] = doc["work_log"][-20:]
    doc["notable_entries"] = notable
    doc["context_lists"] = True
    doc["payload_bytes"] = sum(stored_size(e) for e in (*doc["work_log"], *doc["artifacts"], *notable))
    return doc


async def make_legacy(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    """Rewrite a session built through the API into the old layout; returns the old document."""
    paged = await database["sessions"].find_one({"session_id": session_id})
    assert paged is not None
    pages = await database["log_pages"].find({"session_id": session_id}).sort("no", 1).to_list(None)
    legacy = legacy_document(paged, pages)
    await database["sessions"].delete_one({"_id": paged["_id"]})
    await database["log_pages"].delete_many({"session_id": session_id})
    await database["log_notables"].delete_many({"session_id": session_id})
    await database["sessions"].insert_one(legacy)
    return legacy


async def build(api: Api, *, entries: int = 27, artifacts: int = 9) -> str:
    sid = (await api.create(agent_type="coder", context_summary={"goal": "g"}))["session_id"]
    for n in range(entries):
        if n % 5 == 4:
            await api.post(sid, "actions", {"id": f"a{n}", "action": f"act {n}"}, 201)
        else:
            await api.post(sid, "work-log", {"id": f"e{n}", "message": f"m {n}", "type": TYPES[n % len(TYPES)]}, 201)
    for n in range(artifacts):
        action = ("created", "modified", "deleted")[n % 3]
        await api.post(sid, "artifacts", {"id": f"f{n}", "path": f"src/{n}.py", "action": action}, 201)
    return sid


READS = [
    ("", {}),
    ("/work-log", {"limit": 1000}),
    ("/work-log", {"type": "checkpoint"}),
    ("/work-log", {"order": "desc", "offset": 3, "limit": 5}),
    ("/work-log", {"after": "e6", "before": "e20"}),
    ("/work-log", {"id_prefix": "a"}),
    ("/work-log/e1", {}),
    ("/recent-actions", {"limit": 7}),
    ("/artifacts", {}),
    ("/artifacts", {"action": "created"}),
    ("/artifacts/f4", {}),
    ("/handoff-context", {}),
    ("/replay-context", {}),
    ("/mcp-context", {}),
]


async def answers(api: Api, session_id: str) -> list[Any]:
    found = []
    for path, params in READS:
        body = ok(await api.call("GET", f"/{session_id}{path}", params=params))
        if isinstance(body, dict):
            body.pop("duration", None)
            body.pop("duration_minutes", None)
        found.append(body)
    return found


async def test_an_old_layout_session_answers_every_read_as_before(api: Api, database: MongoDatabase) -> None:
    sid = await build(api)
    before = await answers(api, sid)
    legacy = await make_legacy(database, sid)
    assert len(legacy["work_log"]) == 27
    assert await database["log_pages"].count_documents({"session_id": sid}) == 0

    assert await answers(api, sid) == before
    stored = await database["sessions"].find_one({"session_id": sid})
    assert stored is not None
    assert stored["_id"] == legacy["_id"]


async def test_the_first_write_moves_it_into_the_paged_layout(api: Api, database: MongoDatabase) -> None:
    sid = await build(api)
    before = await answers(api, sid)
    await make_legacy(database, sid)

    appended = await api.post(sid, "work-log", {"id": "late", "message": "after the upgrade", "type": "error"}, 201)

    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert doc["_id"] == f"{doc['workspace_id']}/{sid}"
    assert doc["migrated"] is True
    assert not {"recent_entries", "notable_entries", "context_lists"} & set(doc)
    assert len(doc["work_log"]) < 4 + 1
    assert await database["log_pages"].count_documents({"session_id": sid}) > 4
    pages = await database["log_pages"].find({"session_id": sid}).to_list(None)
    entries = [*doc["work_log"], *doc["artifacts"], *(e for page in pages for e in page["entries"])]
    assert doc["payload_bytes"] == sum(stored_size(entry) for entry in entries)
    after = await answers(api, sid)
    assert after[0]["action_count"] == before[0]["action_count"] + 1
    assert after[1]["items"] == [*before[1]["items"], appended]
    assert after[8:11] == before[8:11]  # artifacts unchanged
    # A retry of an id stored before the migration, now in a page, is still exactly-once.
    stored = ok(await api.call("GET", f"/{sid}/work-log/e3"))
    assert await api.post(sid, "work-log", {"id": "e3", "message": "m 3", "type": TYPES[3]}, 200) == stored
    assert (await api.get(sid))["action_count"] == before[0]["action_count"] + 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "pause", None),
        ("PATCH", "context", {"k": "v"}),
        ("POST", "artifacts", {"path": "new.py"}),
        ("POST", "work-log/pop", None),
        ("DELETE", "work-log/e2", None),
        ("DELETE", "artifacts", None),
    ],
)
async def test_every_kind_of_write_migrates_and_then_applies(
    api: Api, database: MongoDatabase, method: str, path: str, body: Any
) -> None:
    sid = await build(api, entries=12, artifacts=5)
    await make_legacy(database, sid)

    response = await api.call(method, f"/{sid}/{path}", body)

    assert response.status_code in (200, 201, 204), response.text
    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert doc["_id"] == f"{doc['workspace_id']}/{sid}"
    assert await database["sessions"].count_documents({"session_id": sid}) == 1


async def test_an_old_layout_session_is_deleted_whole(api: Api, database: MongoDatabase) -> None:
    sid = await build(api, entries=8, artifacts=2)
    await make_legacy(database, sid)

    assert (await api.call("DELETE", f"/{sid}")).status_code == 204

    assert await database["sessions"].count_documents({"session_id": sid}) == 0


async def test_concurrent_first_writes_migrate_it_once_and_all_apply(api: Api, database: MongoDatabase) -> None:
    """Writes that all find the old layout at once: one migration writes the pages, the others wait for its flip."""
    sid = await build(api, entries=12, artifacts=3)
    await make_legacy(database, sid)

    responses = await asyncio.gather(
        *(api.call("POST", f"/{sid}/work-log", {"id": f"late{n}", "message": f"late {n}"}) for n in range(6))
    )

    assert [response.status_code for response in responses] == [201] * 6, [r.text for r in responses]
    assert await database["sessions"].count_documents({"session_id": sid}) == 1
    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    pages = await database["log_pages"].find({"session_id": sid, "kind": "work_log"}).sort("no", 1).to_list(None)
    log = [entry["id"] for page in pages for entry in page["entries"]] + [e["id"] for e in doc["work_log"]]
    assert log[:12] == [f"e{n}" if n % 5 != 4 else f"a{n}" for n in range(12)]
    assert sorted(log[12:]) == [f"late{n}" for n in range(6)]
    assert "migrating" not in doc


async def test_a_migration_killed_before_its_flip_leaves_the_old_session_and_the_next_one_finishes(
    api: Api, database: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its pages went in: the session still answers from its old document, and the next migration
    (the claim let go) replaces the pages left behind rather than adding to them."""
    sid = await build(api)
    before = await answers(api, sid)
    await make_legacy(database, sid)
    entry = {"id": "late", "message": "after the upgrade"}

    async def killed(*args: Any) -> bool:
        raise ConnectionResetError("the worker died")

    monkeypatch.setattr(migration, "_flip", killed)
    failed = await api.call("POST", f"/{sid}/work-log", entry)
    left = await database["log_pages"].count_documents({"session_id": sid})
    still_old = await answers(api, sid)
    monkeypatch.undo()
    appended = await api.post(sid, "work-log", entry, 201)

    assert failed.status_code == 500  # what the client of a worker that died mid-request sees at best
    assert left > 0
    assert still_old == before
    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert doc["migrated"] is True
    assert "migrating" not in doc
    pages = await database["log_pages"].find({"session_id": sid}).to_list(None)
    assert doc["pages_version"] == len(pages) >= left
    after = await answers(api, sid)
    assert after[1]["items"] == [*before[1]["items"], appended]
    assert after[8:11] == before[8:11]


def test_handoff_migrate_moves_every_old_session(
    cli_db: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDOFF_PAGE_ENTRIES", "4")
    runner = CliRunner()
    for slug in ("acme", "globex"):
        assert runner.invoke(cli, ["workspaces", "create", slug]).exit_code == 0
    workspaces = [ws["workspace_id"] for ws in cli_db["workspaces"].find()]
    for number, workspace_id in enumerate([*workspaces, workspaces[0]]):
        log = [{"id": f"e{n}", "message": f"m{n}", "type": "info", "data": {}} for n in range(number * 5 + 3)]
        cli_db["sessions"].insert_one(
            {
                "workspace_id": workspace_id,
                "session_id": f"sess_old_{number}",
                "status": "active",
                "work_log": log,
                "artifacts": [],
                "action_count": len(log),
                "artifact_count": 0,
                "checkpoint_count": 0,
                "error_count": 0,
                "started_at": ObjectId().generation_time,
                "last_active_at": ObjectId().generation_time,
                "created_at": ObjectId().generation_time,
                "updated_at": ObjectId().generation_time,
            }
        )

    result = runner.invoke(cli, ["migrate"])
    again = runner.invoke(cli, ["migrate"])

    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-2:] == [
        "migrated 3 sessions",
        "artifacts rollup: took in 0 sessions",  # none of them has an artifact
    ]
    assert again.output.strip().splitlines()[-2:] == ["migrated 0 sessions", "artifacts rollup: took in 0 sessions"]
    for doc in cli_db["sessions"].find():
        assert doc["_id"] == f"{doc['workspace_id']}/{doc['session_id']}"
        pages = list(cli_db["log_pages"].find({"session_id": doc["session_id"]}).sort("no", 1))
        log = [entry["id"] for page in pages for entry in page["entries"]] + [e["id"] for e in doc["work_log"]]
        assert log == [f"e{n}" for n in range(doc["action_count"])]
        assert doc["pages_version"] == len(pages)
        assert doc["rollup_dirty"] is False  # the artifacts rollup took it in (handoff.analytics.rollup)
