"""Import and export on the paged log, with pages of four entries so a session of a few dozen entries spans many
sealed pages.

A session built through the API is exported and imported into another workspace: both must answer every read
route the same (windows by offset, anchor, type, id prefix; entries by id; artifacts; contexts), store the same
counters, and take appends the same afterwards, retries of imported ids included. A 200,000-entry session (default
page bounds) goes out and back in unchanged, and its export holds a small part of its JSON in memory.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff import bulk, clock
from handoff.bulk import importer
from handoff.config import Settings
from handoff.db import MongoDatabase
from tests.api import Api, ok
from tests.factories import Tenant, exported, small_pages_app

TYPES = ["info", "checkpoint", "info", "decision", "error", "warning", "success", "info", "checkpoint"]
ACTIONS = ["created", "modified", "modified", "deleted"]
#: Fields that name where a session is stored rather than what it holds.
PLACE = ("_id", "workspace_id")


app = small_pages_app()


async def _build(api: Api) -> str:
    """A session grown through the API past many seals of both kinds: typed entries, actions, batches, artifacts,
    context and a handoff."""
    sid = (await api.create(agent_type="claude", context_summary={"goal": "paging"}))["session_id"]
    for n in range(40):
        if n % 10 == 7:
            entries = [{"id": f"b{n:02d}-{k}", "message": f"batch {n}.{k}", "type": TYPES[k]} for k in range(5)]
            await api.post(sid, "work-log/batch", {"entries": entries}, 201)
        elif n % 10 == 3:
            await api.post(sid, "actions", {"id": f"a{n:02d}", "action": f"act {n}", "details": {"n": n}}, 201)
        else:
            await api.post(sid, "work-log", {"id": f"e{n:02d}", "message": f"step {n}", "type": TYPES[n % 9]}, 201)
        if n % 3 == 0:
            body = {"id": f"f{n:02d}", "path": f"src/m{n}.py", "action": ACTIONS[n % 4], "metadata": {"n": n}}
            await api.post(sid, "artifacts", body, 201)
    await api.call("PATCH", f"/{sid}/context", {"context_summary": {"goal": "paging", "done": 40}})
    await api.post(sid, "handoff", {"summary": "half way", "next_steps": ["finish"]})
    return sid


def _routes() -> list[str]:
    routes = ["", "/recent-actions?limit=7", "/handoff-context", "/replay-context", "/mcp-context"]
    for query in [
        "",
        "?limit=5",
        "?offset=13&limit=9",
        "?order=desc&offset=3&limit=11",
        "?type=checkpoint",
        "?type=info&order=desc&limit=3",
        "?after=e05&limit=10",
        "?before=e38",
        "?after=e02&before=b27-2",
        "?id_prefix=b",
        "?id_prefix=e1&order=desc&limit=4",
        "?type=error&id_prefix=e",
    ]:
        routes.append(f"/work-log{query}")
    for query in ["", "?limit=3&offset=4", "?action=modified", "?has_blob=false", "?order=desc"]:
        routes.append(f"/artifacts{query}")
    for entry in ["e00", "a03", "b17-4", "e39", "missing"]:
        routes.append(f"/work-log/{entry}")
    routes += ["/artifacts/f00", "/artifacts/f39", "/artifacts/missing"]
    return routes


async def _answers(client: httpx.AsyncClient, tenant: Tenant, sid: str) -> dict[str, tuple[int, str]]:
    """Every route's status and body, the workspace's id blanked so two workspaces compare."""
    answers = {}
    for route in _routes():
        response = await client.get(f"/v1/sessions/{sid}{route}", headers=tenant.headers)
        answers[route] = (response.status_code, response.text.replace(tenant.workspace.workspace_id, "WS"))
    return answers


async def _stored(database: MongoDatabase, tenant: Tenant, sid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The session document and its pages (in log order), without where they are stored or when pages sealed."""
    key = {"workspace_id": tenant.workspace.workspace_id, "session_id": sid}
    doc = await database["sessions"].find_one(key)
    assert doc is not None
    pages = await database["log_pages"].find(key, {"_id": 0, "no": 0, "sealed_at": 0, "workspace_id": 0}).to_list()
    pages.sort(key=lambda page: (page["kind"], page["before"]["all"]))
    return {name: value for name, value in doc.items() if name not in PLACE}, pages


#: Where the log is cut into pages: ``seals.paged_layout`` cuts as single appends would have (a full open page is
#: sealed before the next entry), but a batch append takes a page with room far past its bounds and is sealed
#: after it, so a log written with batches may be cut elsewhere; what the session holds and every answer (compared
#: separately) do not differ.
LAYOUT = ("open_bytes", "sealed", "sealed_upto", "pages_version", "noted", "work_log", "artifacts")


def _contents(stored: tuple[dict[str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
    """The session's fields and counters outside the layout, and each kind's entries in log order."""
    doc, pages = stored
    contents = {name: value for name, value in doc.items() if name not in LAYOUT}
    for kind in ("work_log", "artifacts"):
        contents[kind] = [entry for page in pages if page["kind"] == kind for entry in page["entries"]] + doc[kind]
    return contents


def _layout_is_consistent(stored: tuple[dict[str, Any], list[dict[str, Any]]]) -> bool:
    """The layout's bookkeeping agrees with the pages and the open page, as the append guards rely on."""
    doc, pages = stored
    for kind in ("work_log", "artifacts"):
        sealed = [page for page in pages if page["kind"] == kind]
        entries = sum(len(page["entries"]) for page in sealed)
        assert doc["sealed_upto"][kind] == entries == doc["sealed"][kind]["all"]
        assert doc["appended"][kind] == entries + len(doc[kind])
        assert doc["stored_bytes"][kind] == doc["open_bytes"][kind] + sum(page["stored_bytes"] for page in sealed)
    assert doc["pages_version"] == len(pages)
    assert doc["payload_bytes"] == sum(doc["stored_bytes"].values())
    return True


async def test_imported_paged_session_answers_every_route_and_counter_like_the_api_built_one(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
) -> None:
    sid = await _build(Api(client, tenant))
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))

    result = await bulk.import_files([path], workspace=other_tenant.workspace.slug, settings=small_settings)

    assert result.summary() == "imported 1, skipped 0, rejected 0"
    built, imported = await _stored(database, tenant, sid), await _stored(database, other_tenant, sid)
    assert built[0]["pages_version"] > 10
    assert {kind: len([p for p in built[1] if p["kind"] == kind]) > 3 for kind in ("work_log", "artifacts")} == {
        "work_log": True,
        "artifacts": True,
    }
    assert _contents(imported) == _contents(built)
    assert _layout_is_consistent(imported)
    assert await _answers(client, other_tenant, sid) == await _answers(client, tenant, sid)


@pytest.mark.parametrize("kind", ["work-log", "artifacts"])
async def test_appends_to_an_imported_session_work_and_retries_of_imported_ids_are_the_stored_entries(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    sid = await _build(Api(client, tenant))
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))
    await bulk.import_files([path], workspace=other_tenant.workspace.slug, settings=small_settings)
    apis = [Api(client, tenant), Api(client, other_tenant)]
    later = clock.now() + timedelta(minutes=3)
    monkeypatch.setattr(clock, "now", lambda: later)  # the same writes at the same time to each
    for api in apis:
        await api.post(sid, "resume")
    retried = ["e00", "b17-2", "e39"] if kind == "work-log" else ["f00", "f21", "f39"]

    for api in apis:
        for old in retried:  # a sealed one, one further on, the newest
            stored = ok(await api.call("GET", f"/{sid}/{kind}/{old}"))
            body = {name: value for name, value in stored.items() if name != "timestamp"}  # the same entry again
            assert ok(await api.call("POST", f"/{sid}/{kind}", body), 200) == stored
        for n in range(9):
            body = (
                {"id": f"new{n}", "message": f"new {n}", "type": TYPES[n]}
                if kind == "work-log"
                else {"id": f"new{n}", "path": f"n{n}.py", "action": ACTIONS[n % 4]}
            )
            ok(await api.call("POST", f"/{sid}/{kind}", body), 201)

    imported, built = await _stored(database, other_tenant, sid), await _stored(database, tenant, sid)
    assert _contents(imported) == _contents(built)
    assert _layout_is_consistent(imported)
    assert await _answers(client, other_tenant, sid) == await _answers(client, tenant, sid)


# A long session ----------------------------------------------------------------------------------------------

LONG_ENTRIES = 200_000
START = datetime(2026, 3, 1, tzinfo=UTC)


def _long_line(session_id: str) -> dict[str, Any]:
    def at(i: int) -> str:
        return (START + timedelta(milliseconds=10 * i)).isoformat()

    work_log: list[dict[str, Any]] = []
    for i in range(LONG_ENTRIES):
        if i % 5 == 0:
            work_log.append({"id": f"a{i}", "action": "edit", "details": {"i": i}, "timestamp": at(i)})
        else:
            work_log.append({"id": f"e{i}", "message": f"m{i}", "type": TYPES[i % 9], "data": {}, "timestamp": at(i)})
    artifacts = [
        {"id": f"f{i}", "path": f"p{i}.py", "action": ACTIONS[i % 4], "metadata": {}, "timestamp": at(i)}
        for i in range(2_000)
    ]
    return {
        "session_id": session_id,
        "status": "active",
        "started_at": START.isoformat(),
        "work_log": work_log,
        "artifacts": artifacts,
    }


async def test_a_200000_entry_session_survives_export_and_import_and_exports_in_flat_memory(
    tenant: Tenant, other_tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    source = _long_line("long")
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(source) + "\n")
    assert (await bulk.import_files([path], workspace=tenant.workspace.slug, settings=settings)).imported == 1
    size = path.stat().st_size
    exported = tmp_path / "export.jsonl"

    tracemalloc.start()
    try:
        assert await bulk.export_to_path(exported, workspace=tenant.workspace.slug) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = await bulk.import_files([exported], workspace=other_tenant.workspace.slug, settings=settings)

    assert result.summary() == "imported 1, skipped 0, rejected 0"
    assert size > 20_000_000
    assert peak < size / 5, f"export peaked at {peak:,} bytes for a session of {size:,}"
    line = json.loads(exported.read_bytes())
    for kind in ("work_log", "artifacts"):
        assert len(line[kind]) == len(source[kind])
        for ours, theirs in zip(line[kind], source[kind], strict=True):
            assert ours["id"] == theirs["id"]
            assert datetime.fromisoformat(ours["timestamp"]) == datetime.fromisoformat(theirs["timestamp"])
            assert {k: v for k, v in ours.items() if k != "timestamp"} == {
                k: v for k, v in theirs.items() if k != "timestamp"
            }
    first = {name: value for name, value in (await _stored_doc(database, tenant)).items() if name not in PLACE}
    again = {name: value for name, value in (await _stored_doc(database, other_tenant)).items() if name not in PLACE}
    assert again == first
    assert first["appended"] == {"work_log": LONG_ENTRIES, "artifacts": 2_000}
    assert first["action_count"] == LONG_ENTRIES
    assert first["artifact_count"] == 2_000


async def _stored_doc(database: MongoDatabase, tenant: Tenant) -> dict[str, Any]:
    doc = await database["sessions"].find_one({"workspace_id": tenant.workspace.workspace_id, "session_id": "long"})
    assert doc is not None
    return doc


async def test_reimport_skips_or_replaces_a_paged_session_with_its_pages(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
) -> None:
    sid = await _build(Api(client, tenant))
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))
    workspace = other_tenant.workspace.slug
    await bulk.import_files([path], workspace=workspace, settings=small_settings)
    first = await _stored(database, other_tenant, sid)

    skipped = await bulk.import_files([path], workspace=workspace, settings=small_settings)
    after_skip = await _stored(database, other_tenant, sid)
    replaced = await bulk.import_files([path], workspace=workspace, settings=small_settings, on_conflict="replace")

    assert skipped.summary() == "imported 0, skipped 1, rejected 0"
    assert replaced.summary() == "imported 1, skipped 0, rejected 0"
    assert after_skip == first
    assert await _stored(database, other_tenant, sid) == first
    assert await _answers(client, other_tenant, sid) == await _answers(client, tenant, sid)


async def test_a_log_of_single_appends_imports_into_the_very_pages_the_api_made(
    *, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: MongoDatabase,
    small_settings: Settings, tmp_path: Path,
) -> None:  # fmt: skip
    api = Api(client, tenant)
    sid = (await api.create())["session_id"]
    for n in range(41):
        await api.post(sid, "work-log", {"id": f"e{n}", "message": "x" * (1 + n * 37 % 300), "type": "info"}, 201)
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))

    await bulk.import_files([path], workspace=other_tenant.workspace.slug, settings=small_settings)

    (built, built_pages), (imported, imported_pages) = [
        await _stored(database, who, sid) for who in (tenant, other_tenant)
    ]
    assert len(built_pages) > 5
    assert imported_pages == built_pages
    assert {name: imported[name] for name in LAYOUT} == {name: built[name] for name in LAYOUT}


class Killed(Exception):
    """An import stopped dead between a session's pages and its document."""


def _kill_after_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    written = importer._Writer._insert_pages

    async def insert_pages_then_die(writer: importer._Writer, rows: list[Any]) -> set[str]:
        await written(writer, rows)
        raise Killed

    monkeypatch.setattr(importer._Writer, "_insert_pages", insert_pages_then_die)


async def _pages_under(database: MongoDatabase, tenant: Tenant, sid: str) -> int:
    return await database["log_pages"].count_documents(
        {"workspace_id": tenant.workspace.workspace_id, "session_id": sid}
    )


@pytest.mark.parametrize("on_conflict", ["skip", "replace"])
async def test_an_import_killed_between_pages_and_session_leaves_no_session_and_the_next_run_completes_it(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_conflict: importer.OnConflict,
) -> None:
    sid = await _build(Api(client, tenant))
    path = tmp_path / "export.jsonl"
    path.write_bytes(await exported(tenant.workspace.slug))
    workspace = other_tenant.workspace.slug
    if on_conflict == "replace":  # the session is there already: the kill comes after its erase
        await bulk.import_files([path], workspace=workspace, settings=small_settings)

    _kill_after_pages(monkeypatch)
    with pytest.raises(Killed):
        await bulk.import_files([path], workspace=workspace, settings=small_settings, on_conflict=on_conflict)
    monkeypatch.undo()

    # Its pages went in, its document did not: no route shows the session, partial or whole.
    assert await _pages_under(database, other_tenant, sid) > 10
    response = await client.get(f"/v1/sessions/{sid}", headers=other_tenant.headers)
    assert response.status_code == 404
    listed = await client.get("/v1/sessions", headers=other_tenant.headers)
    assert sid not in listed.text

    again = await bulk.import_files([path], workspace=workspace, settings=small_settings, on_conflict=on_conflict)

    assert again.summary() == "imported 1, skipped 0, rejected 0"
    imported = await _stored(database, other_tenant, sid)
    assert _layout_is_consistent(imported)  # the pages the killed run left are gone, not doubled
    assert _contents(imported) == _contents(await _stored(database, tenant, sid))
    assert await _answers(client, other_tenant, sid) == await _answers(client, tenant, sid)


async def test_a_paged_session_refused_by_the_database_leaves_none_of_its_pages(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
) -> None:
    sid = await _build(Api(client, tenant))
    line = json.loads(await exported(tenant.workspace.slug))
    taken = f"thread-{sid}"
    await Api(client, other_tenant).create(external_id=taken)  # another session of the workspace holds it
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({**line, "external_id": taken}) + "\n")

    result = await bulk.import_files([path], workspace=other_tenant.workspace.slug, settings=small_settings)

    assert result.summary() == "imported 0, skipped 0, rejected 1"
    assert await _pages_under(database, other_tenant, sid) == 0
    assert result.rejects_path is not None
    (reject,) = [json.loads(row)["error"] for row in result.rejects_path.read_text().splitlines()]
    assert reject == f"external_id {taken!r} is already used by another session of the workspace"


@pytest.mark.parametrize(
    ("on_conflict", "expected"), [("skip", "imported 1, skipped 1"), ("replace", "imported 2, skipped 0")]
)
async def test_a_paged_session_twice_in_a_file_is_written_once_with_its_pages(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    small_settings: Settings,
    tmp_path: Path,
    on_conflict: importer.OnConflict,
    expected: str,
) -> None:
    sid = await _build(Api(client, tenant))
    line = await exported(tenant.workspace.slug)
    path = tmp_path / "twice.jsonl"
    path.write_bytes(line + line)

    result = await bulk.import_files(
        [path], workspace=other_tenant.workspace.slug, settings=small_settings, on_conflict=on_conflict
    )

    assert result.summary() == f"{expected}, rejected 0"
    imported = await _stored(database, other_tenant, sid)
    assert _layout_is_consistent(imported)
    assert _contents(imported) == _contents(await _stored(database, tenant, sid))
