"""Clearing a log and erasing a session of thousands of sealed pages (``sessions/purges.py``), through the API.

A clear or an erasure hides the pages in one small transaction and deletes them in batches afterwards. What is
checked: the answer is 204 and every route then answers as if everything were gone; ids used before are used
again, sealed again, and read back exactly; a process that dies between the two steps leaves nothing visible and
its leftovers are deleted by the next clear or the background pass; appends racing a clear lose nothing
acknowledged after it. Pages hold four entries, so a log of 4,000 entries is 2,000 sealed pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff import bulk, clock
from handoff.analytics import service
from handoff.analytics.rollup import worker as rollup_worker
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import migration, purges
from handoff.sessions.paging import PageBounds
from tests.api import Api, ok, problem
from tests.factories import Tenant, exported, small_pages_app, small_pages_settings

BOUNDS = PageBounds(entries=4, bytes=4096)
LONG = 4_000


app = small_pages_app()


def entry(n: int, *, tag: str = "old") -> dict[str, Any]:
    """Entry ``n`` of a log: every tenth a checkpoint, every seventh a decision, every thirteenth an error."""
    kind = "checkpoint" if n % 10 == 0 else "decision" if n % 7 == 0 else "error" if n % 13 == 0 else "info"
    return {"id": f"e{n:05d}", "message": f"{tag} step {n}", "type": kind}


async def long_session(api: Api, database: MongoDatabase, tenant: Tenant) -> str:
    """A session created through the API whose work log then holds ``LONG`` entries in sealed pages."""
    sid = (await api.create())["session_id"]
    await make_long(database, tenant, sid)
    return sid


async def make_long(database: MongoDatabase, tenant: Tenant, sid: str) -> None:
    """Give a session ``LONG`` entries in sealed pages (written as a session of the old layout and migrated: the
    pages and notable documents a long run would have made)."""
    now = clock.now()
    log = [{**entry(n), "timestamp": now} for n in range(LONG)]
    await database["sessions"].update_one(
        {"workspace_id": tenant.workspace.workspace_id, "session_id": sid},
        {
            "$set": {
                "work_log": log,
                "artifacts": [
                    {"id": f"a{n}", "path": f"f{n}.py", "action": "created", "metadata": None, "timestamp": now}
                    for n in range(9)
                ],
                "action_count": LONG,
                "artifact_count": 9,
                "checkpoint_count": sum(item["type"] == "checkpoint" for item in log),
                "error_count": sum(item["type"] == "error" for item in log),
                "last_checkpoint": log[LONG - 10],
            },
            "$unset": {"pages_version": ""},
        },
    )
    assert await migration.migrate(tenant.workspace.workspace_id, sid, bounds=BOUNDS)
    assert await database["log_pages"].count_documents({"session_id": sid, "kind": "work_log"}) > LONG // 4
    assert await database["log_notables"].count_documents({"session_id": sid}) > 0


async def assert_log(api: Api, sid: str, entries: list[dict[str, Any]]) -> None:
    """Every route that reads the work log answers exactly ``entries`` (ids and messages, in order)."""
    body = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000}))
    assert [(item["id"], item["message"]) for item in body["items"]] == [(e["id"], e["message"]) for e in entries]
    assert body["total"] == len(entries)
    for entry_type in ("checkpoint", "decision", "error"):
        chosen = [e["id"] for e in entries if e["type"] == entry_type]
        listed = ok(await api.call("GET", f"/{sid}/work-log", params={"type": entry_type, "limit": 1000}))
        assert ([item["id"] for item in listed["items"]], listed["total"]) == (chosen, len(chosen))
        newest = ok(await api.call("GET", f"/{sid}/work-log", params={"type": entry_type, "order": "desc"}))
        assert [item["id"] for item in newest["items"]] == chosen[::-1][:100]
    prefixed = ok(await api.call("GET", f"/{sid}/work-log", params={"id_prefix": "e000", "limit": 1000}))
    assert [item["id"] for item in prefixed["items"]] == [e["id"] for e in entries if e["id"].startswith("e000")]
    for probe in ("e00000", "e00010", "e03990", "e03999"):
        found = await api.call("GET", f"/{sid}/work-log/{probe}")
        stored = [e for e in entries if e["id"] == probe]
        if stored:
            assert ok(found)["message"] == stored[0]["message"]
        else:
            problem(found, 404)
    context = ok(await api.call("GET", f"/{sid}/replay-context"))
    checkpoints = [e["id"] for e in entries if e["type"] == "checkpoint"]
    assert [item["id"] for item in context["checkpoints"]] == checkpoints[-200:]
    assert [item["id"] for item in context["decisions"]] == [e["id"] for e in entries if e["type"] == "decision"][-200:]
    assert (context["last_checkpoint"] or {}).get("id") == (checkpoints[-1] if checkpoints else None)
    session = await api.get(sid)
    assert (session["action_count"], session["checkpoint_count"], session["error_count"]) == (
        len(entries),
        len(checkpoints),
        sum(e["type"] == "error" for e in entries),
    )


async def append_again(api: Api, sid: str, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Append entries with the ids of ``count`` old ones from ``start`` (new content), one by one: pages seal
    again."""
    written = [entry(n, tag="new") for n in range(start, start + count)]
    for body in written:
        await api.post(sid, "work-log", body, 201)
    return written


async def leftovers(database: MongoDatabase, sid: str) -> tuple[int, int, int]:
    """The session's pages, notable documents and purge documents still stored."""
    return (
        await database["log_pages"].count_documents({"session_id": sid, "kind": "work_log"}),
        await database["log_notables"].count_documents({"session_id": sid}),
        await database["log_purges"].count_documents({"session_id": sid}),
    )


def crash_after_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next purges die after their first batch, as a process killed midway would."""
    real = purges._delete_batches

    async def one_batch_then_die(*args: Any, after_batch: Callable[[], Awaitable[None]], **kwargs: Any) -> int:
        async def die() -> None:
            raise RuntimeError("killed midway")

        return await real(*args, after_batch=die, **kwargs)

    monkeypatch.setattr(purges, "_delete_batches", one_batch_then_die)


async def delete_dying_midway(api: Api, monkeypatch: pytest.MonkeyPatch, *paths: str) -> None:
    """DELETE each path in a process that dies after the first batch of its purge (the request answers 500)."""
    crash_after_one_batch(monkeypatch)
    for path in paths:
        assert (await api.call("DELETE", path)).status_code == 500  # the request dies with its process
    monkeypatch.undo()


async def test_a_clear_of_thousands_of_pages_empties_every_route_and_ids_are_used_again(
    api: Api, database: MongoDatabase, tenant: Tenant
) -> None:
    sid = await long_session(api, database, tenant)

    response = await api.call("DELETE", f"/{sid}/work-log")

    assert response.status_code == 204, response.text
    await assert_log(api, sid, [])
    assert await leftovers(database, sid) == (0, 0, 0)
    assert ok(await api.call("GET", f"/{sid}/artifacts"))["total"] == 9  # the other kind stays
    again = await append_again(api, sid, 60)
    await assert_log(api, sid, again)
    retry = await api.call("POST", f"/{sid}/work-log", json=again[3])
    assert retry.status_code == 200, retry.text
    problem(await api.call("POST", f"/{sid}/work-log", json=entry(3)), 422)  # the old content is gone
    await assert_log(api, sid, again)


async def test_a_delete_of_thousands_of_pages_leaves_nothing(api: Api, database: MongoDatabase, tenant: Tenant) -> None:
    sid = await long_session(api, database, tenant)

    response = await api.call("DELETE", f"/{sid}")

    assert response.status_code == 204, response.text
    for path in ("", "/work-log", "/work-log/e00010", "/artifacts", "/replay-context", "/handoff-context"):
        problem(await api.call("GET", f"/{sid}{path}"), 404)
    assert await leftovers(database, sid) == (0, 0, 0)
    assert await database["log_pages"].count_documents({"session_id": sid}) == 0


async def test_a_clear_cut_off_midway_shows_nothing_and_its_leftovers_go(
    api: Api, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await long_session(api, database, tenant)

    await delete_dying_midway(api, monkeypatch, f"/{sid}/work-log")

    pages, _, pending = await leftovers(database, sid)
    assert pages > 1000  # most pages are still stored, and the purge document says so
    assert pending == 1
    await assert_log(api, sid, [])
    # Ids of the leftovers are used again and sealed into new pages before the leftovers are gone (the first batch
    # took the oldest pages: these ids are still in leftover pages and notable documents).
    assert await database["log_pages"].count_documents({"session_id": sid, "entries.id": "e02010"}) == 1
    assert await database["log_notables"].count_documents({"session_id": sid, "entry.id": "e02010"}) == 1
    again = await append_again(api, sid, 40, start=2000)
    await assert_log(api, sid, again)
    # A pass of the background task finishes it (a request's own purge is left alone for a while).
    assert await purges.purge_pending() == 0
    assert await purges.purge_pending(now=clock.now() + purges.GRACE + timedelta(seconds=1)) == 1
    assert await database["log_purges"].count_documents({"session_id": sid}) == 0
    pages_left = await database["log_pages"].find({"session_id": sid, "kind": "work_log"}).to_list(None)
    notables_left = await database["log_notables"].find({"session_id": sid}).to_list(None)
    assert pages_left, "the new entries' pages stay"
    assert {e["message"][:3] for page in pages_left for e in page["entries"]} == {"new"}
    assert {document["entry"]["message"][:3] for document in notables_left} <= {"new"}
    await assert_log(api, sid, again)


async def test_a_second_clear_finishes_what_a_first_was_cut_off_in(
    api: Api, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await long_session(api, database, tenant)
    await delete_dying_midway(api, monkeypatch, f"/{sid}/work-log")

    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204

    assert await leftovers(database, sid) == (0, 0, 0)
    await assert_log(api, sid, [])


async def test_a_session_created_again_with_an_erased_id_does_not_see_its_leftovers(
    api: Api, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = {"Idempotency-Key": "the-long-one"}
    first = ok(await api.call("POST", "", {}, headers=key), 201)
    sid = first["session_id"]
    await make_long(database, tenant, sid)
    await delete_dying_midway(api, monkeypatch, f"/{sid}")
    problem(await api.call("GET", f"/{sid}"), 404)

    again = await api.call("POST", "", {}, headers=key)  # the key's id, created anew

    assert again.status_code == 201, again.text
    assert again.json()["session_id"] == sid
    await assert_log(api, sid, [])
    written = await append_again(api, sid, 40, start=2000)
    await assert_log(api, sid, written)
    assert (await api.call("DELETE", f"/{sid}")).status_code == 204  # finishes the first purge too
    assert await leftovers(database, sid) == (0, 0, 0)


async def test_appends_racing_a_clear_lose_nothing_acknowledged_after_it(
    api: Api, database: MongoDatabase, tenant: Tenant
) -> None:
    sid = await long_session(api, database, tenant)
    cleared = asyncio.Event()
    after: list[str] = []
    during: list[str] = []

    async def writer(number: int) -> None:
        for step in range(25):
            began_after = cleared.is_set()
            body = {"id": f"w{number}-{step:02d}", "message": "racing", "type": "checkpoint" if step % 5 else "info"}
            response = await api.call("POST", f"/{sid}/work-log", json=body)
            assert response.status_code == 201, response.text
            (after if began_after else during).append(body["id"])

    async def clearing() -> None:
        await asyncio.sleep(0.05)
        response = await api.call("DELETE", f"/{sid}/work-log")
        assert response.status_code == 204, response.text
        cleared.set()

    await asyncio.gather(clearing(), *(writer(n) for n in range(4)))

    body = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000}))
    ids = [item["id"] for item in body["items"]]
    assert after, "some appends ran after the clear"
    assert set(after) <= set(ids) <= set(after) | set(during)
    assert body["total"] == len(ids) == len(set(ids))
    session = await api.get(sid)
    assert session["action_count"] == len(ids)
    assert await leftovers(database, sid) == (
        await database["log_pages"].count_documents(
            {"session_id": sid, "kind": "work_log", "entries.id": {"$in": ids}}
        ),
        await database["log_notables"].count_documents({"session_id": sid, "entry.id": {"$in": ids}}),
        0,
    )


async def test_analytics_count_nothing_of_cleared_logs_and_erased_sessions_still_being_purged(
    api: Api, client: httpx.AsyncClient, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace_id = tenant.workspace.workspace_id
    kept = (await api.create())["session_id"]
    await api.post(kept, "work-log", {"message": "kept failure", "type": "error"}, 201)
    await api.post(kept, "artifacts", {"path": "kept.py", "action": "created"}, 201)
    cleared, erased = await long_session(api, database, tenant), await long_session(api, database, tenant)
    monkeypatch.setattr(purges, "PAGE_BATCH", 1)  # so that some of their two artifact pages are left too
    await delete_dying_midway(api, monkeypatch, f"/{cleared}/work-log", f"/{cleared}/artifacts", f"/{erased}")
    for sid in (cleared, erased):
        assert await database["log_pages"].count_documents({"session_id": sid, "kind": "artifacts"}) > 0
        assert await database["log_pages"].count_documents({"session_id": sid, "counts.error": {"$gt": 0}}) > 0

    async def analytics(route: str) -> list[dict[str, Any]]:
        answer = await client.get(f"/v1/analytics/{route}", params={"limit": 100}, headers=tenant.headers)
        items: list[dict[str, Any]] = ok(answer)["items"]
        return items

    assert [item["session_id"] for item in await analytics("errors")] == [kept]
    reference = (await service.artifacts_reference(workspace_id, limit=100)).model_dump()["items"]
    assert [item["path"] for item in reference] == ["kept.py"]
    # The rollup's pass folds the cleared session while its leftovers are still stored: its sealed artifacts
    # after the clear are its only ones.
    again = [{"id": f"b{n}", "path": f"again{n}.py", "action": "modified"} for n in range(9)]
    for body in again:
        await api.post(cleared, "artifacts", body, 201)
    await rollup_worker.catch_up(workspace_id)
    expected = sorted(["kept.py", *(body["path"] for body in again)])
    assert sorted(item["path"] for item in await analytics("artifacts")) == expected
    assert await purges.purge_pending(now=clock.now() + purges.GRACE + timedelta(seconds=1)) == 2
    assert sorted(item["path"] for item in await analytics("artifacts")) == expected
    reference = (await service.artifacts_reference(workspace_id, limit=100)).model_dump()["items"]
    assert await analytics("artifacts") == reference


async def test_an_import_of_an_erased_id_whose_purge_died_keeps_every_imported_page(
    *,
    api: Api,
    database: MongoDatabase,
    mongod: MongodProcess,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    sid = await long_session(api, database, tenant)
    written = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000, "offset": 3000}))["items"]
    export = tmp_path / "export.jsonl"
    export.write_bytes(await exported(tenant.workspace.slug))
    await delete_dying_midway(api, monkeypatch, f"/{sid}")
    settings = small_pages_settings(mongod, database)

    result = await bulk.import_files([export], workspace=tenant.workspace.slug, settings=settings)

    assert result.imported >= 1
    assert await database["log_purges"].count_documents({"session_id": sid}) == 0
    # Nothing is left for a background pass to delete, so the imported pages (numbered from 0 again) all stay.
    assert await purges.purge_pending(now=clock.now() + purges.GRACE + timedelta(seconds=1)) == 0
    read = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000, "offset": 3000}))["items"]
    assert [(item["id"], item["message"]) for item in read] == [(item["id"], item["message"]) for item in written]
    assert ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1}))["total"] == LONG


@pytest.mark.parametrize("missed", [1, 2], ids=["read-before-the-insert", "both-reads-of-the-create"])
async def test_a_session_created_in_the_moment_its_ids_erasure_commits_numbers_its_pages_above_the_leftovers(
    api: Api, database: MongoDatabase, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, missed: int
) -> None:
    key = {"Idempotency-Key": f"the-racing-one-{missed}"}
    sid = ok(await api.call("POST", "", {}, headers=key), 201)["session_id"]
    await make_long(database, tenant, sid)
    await delete_dying_midway(api, monkeypatch, f"/{sid}")
    # The new session's request read the floor before the erasure committed: it found none. Its second read,
    # after its insert, sees it; should that one miss too, the first seal does.
    real, reads = purges.floor, []

    async def before_the_commit(workspace_id: str, session_id: str) -> int:
        reads.append(session_id)
        return 0 if len(reads) <= missed else await real(workspace_id, session_id)

    monkeypatch.setattr(purges, "floor", before_the_commit)
    assert ok(await api.call("POST", "", {}, headers=key), 201)["session_id"] == sid
    # Ids still held by leftover pages when the create's second read found the floor; new ones otherwise (an
    # append's id check reads the pages the session's pages_from allows).
    written = await append_again(api, sid, 40, start=2000 if missed == 1 else 5000)

    assert await purges.purge_pending(now=clock.now() + purges.GRACE + timedelta(seconds=1)) == 1
    await assert_log(api, sid, written)
    assert await database["log_pages"].count_documents({"session_id": sid, "kind": "work_log"}) >= 9
