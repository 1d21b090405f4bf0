"""The paged log through the API (api.md, "Sessions without a size limit"), with pages of four entries so that a
log of a hundred entries spans dozens of sealed pages.

Every listing is compared with what a client computes from the entries it wrote, in order: every filter, offset,
limit, order, ``after``/``before`` anchor and id prefix, before and after removals, so a window that crosses pages,
starts in one or ends in the open page is checked against the one truth.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import httpx
import pytest

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.sessions.models import LogPage
from tests.api import Api, ok, problem
from tests.factories import Tenant, small_pages_app
from tests.inprocess import in_process
from tests.test_ops_metrics import scrape, value

TYPES = ["info", "checkpoint", "info", "decision", "error", "warning", "success", "info", "checkpoint"]
ACTIONS = ["created", "modified", "modified", "deleted"]

Entry = dict[str, Any]


app = small_pages_app()


async def grow(api: Api, session_id: str, count: int, *, start: int = 0) -> list[Entry]:
    """Append ``count`` entries (typed ones, action ones, and batches) and return what a client knows of them:
    ids and types, in log order."""
    written: list[Entry] = []
    number = start
    while len(written) < count:
        if number % 10 == 7:  # a batch of up to five typed entries
            entries = [
                {"id": f"b{number:03d}-{k}", "message": f"batch {number}.{k}", "type": TYPES[(number + k) % len(TYPES)]}
                for k in range(min(5, count - len(written)))
            ]
            result = await api.post(session_id, "work-log/batch", {"entries": entries}, 201)
            assert result == {"appended": len(entries), "duplicates": 0}
            written += [{"id": e["id"], "type": e["type"]} for e in entries]
        elif number % 10 == 3:
            stored = await api.post(session_id, "actions", {"id": f"a{number:03d}", "action": f"act {number}"}, 201)
            written.append({"id": stored["id"], "type": None})
        else:
            body = {"id": f"e{number:03d}", "message": f"step {number}", "type": TYPES[number % len(TYPES)]}
            stored = await api.post(session_id, "work-log", body, 201)
            written.append({"id": stored["id"], "type": stored["type"]})
        number += 1
    return written


def expected(
    entries: list[Entry],
    *,
    entry_type: str | None = None,
    id_prefix: str | None = None,
    after: str | None = None,
    before: str | None = None,
    offset: int = 0,
    limit: int = 100,
    order: str = "asc",
) -> tuple[list[str], int]:
    """What a page must hold, computed the obvious way from the whole log."""
    ids = [entry["id"] for entry in entries]
    lo = ids.index(after) + 1 if after else 0
    hi = ids.index(before) if before else len(ids)
    chosen = [
        entry["id"]
        for entry in entries[lo:hi]
        if (entry_type is None or entry["type"] == entry_type)
        and (id_prefix is None or entry["id"].startswith(id_prefix))
    ]
    if order == "desc":
        chosen.reverse()
    return chosen[offset : offset + limit], len(chosen)


async def listed(api: Api, session_id: str, **query: Any) -> tuple[list[str], int]:
    params = {name.replace("entry_type", "type"): value for name, value in query.items() if value is not None}
    body = ok(await api.call("GET", f"/{session_id}/work-log", params=params))
    return [item["id"] for item in body["items"]], body["total"]


async def assert_every_window(api: Api, session_id: str, entries: list[Entry]) -> None:
    total = len(entries)
    for entry_type, order in itertools.product([None, *sorted(set(TYPES))], ["asc", "desc"]):
        for offset, limit in itertools.product([0, 1, 3, 7, 21, total - 1, total, total + 5], [1, 3, 10, 1000]):
            query = {"entry_type": entry_type, "offset": max(offset, 0), "limit": limit, "order": order}
            assert await listed(api, session_id, **query) == expected(entries, **query), query


async def assert_anchored_windows(api: Api, session_id: str, entries: list[Entry]) -> None:
    ids = [entry["id"] for entry in entries]
    anchors = [ids[0], ids[1], ids[len(ids) // 3], ids[len(ids) // 2], ids[-3], ids[-1]]
    for after, before in itertools.product([None, *anchors], [None, *anchors]):
        for entry_type, order, offset, limit in [
            (None, "asc", 0, 5),
            (None, "desc", 0, 5),
            (None, "asc", 2, 1000),
            ("checkpoint", "asc", 0, 1000),
            ("info", "desc", 1, 3),
        ]:
            query = {
                "after": after,
                "before": before,
                "entry_type": entry_type,
                "order": order,
                "offset": offset,
                "limit": limit,
            }
            assert await listed(api, session_id, **query) == expected(entries, **query), query


async def assert_prefixed_windows(api: Api, session_id: str, entries: list[Entry]) -> None:
    ids = [entry["id"] for entry in entries]
    for prefix, entry_type, after, order, offset, limit in [
        ("e0", None, None, "asc", 0, 1000),
        ("e0", None, None, "desc", 3, 4),
        ("b", None, None, "asc", 2, 5),
        ("b0", "checkpoint", None, "asc", 0, 100),
        ("a", None, ids[len(ids) // 2], "asc", 0, 100),
        ("e", "info", ids[5], "desc", 1, 2),
        ("zzz", None, None, "asc", 0, 10),
    ]:
        query = {
            "id_prefix": prefix,
            "entry_type": entry_type,
            "after": after,
            "order": order,
            "offset": offset,
            "limit": limit,
        }
        assert await listed(api, session_id, **query) == expected(entries, **query), query
    before = ids[-2]
    query = {"id_prefix": "e", "before": before, "order": "desc", "limit": 3}
    assert await listed(api, session_id, **query) == expected(entries, **query)


async def assert_counters(api: Api, session_id: str, entries: list[Entry]) -> None:
    session = await api.get(session_id)
    assert session["action_count"] == len(entries)
    assert session["checkpoint_count"] == sum(entry["type"] == "checkpoint" for entry in entries)
    assert session["error_count"] == sum(entry["type"] == "error" for entry in entries)


async def test_every_window_of_a_log_spanning_many_pages_is_exact(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 103)
    assert await database["log_pages"].count_documents({"session_id": sid, "kind": "work_log"}) >= 20

    with subtests.test("filters, offsets, limits, orders"):
        await assert_every_window(api, sid, entries)
    with subtests.test("after and before"):
        await assert_anchored_windows(api, sid, entries)
    with subtests.test("id prefixes"):
        await assert_prefixed_windows(api, sid, entries)
    with subtests.test("counters"):
        await assert_counters(api, sid, entries)


async def test_removals_keep_every_window_and_counter_exact(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 60)
    rng = random.Random(7)
    for victim in [entries[0], entries[1], entries[30], entries[-1], *rng.sample(entries[2:-1], 12)]:
        if victim not in entries:
            continue
        response = await api.call("DELETE", f"/{sid}/work-log/{victim['id']}")
        assert response.status_code == 204, response.text
        entries.remove(victim)
        assert (await api.call("GET", f"/{sid}/work-log/{victim['id']}")).status_code == 404
    # A removed id may be used again: it goes to the end.
    reused = await api.post(sid, "work-log", {"id": "e000", "message": "again", "type": "error"}, 201)
    entries.append({"id": reused["id"], "type": "error"})

    await assert_every_window(api, sid, entries)
    await assert_anchored_windows(api, sid, entries)
    await assert_counters(api, sid, entries)
    problem(await api.call("DELETE", f"/{sid}/work-log/e000-gone"), 404)
    # Pages emptied by the removals are gone, the others keep their before counts consistent.
    pages = await database["log_pages"].find({"session_id": sid, "kind": "work_log"}).sort("no", 1).to_list(None)
    running = 0
    for page in pages:
        assert page["entries"], "an empty page is deleted"
        assert page["before"]["all"] == running
        running += len(page["entries"])


async def test_pop_returns_the_newest_entry_across_pages_until_the_log_is_empty(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 13)
    while entries:
        popped = ok(await api.call("POST", f"/{sid}/work-log/pop"))
        assert popped["id"] == entries.pop()["id"]
        await assert_counters(api, sid, entries)
    response = await api.call("POST", f"/{sid}/work-log/pop")
    assert (response.status_code, response.content) == (204, b"")
    assert ok(await api.call("GET", f"/{sid}/work-log")) == {"items": [], "total": 0}


async def test_racing_pops_never_return_the_same_entry(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 30)

    answers = await asyncio.gather(*(api.call("POST", f"/{sid}/work-log/pop") for _ in range(40)))

    popped = [response.json()["id"] for response in answers if response.status_code == 200]
    assert sorted(popped) == sorted(entry["id"] for entry in entries)
    assert sum(response.status_code == 204 for response in answers) == 10


async def test_pop_on_an_ended_session_is_409_and_removes_nothing(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 6)
    await api.post(sid, "complete", {}, 200)

    problem(await api.call("POST", f"/{sid}/work-log/pop"), 409)

    await assert_counters(api, sid, entries)


async def test_erasure_and_clear_work_on_an_ended_session(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    entries = await grow(api, sid, 30)
    await api.post(sid, "fail", {"reason": "stopped"}, 200)

    assert (await api.call("DELETE", f"/{sid}/work-log/{entries[3]['id']}")).status_code == 204
    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204

    session = await api.get(sid)
    assert (session["action_count"], session["checkpoint_count"], session["error_count"]) == (0, 0, 0)
    assert session["status"] == "failed"
    assert ok(await api.call("GET", f"/{sid}/work-log")) == {"items": [], "total": 0}
    assert (await api.post(sid, "replay-context".replace("replay-context", "replay"), None, 201))["session_id"]
    assert await database["log_pages"].count_documents({"session_id": sid, "kind": "work_log"}) == 0
    context = ok(await api.call("GET", f"/{sid}/replay-context"))
    assert (context["last_checkpoint"], context["checkpoints"], context["recent_actions"]) == (None, [], [])


async def test_a_cleared_log_grows_again_from_nothing(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await grow(api, sid, 25)
    assert (await api.call("DELETE", f"/{sid}/work-log")).status_code == 204

    entries = await grow(api, sid, 25, start=100)

    await assert_every_window(api, sid, entries)
    await assert_counters(api, sid, entries)


async def test_an_entry_is_read_by_id_wherever_it_is_stored(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await grow(api, sid, 40)
    log = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000}))["items"]

    for item in log:
        assert ok(await api.call("GET", f"/{sid}/work-log/{item['id']}")) == item
    problem(await api.call("GET", f"/{sid}/work-log/nope"), 404)
    problem(await api.call("GET", "/sess_nope/work-log/e000"), 404)


async def test_a_retry_of_an_id_sealed_pages_ago_is_200_and_stores_nothing(api: Api) -> None:
    sid = (await api.create())["session_id"]
    first = await api.post(sid, "work-log", {"id": "early", "message": "the first", "type": "checkpoint"}, 201)
    entries = [{"id": "early", "type": "checkpoint"}, *await grow(api, sid, 40)]

    again = await api.call(
        "POST", f"/{sid}/work-log", json={"id": "early", "message": "the first", "type": "checkpoint"}
    )
    other = await api.call("POST", f"/{sid}/work-log", json={"id": "early", "message": "different"})
    batch = {
        "entries": [{"id": "early", "message": "the first", "type": "checkpoint"}, {"id": "new-one", "message": "n"}]
    }
    mixed = ok(await api.call("POST", f"/{sid}/work-log/batch", json=batch), 201)
    action = await api.call("POST", f"/{sid}/actions", json={"id": entries[5]["id"], "action": "not the same"})

    assert (again.status_code, again.json()) == (200, first)
    problem(other, 422)
    problem(action, 422)
    assert mixed == {"appended": 1, "duplicates": 1}
    entries.append({"id": "new-one", "type": "info"})
    await assert_counters(api, sid, entries)
    assert (await listed(api, sid, limit=1000))[0] == [entry["id"] for entry in entries]


async def test_contexts_list_the_newest_200_in_recorded_order(api: Api) -> None:
    sid = (await api.create())["session_id"]
    batches = [
        [{"id": f"c{n}-{k}", "message": f"check {n}.{k}", "type": "checkpoint"} for k in range(50)] for n in range(5)
    ]
    for entries in batches:
        await api.post(sid, "work-log/batch", {"entries": entries}, 201)
    for n in range(230):
        await api.post(sid, "artifacts", {"id": f"f{n}", "path": f"src/{n}.py", "action": ACTIONS[n % 4]}, 201)
    await api.post(sid, "work-log", {"id": "last", "message": "done", "type": "success"}, 201)

    context = ok(await api.call("GET", f"/{sid}/replay-context"))
    handoff = ok(await api.call("GET", f"/{sid}/handoff-context"))

    checkpoints = [entry["id"] for batch in batches for entry in batch]
    assert [e["id"] for e in context["checkpoints"]] == checkpoints[-200:]
    assert context["last_checkpoint"]["id"] == checkpoints[-1]
    assert [a["id"] for a in context["artifacts"]] == [f"f{n}" for n in range(30, 230)]
    assert [a["id"] for a in handoff["artifacts"]] == [f"f{n}" for n in range(30, 230)]
    for action in ("created", "modified", "deleted"):
        paths = [f"src/{n}.py" for n in range(230) if ACTIONS[n % 4] == action]
        assert context["artifacts_by_action"][action] == paths[-200:]
    assert [e["id"] for e in handoff["recent_actions"]] == ["last", *reversed(checkpoints[-19:])]
    assert context["recent_actions"] == handoff["recent_actions"]
    assert context["progress_summary"]["last_action"] == "done"
    assert (context["total_actions"], context["progress_summary"]["checkpoint_count"]) == (251, 250)
    recent = ok(await api.call("GET", f"/{sid}/recent-actions", params={"limit": 100}))["items"]
    assert [e["id"] for e in recent] == ["last", *reversed(checkpoints[-99:])]


async def test_artifact_pages_filter_by_action_and_content(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    recorded = [
        await api.post(sid, "artifacts", {"id": f"f{n}", "path": f"src/{n}.py", "action": ACTIONS[n % 4]}, 201)
        for n in range(37)
    ]
    assert await database["log_pages"].count_documents({"session_id": sid, "kind": "artifacts"}) >= 8

    for action, offset, limit in itertools.product(
        [None, "created", "modified", "deleted"], [0, 2, 9, 40], [1, 5, 1000]
    ):
        chosen = [a for a in recorded if action is None or a["action"] == action]
        params = {"offset": offset, "limit": limit, **({"action": action} if action else {})}
        body = ok(await api.call("GET", f"/{sid}/artifacts", params=params))
        assert body == {"items": chosen[offset : offset + limit], "total": len(chosen)}, params
    assert ok(await api.call("GET", f"/{sid}/artifacts", params={"has_blob": "true"})) == {"items": [], "total": 0}
    assert ok(await api.call("GET", f"/{sid}/artifacts/f3")) == recorded[3]

    popped = ok(await api.call("POST", f"/{sid}/artifacts/pop"))
    assert popped == recorded[-1]
    assert (await api.call("DELETE", f"/{sid}/artifacts/f0")).status_code == 204
    assert (await api.get(sid))["artifact_count"] == 35
    assert ok(await api.call("GET", f"/{sid}/artifacts"))["items"] == recorded[1:-1]
    assert (await api.call("DELETE", f"/{sid}/artifacts")).status_code == 204
    assert ok(await api.call("GET", f"/{sid}/artifacts")) == {"items": [], "total": 0}
    assert (await api.get(sid))["artifact_count"] == 0


async def test_bad_filters_are_422_and_unknown_anchors_404(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]
    await grow(api, sid, 12)
    for query in ({"id_prefix": ""}, {"id_prefix": "x" * 65}, {"id_prefix": "a b"}, {"after": "a/b"}):
        with subtests.test(query=query):
            problem(await api.call("GET", f"/{sid}/work-log", params=query), 422)
    for query in ({"after": "nope"}, {"before": "nope"}, {"after": "e000", "before": "nope"}):
        with subtests.test(query=query):
            problem(await api.call("GET", f"/{sid}/work-log", params=query), 404)


async def test_deleting_a_session_removes_its_pages(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    await grow(api, sid, 30)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)

    assert (await api.call("DELETE", f"/{sid}")).status_code == 204

    assert await database["log_pages"].count_documents({"session_id": sid}) == 0
    problem(await api.call("GET", f"/{sid}/work-log/e000"), 404)


async def test_sixty_four_writers_across_many_seals_with_retries_lose_and_duplicate_nothing(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """64 concurrent writers, each appending its own ids and retrying random earlier ones (its own and others'),
    while pages seal every few entries: exact counts, no duplicate, no gap, ``total`` what was acknowledged."""
    page_entries = 16  # a seal every eight appends: about a hundred of them under the writers
    app = create_app(settings.model_copy(update={"page_entries": page_entries}), database=database)
    async with in_process(app) as client:
        await _sixty_four_writers(Api(client, tenant), database, page_entries)


async def _sixty_four_writers(api: Api, database: MongoDatabase, page_entries: int) -> None:
    sid = (await api.create())["session_id"]
    acknowledged: set[str] = set()
    rng = random.Random(64)

    async def writer(number: int) -> None:
        for step in range(12):
            entry_id = f"w{number:02d}-{step:02d}"
            body = {"id": entry_id, "message": f"writer {number} step {step}", "type": TYPES[step % len(TYPES)]}
            response = await api.call("POST", f"/{sid}/work-log", json=body)
            assert response.status_code == 201, response.text
            acknowledged.add(entry_id)
            if acknowledged and rng.random() < 0.5:
                retry = rng.choice(sorted(acknowledged))
                writer_id, step_id = retry[1:3], int(retry[4:])
                again = {
                    "id": retry,
                    "message": f"writer {int(writer_id)} step {step_id}",
                    "type": TYPES[step_id % len(TYPES)],
                }
                response = await api.call("POST", f"/{sid}/work-log", json=again)
                assert response.status_code == 200, response.text

    await asyncio.gather(*(writer(n) for n in range(64)))

    body = ok(await api.call("GET", f"/{sid}/work-log", params={"limit": 1000}))
    ids = [item["id"] for item in body["items"]]
    assert body["total"] == len(ids) == len(set(ids)) == len(acknowledged) == 64 * 12
    assert set(ids) == acknowledged
    session = await api.get(sid)
    assert session["action_count"] == 768
    assert session["checkpoint_count"] == sum(TYPES[step % len(TYPES)] == "checkpoint" for step in range(12)) * 64
    pages = await database["log_pages"].find({"session_id": sid}).to_list(None)
    assert len(pages) >= 768 // (page_entries // 2) - 2
    in_pages = [entry["id"] for page in pages for entry in page["entries"]]
    assert len(in_pages) == len(set(in_pages))


async def test_pages_read_while_pages_seal_hold_exactly_the_entries_at_their_positions(api: Api) -> None:
    """Readers page by offset right at the edge of the sealed part while a writer's appends seal page after page
    (every two appends here): the sealed part of a window is read beside the session document, and a page sealed
    between the two reads must not leave a gap or a repeat."""
    sid = (await api.create())["session_id"]
    written = 0
    done = asyncio.Event()

    async def writer() -> None:
        nonlocal written
        for number in range(240):
            await api.post(sid, "work-log", {"id": f"e{number:04d}", "message": f"step {number}"}, 201)
            written = number + 1
        done.set()

    reads = 0

    async def reader(lag: int) -> None:
        nonlocal reads
        while not done.is_set():
            offset = max(0, written - lag)
            body = ok(await api.call("GET", f"/{sid}/work-log", params={"offset": offset, "limit": 6}))
            ids = [item["id"] for item in body["items"]]
            assert ids == [f"e{n:04d}" for n in range(offset, min(offset + 6, body["total"]))], (offset, body["total"])
            reads += 1

    await asyncio.gather(writer(), *(reader(lag) for lag in (1, 2, 3, 5)))
    assert reads > 100


async def test_appends_and_seals_are_counted_in_the_metrics(api: Api, client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    sid = (await api.create())["session_id"]
    written = await grow(api, sid, 60)
    await api.post(sid, "work-log", {"id": written[0]["id"], "message": "a retry", "type": "info"}, 422)
    after = await scrape(client)

    def moved(name: str) -> float:
        return value(after, name, kind="work_log") - value(before, name, kind="work_log")

    pages = await LogPage.find({"session_id": sid, "kind": "work_log"}).count()
    assert moved("handoff_entries_appended_total") == len(written) == 60
    assert moved("handoff_page_seals_total") == pages > 10
