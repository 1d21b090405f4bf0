"""The contexts' lists of checkpoints, decisions and errors over a log of hundreds of sealed pages (pages of four
entries), read from the notable documents (``sessions.notables``).

Each list is compared with what a client computes from the entries it wrote (the newest 200 of the type, in
recorded order), after appends, erasures by id, pops, a clear, an import and a migration, and on a session whose
pages were sealed before notable documents existed (its older pages have none), so a list that misses an entry,
keeps an erased one, or repeats one fails.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from handoff import bulk
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from tests.api import Api, ok
from tests.factories import Tenant, exported, small_pages_app
from tests.inprocess import in_process
from tests.test_sessions_legacy import make_legacy

#: Two of each notable type in every ten entries, so a log of 1,100 holds more than 200 of each.
TYPES = ["checkpoint", "info", "decision", "error", "checkpoint", "warning", "decision", "info", "error", "success"]
LISTS = {"checkpoints": "checkpoint", "decisions": "decision", "errors": "error"}
LIMIT = 200

Entry = dict[str, Any]


app = small_pages_app()


async def grow(api: Api, session_id: str, count: int, *, start: int = 0, batch: int = 100) -> list[Entry]:
    """Append ``count`` typed entries in batches (every tenth batch as single appends), as a client knows them."""
    written: list[Entry] = []
    while len(written) < count:
        number = start + len(written)
        size = min(batch, count - len(written))
        entries = [
            {"id": f"e{n:05d}", "message": f"step {n}", "type": TYPES[n % len(TYPES)]}
            for n in range(number, number + size)
        ]
        if (number // batch) % 10 == 9:
            for entry in entries[:10]:
                await api.post(session_id, "work-log", entry, 201)
            entries = entries[:10]
        else:
            await api.post(session_id, "work-log/batch", {"entries": entries}, 201)
        written += [{"id": entry["id"], "type": entry["type"]} for entry in entries]
    return written


async def assert_lists_exact(api: Api, session_id: str, log: list[Entry]) -> None:
    """The replay context's lists are the newest 200 of each type of the whole log, in recorded order; its last
    checkpoint and both contexts' recent actions agree with the log too."""
    context = ok(await api.call("GET", f"/{session_id}/replay-context"))
    handoff = ok(await api.call("GET", f"/{session_id}/handoff-context"))
    for name, entry_type in LISTS.items():
        wanted = [entry["id"] for entry in log if entry["type"] == entry_type][-LIMIT:]
        assert [entry["id"] for entry in context[name]] == wanted, name
        assert all(entry["type"] == entry_type for entry in context[name])
    checkpoints = [entry["id"] for entry in log if entry["type"] == "checkpoint"]
    assert (context["last_checkpoint"] or {}).get("id") == (checkpoints[-1] if checkpoints else None)
    recent = [entry["id"] for entry in reversed(log[-20:])]
    assert [entry["id"] for entry in context["recent_actions"]] == recent
    assert [entry["id"] for entry in handoff["recent_actions"]] == recent
    assert context["total_actions"] == len(log)


async def notable_documents(database: MongoDatabase, session_id: str) -> int:
    return await database["log_notables"].count_documents({"session_id": session_id})


def newest_of(log: list[Entry], entry_type: str, back: int) -> str:
    """The id of the ``back``-th newest entry of a type (0: the newest)."""
    return [entry["id"] for entry in log if entry["type"] == entry_type][-1 - back]


async def delete(api: Api, session_id: str, log: list[Entry], entry_id: str) -> None:
    assert (await api.call("DELETE", f"/{session_id}/work-log/{entry_id}")).status_code == 204
    log[:] = [entry for entry in log if entry["id"] != entry_id]


async def pop(api: Api, session_id: str, log: list[Entry]) -> None:
    popped = ok(await api.call("POST", f"/{session_id}/work-log/pop"))
    assert popped["id"] == log.pop()["id"]


async def _written(api: Api, session_id: str) -> list[Entry]:
    """The whole log of a session as its work-log route lists it (ids and types, in order)."""
    items: list[Entry] = []
    while True:
        body = ok(await api.call("GET", f"/{session_id}/work-log", params={"limit": 1000, "offset": len(items)}))
        items += body["items"]
        if len(items) >= body["total"]:
            return [{"id": item["id"], "type": item["type"]} for item in items]


async def test_lists_follow_appends_erasures_pops_and_a_clear_exactly(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 1_100)
    assert await notable_documents(database, sid) > 3 * LIMIT  # the lists are read from them
    await assert_lists_exact(api, sid, log)

    # Erase entries at the edges of each list: the newest sealed, one deep inside, the 200th and 201st newest
    # (the one that must come into the list), and the oldest.
    for entry_type in LISTS.values():
        for back in (0, 57, LIMIT - 1, LIMIT, LIMIT + 10):
            await delete(api, sid, log, newest_of(log, entry_type, back))
    await delete(api, sid, log, log[0]["id"])
    await assert_lists_exact(api, sid, log)

    # Pops take the open page, then sealed entries (notable ones among them).
    for _ in range(9):
        await pop(api, sid, log)
    await assert_lists_exact(api, sid, log)

    # An erased id may be used again: a new entry, at the end of the log.
    reused = newest_of(log, "checkpoint", 3)
    await delete(api, sid, log, reused)
    await api.post(sid, "work-log", {"id": reused, "message": "again", "type": "checkpoint"}, 201)
    log.append({"id": reused, "type": "checkpoint"})
    log += await grow(api, sid, 30, start=5_000)
    await assert_lists_exact(api, sid, log)

    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204
    assert await notable_documents(database, sid) == 0
    await assert_lists_exact(api, sid, [])
    log = await grow(api, sid, 250, start=8_000)
    await assert_lists_exact(api, sid, log)

    assert (await api.call("DELETE", f"/{sid}")).status_code == 204
    assert await notable_documents(database, sid) == 0


async def sealed_the_old_way(database: MongoDatabase, session_id: str) -> None:
    """Make a session's stored form what the code before notable documents wrote: its pages without them, and no
    ``noted`` counts."""
    await database["log_notables"].delete_many({"session_id": session_id})
    await database["sessions"].update_one({"session_id": session_id}, {"$unset": {"noted": ""}})


async def test_a_session_sealed_before_notable_documents_answers_the_same(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 900)
    await sealed_the_old_way(database, sid)
    await assert_lists_exact(api, sid, log)

    # New seals write notable documents for the newer pages only: each list is partly from them, partly from
    # the old pages, at every split.
    for more in (4, 40, 200, 400):
        log += await grow(api, sid, more, start=10_000 + len(log))
        await assert_lists_exact(api, sid, log)
    assert await notable_documents(database, sid) > 0

    for entry_type in LISTS.values():
        for back in (0, 150, LIMIT):  # in a new page, and in an old one
            await delete(api, sid, log, newest_of(log, entry_type, back))
    for _ in range(7):
        await pop(api, sid, log)
    await assert_lists_exact(api, sid, log)


async def test_an_imported_session_lists_exactly_and_stays_exact_after_removals(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
) -> None:
    built = Api(client, tenant)
    sid = (await built.create())["session_id"]
    log = await grow(built, sid, 1_100)
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))
    workspace = other_tenant.workspace.slug

    result = await bulk.import_files([path], workspace=workspace, settings=small_settings)

    assert result.summary() == "imported 1, skipped 0, rejected 0"
    imported = Api(client, other_tenant)
    key = {"workspace_id": other_tenant.workspace.workspace_id, "session_id": sid}
    assert await database["log_notables"].count_documents(key) > 3 * LIMIT
    await assert_copy_in_step(database, sid, log, workspace_id=key["workspace_id"])  # written by the import
    await assert_lists_exact(imported, sid, log)
    changed = list(log)
    for entry_type in LISTS.values():
        await delete(imported, sid, changed, newest_of(changed, entry_type, 10))
    for _ in range(6):
        await pop(imported, sid, changed)
    changed += await grow(imported, sid, 20, start=20_000)
    await assert_copy_in_step(database, sid, changed, workspace_id=key["workspace_id"])
    await assert_lists_exact(imported, sid, changed)

    # Imported again over itself: the changed session goes whole, notable documents included, and the file's
    # log comes back.
    again = await bulk.import_files([path], workspace=workspace, settings=small_settings, on_conflict="replace")

    assert again.summary() == "imported 1, skipped 0, rejected 0"
    await assert_copy_in_step(database, sid, log, workspace_id=key["workspace_id"])
    await assert_lists_exact(imported, sid, log)


async def test_a_migrated_session_lists_exactly(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 700)
    await make_legacy(database, sid)
    await assert_lists_exact(api, sid, log)  # read as one big open page

    await api.post(sid, "work-log", {"id": "after", "message": "after", "type": "error"}, 201)  # migrates it
    log.append({"id": "after", "type": "error"})

    assert await notable_documents(database, sid) > 2 * LIMIT
    await assert_lists_exact(api, sid, log)
    await delete(api, sid, log, newest_of(log, "decision", 5))
    await assert_lists_exact(api, sid, log)


async def test_contexts_read_while_pages_seal_never_miss_or_repeat_an_entry(api: Api) -> None:
    """Readers take the replay context while a writer's checkpoints seal a page every two appends: the list is
    read from the session's open page and from notable documents beside it, and a seal between the two reads must
    leave neither a gap nor a repeat."""
    sid = (await api.create())["session_id"]
    written = 0
    done = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        for number in range(300):
            await api.post(sid, "work-log", {"id": f"c{number:04d}", "message": "c", "type": "checkpoint"}, 201)
            written = number + 1
        done.set()

    reads = 0

    async def reader() -> None:
        nonlocal reads
        while not done.is_set():
            at_least = written
            ids = [entry["id"] for entry in ok(await api.call("GET", f"/{sid}/replay-context"))["checkpoints"]]
            last = int(ids[-1][1:]) + 1 if ids else 0
            assert last >= at_least
            assert ids == [f"c{n:04d}" for n in range(max(0, last - LIMIT), last)]
            reads += 1

    await asyncio.gather(writer(), reader(), reader(), reader())
    assert reads > 30


async def test_concurrent_writers_and_retries_across_seals_leave_one_notable_document_per_sealed_entry(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """Sixteen writers append notable entries and retry earlier ids while pages seal every eight appends: each
    sealed checkpoint, decision and error has exactly one notable document, and the lists are exact."""
    app = create_app(settings.model_copy(update={"page_entries": 16}), database=database)
    async with in_process(app) as client:
        api = Api(client, tenant)
        sid = (await api.create())["session_id"]

        async def writer(number: int) -> None:
            for step in range(20):
                body = {"id": f"w{number:02d}-{step:02d}", "message": "m", "type": TYPES[(number + step) % 10]}
                await api.post(sid, "work-log", body, 201)
                if step % 3 == 2:
                    again = {
                        "id": f"w{number:02d}-{step - 2:02d}",
                        "message": "m",
                        "type": TYPES[(number + step - 2) % 10],
                    }
                    await api.post(sid, "work-log", again, 200)

        await asyncio.gather(*(writer(n) for n in range(16)))
        log = await _written(api, sid)
        await assert_lists_exact(api, sid, log)
        await assert_copy_in_step(database, sid, log, workspace_id=tenant.workspace.workspace_id)

    key = {"workspace_id": tenant.workspace.workspace_id, "session_id": sid}
    pages = await database["log_pages"].find({**key, "kind": "work_log"}).to_list(None)
    sealed = sorted(e["id"] for page in pages for e in page["entries"] if e.get("type") in LISTS.values())
    noted = sorted(doc["entry"]["id"] for doc in await database["log_notables"].find(key).to_list(None))
    assert len(pages) > 20
    assert noted == sealed


# The newest notables' copy (``sessions.newest_notables``) ---------------------------------------------------------


async def assert_copy_in_step(
    database: MongoDatabase, session_id: str, log: list[Entry], *, workspace_id: str | None = None
) -> None:
    """The session's copy of its newest notables is in step with it (so the replay context reads it, not the
    notable documents) and holds, per type, the newest 200 *sealed* entries of the log, as the answer writes them."""
    key = {"session_id": session_id, **({"workspace_id": workspace_id} if workspace_id else {})}
    session = await database["sessions"].find_one(key, {"pages_version": 1, "work_log": 1})
    copy = await database["log_newest_notables"].find_one(key)
    assert session is not None
    assert copy is not None
    assert copy["version"] == session["pages_version"]
    in_open = {entry["id"] for entry in session["work_log"]}
    for entry_type in LISTS.values():
        wanted = [entry["id"] for entry in log if entry["type"] == entry_type and entry["id"] not in in_open][-LIMIT:]
        assert copy["ids"][entry_type] == wanted, entry_type
        texts = copy["lists"][entry_type]
        assert len(texts) == len(wanted)
        # As the answer writes them; None for an entry too large to copy.
        assert [json.loads(text)["id"] if text else None for text in texts] == [
            entry_id if text else None for entry_id, text in zip(wanted, texts, strict=True)
        ]


async def test_the_newest_notables_copy_keeps_step_with_every_write(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 1_100)
    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)

    for entry_type in LISTS.values():  # in the copy, at its oldest end, the first one it lacks, and older
        for back in (4, LIMIT - 1, LIMIT, LIMIT + 10):
            await delete(api, sid, log, newest_of(log, entry_type, back))
    await delete(api, sid, log, log[1]["id"])  # an "info" entry, in no list
    await assert_copy_in_step(database, sid, log)
    for _ in range(9):  # through the open page into sealed ones
        await pop(api, sid, log)
    await assert_copy_in_step(database, sid, log)

    # Artifacts seal and are erased and cleared under the same pages_version: the copy keeps step.
    for n in range(30):
        await api.post(sid, "artifacts", {"path": f"src/m{n}.py", "action": "created"}, 201)
    artifacts = ok(await api.call("GET", f"/{sid}/artifacts", params={"limit": 5}))["items"]
    assert (await api.call("DELETE", f"/{sid}/artifacts/{artifacts[0]['id']}")).status_code == 204
    await assert_copy_in_step(database, sid, log)
    assert (await api.call("DELETE", f"/{sid}/artifacts")).status_code == 204
    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)

    # A clear takes the copy with the log; the next seals start it again.
    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204
    assert await database["log_newest_notables"].count_documents({"session_id": sid}) == 0
    log = await grow(api, sid, 300, start=30_000)
    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)

    assert (await api.call("DELETE", f"/{sid}")).status_code == 204
    assert await database["log_newest_notables"].count_documents({"session_id": sid}) == 0


async def test_the_replay_context_reads_the_copy_only_while_it_is_in_step(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 400)
    copies = database["log_newest_notables"]
    decoy = json.dumps({"id": "decoy", "message": "not in the log", "type": "checkpoint", "timestamp": "x"}).encode()
    version = (await copies.find_one({"session_id": sid}))["version"]

    # In step, it is what the context answers (here, a decoy planted in it).
    await copies.update_one({"session_id": sid}, {"$set": {"lists.checkpoint": [decoy]}})
    context = ok(await api.call("GET", f"/{sid}/replay-context"))
    assert [entry["id"] for entry in context["checkpoints"]][:1] == ["decoy"]

    # Out of step (an older version, or another shape): read around, from the notable documents.
    await copies.update_one({"session_id": sid}, {"$set": {"version": version - 1}})
    await assert_lists_exact(api, sid, log)
    await copies.update_one({"session_id": sid}, {"$set": {"version": version, "shape": 0}})
    await assert_lists_exact(api, sid, log)

    # The next seal finds it out of step and rebuilds it from the notable documents.
    log += await grow(api, sid, 8, start=40_000)
    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)


async def test_a_migrated_session_has_its_copy_in_step(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 700)
    await make_legacy(database, sid)
    await database["log_newest_notables"].delete_many({"session_id": sid})

    await api.post(sid, "work-log", {"id": "after", "message": "after", "type": "error"}, 201)  # migrates it
    log.append({"id": "after", "type": "error"})

    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)


async def test_an_entry_too_large_to_copy_is_read_from_its_notable_document(api: Api, database: MongoDatabase) -> None:
    """A checkpoint of ~40 KB of data (under the 64 KiB an entry may hold) is kept in the copy by its id only: 600
    such entries would pass MongoDB's 16 MiB document limit and fail every seal. The list that needs it is read
    from the notable documents, exactly; once newer checkpoints push it out of the newest 200, the copy answers."""
    sid = (await api.create())["session_id"]
    log = await grow(api, sid, 300)
    big = {"id": "big", "message": "a large state", "type": "checkpoint", "data": {"state": "x" * 40_000}}
    await api.post(sid, "work-log", big, 201)
    log.append({"id": "big", "type": "checkpoint"})
    log += await grow(api, sid, 200, start=10_000)

    copy = await database["log_newest_notables"].find_one({"session_id": sid})
    assert copy is not None
    at = copy["ids"]["checkpoint"].index("big")
    assert copy["lists"]["checkpoint"][at] is None
    await assert_copy_in_step(database, sid, log)
    context = ok(await api.call("GET", f"/{sid}/replay-context"))
    assert next(entry for entry in context["checkpoints"] if entry["id"] == "big")["data"] == big["data"]
    await assert_lists_exact(api, sid, log)

    for start in range(20_000, 20_300, 100):  # 300 newer checkpoints, sealed but the open page's: "big" is out
        batch = [{"id": f"c{n}", "message": "newer", "type": "checkpoint"} for n in range(start, start + 100)]
        await api.post(sid, "work-log/batch", {"entries": batch}, 201)
        log += [{"id": entry["id"], "type": "checkpoint"} for entry in batch]
    copy = await database["log_newest_notables"].find_one({"session_id": sid})
    assert copy is not None
    assert None not in copy["lists"]["checkpoint"]
    await assert_copy_in_step(database, sid, log)
    await assert_lists_exact(api, sid, log)
