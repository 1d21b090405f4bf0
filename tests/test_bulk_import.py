"""``handoff.bulk`` against the real server: imported sessions answer the API like sessions built through it.

Sessions are built through the HTTP API, exported, deleted and imported again; every read route must answer the
same, and the stored documents (counters, ``last_checkpoint``, ``payload_bytes``, ``duration_minutes``) must be
equal. Then the import's own promises: rejects with line numbers and nothing partial stored, idempotency,
``replace``, the Laravel rows, and a 10,000-session file through the batching path.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff import bulk, clock
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.sessions.models import Session
from tests.factories import Tenant, exported

DATA = Path(__file__).parent / "data"
LARAVEL = DATA / "laravel_agent_sessions.json"

#: Every read route of a session, with the query strings worth checking.
READ_ROUTES = [
    "",
    "/work-log",
    "/work-log?type=checkpoint",
    "/work-log?order=desc&offset=1&limit=2",
    "/recent-actions?limit=3",
    "/artifacts",
    "/artifacts?action=created",
    "/handoff-context",
    "/replay-context",
    "/mcp-context",
]


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _build_session(client: httpx.AsyncClient, tenant: Tenant, *, end: bool, external_id: str) -> str:
    """A session with every kind of entry, built through the API; ended, or handed off (paused)."""
    h = tenant.headers
    body = {"agent_type": "claude", "plan": "auth", "context_summary": {"goal": "g"}, "external_id": external_id}
    sid: str = (await _ok(await client.post("/v1/sessions", json=body, headers=h), 201))["session_id"]
    base = f"/v1/sessions/{sid}"
    await _ok(await client.post(f"{base}/actions", json={"action": "read", "details": {"p": "a.py"}}, headers=h), 201)
    await _ok(await client.post(f"{base}/actions", json={"action": "think", "id": "my-id"}, headers=h), 201)
    for kind in ("checkpoint", "decision", "error", "warning", "success", "info", "checkpoint"):
        entry = {"message": f"{kind} happened", "type": kind, "data": {"kind": kind}}
        await _ok(await client.post(f"{base}/work-log", json=entry, headers=h), 201)
    batch = {"entries": [{"message": "batched 1"}, {"message": "batched 2", "type": "error"}]}
    await _ok(await client.post(f"{base}/work-log/batch", json=batch, headers=h), 201)
    for path, action in (("a.py", "created"), ("b.py", "modified"), ("c.py", "deleted"), ("d.py", None)):
        artifact = {"path": path, "metadata": {"lines": 3}} | ({"action": action} if action else {})
        await _ok(await client.post(f"{base}/artifacts", json=artifact, headers=h), 201)
    await _ok(await client.patch(f"{base}/context", json={"step": 2}, headers=h))
    if end:
        await _ok(await client.post(f"{base}/complete", json={"summary": "done"}, headers=h))
    else:
        notes = {"summary": "half way", "next_steps": ["finish"], "blockers": ["none"], "context_for_next": {"x": 1}}
        await _ok(await client.post(f"{base}/handoff", json=notes, headers=h))
    return sid


async def _make_plan(client: httpx.AsyncClient, tenant: Tenant, slug: str) -> None:
    plan = {"slug": slug, "title": slug, "phases": [{"name": "one", "tasks": [{"name": "t", "status": "completed"}]}]}
    await _ok(await client.post("/v1/plans", json=plan, headers=tenant.headers), 201)


async def _export(workspace: str | None = None) -> list[str]:
    return (await exported(workspace)).decode().splitlines()


async def _import(settings: Settings, tenant: Tenant, *paths: Path, **options: Any) -> bulk.ImportResult:
    return await bulk.import_files(list(paths), workspace=tenant.workspace.slug, settings=settings, **options)


async def _stored(database: MongoDatabase, query: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    docs = await database["sessions"].find(query or {}, {"_id": 0}).to_list(None)
    return {doc["session_id"]: doc for doc in docs}


def _write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _row(session_id: str, /, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session_id,
        "status": "active",
        "started_at": "2026-01-05T10:00:00+00:00",
        "work_log": [{"id": "e1", "action": "read", "details": None, "timestamp": "2026-01-05T10:01:00+00:00"}],
        "artifacts": [],
    }
    return row | changes


# Built through the API, then imported -----------------------------------------------------------------------


async def test_imported_session_answers_every_route_like_the_one_built_through_the_api(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: MongoDatabase,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _make_plan(client, tenant, "auth")
    ids = [
        await _build_session(client, tenant, end=True, external_id="thread-1"),
        await _build_session(client, tenant, end=False, external_id="thread-2"),
    ]
    later = clock.now() + timedelta(minutes=3)
    monkeypatch.setattr(clock, "now", lambda: later)  # durations of open sessions read the same twice
    before = {
        (sid, route): await client.get(f"/v1/sessions/{sid}{route}", headers=tenant.headers)
        for sid in ids
        for route in READ_ROUTES
    }
    listing = (await client.get("/v1/sessions", headers=tenant.headers)).json()
    stored = await _stored(database)
    export = _write_lines(tmp_path / "export.jsonl", await _export(tenant.workspace.slug))
    for sid in ids:
        assert (await client.delete(f"/v1/sessions/{sid}", headers=tenant.headers)).status_code == 204

    result = await _import(settings, tenant, export)

    assert result.summary() == "imported 2, skipped 0, rejected 0"
    assert result.rejects_path is None
    assert not bulk.default_rejects_path(export).exists()
    assert await _stored(database) == stored
    for (sid, route), response in before.items():
        again = await client.get(f"/v1/sessions/{sid}{route}", headers=tenant.headers)
        assert (again.status_code, again.json()) == (response.status_code, response.json()), route
    assert (await client.get("/v1/sessions", headers=tenant.headers)).json() == listing


async def test_imported_open_session_takes_appends_and_replays(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    path = _write_lines(tmp_path / "in.jsonl", [_row("s1", work_log=[{"message": "cp", "type": "checkpoint"}])])
    await _import(settings, tenant, path)
    base = "/v1/sessions/s1"

    await _ok(
        await client.post(f"{base}/work-log", json={"message": "more", "type": "error"}, headers=tenant.headers), 201
    )
    session = await _ok(await client.get(base, headers=tenant.headers))
    replay = await _ok(await client.post(f"{base}/replay", json={}, headers=tenant.headers), 201)

    assert (session["action_count"], session["checkpoint_count"], session["error_count"]) == (2, 1, 1)
    assert replay["context_summary"]["replay_checkpoint"]["message"] == "cp"
    assert replay["context_summary"]["original_progress"]["summary"] == "2 actions recorded, 1 checkpoints, 1 errors"


async def test_export_import_export_gives_the_same_lines(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    await _make_plan(client, tenant, "auth")
    for n in range(3):
        await _build_session(client, tenant, end=n % 2 == 0, external_id=f"thread-{n}")
    first = await _export(tenant.workspace.slug)
    path = _write_lines(tmp_path / "export.jsonl", first)

    result = await _import(settings, other_tenant, path)
    second = await _export(other_tenant.workspace.slug)

    assert result.imported == 3
    source_id, target_id = tenant.workspace.workspace_id, other_tenant.workspace.workspace_id
    assert sorted(line.replace(source_id, target_id) for line in first) == sorted(second)
    assert len(await _export()) == 6  # every workspace


async def _lineage_and_handoffs(client: httpx.AsyncClient, tenant: Tenant, ids: list[str]) -> list[Any]:
    h = tenant.headers
    lineages = [await _ok(await client.get(f"/v1/analytics/lineage/{sid}", headers=h)) for sid in ids]
    return [*lineages, await _ok(await client.get("/v1/analytics/handoffs", headers=h))]


@pytest.mark.parametrize("written", ["now", "before replayed_from was exported"])
async def test_replay_lineage_and_waiting_handoffs_survive_export_and_import(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    settings: Settings,
    tmp_path: Path,
    written: str,
) -> None:
    """original → r1 → r2 with original and r1 handed off before being replayed, plus a handoff nobody continued:
    only r2's notes and the lone one wait. Imported elsewhere, lineage and handoffs answer the same."""
    h = tenant.headers
    await _make_plan(client, tenant, "auth")
    notes = {"summary": "over to you", "next_steps": ["go on"]}
    original = await _build_session(client, tenant, end=False, external_id="thread-1")
    lone = await _build_session(client, tenant, end=False, external_id="thread-2")
    chain = [original]
    for _ in range(2):
        replay = await _ok(await client.post(f"/v1/sessions/{chain[-1]}/replay", json={}, headers=h), 201)
        chain.append(replay["session_id"])
        await _ok(await client.post(f"/v1/sessions/{chain[-1]}/handoff", json=notes, headers=h))
    ids = [*chain, lone]
    before = await _lineage_and_handoffs(client, tenant, ids)
    assert [node["session_id"] for node in before[2]["ancestors"]] == chain[:2]
    assert sorted(item["session_id"] for item in before[-1]["items"]) == sorted([chain[2], lone])
    lines = await _export(tenant.workspace.slug)
    by_id = {json.loads(line)["session_id"]: json.loads(line) for line in lines}
    assert [by_id[sid]["replayed_from"] for sid in ids] == [None, original, chain[1], None]
    if written != "now":  # an older export: the origin only in the context a replay through the API records
        lines = [json.dumps({k: v for k, v in json.loads(line).items() if k != "replayed_from"}) for line in lines]
    path = _write_lines(tmp_path / "export.jsonl", lines)

    result = await _import(settings, other_tenant, path)

    assert result.summary() == "imported 4, skipped 0, rejected 0"
    assert await _lineage_and_handoffs(client, other_tenant, ids) == before
    moved = await _stored(database, {"workspace_id": other_tenant.workspace.workspace_id})
    assert [moved[sid]["replayed_from"] for sid in ids] == [None, original, chain[1], None]


async def test_the_pause_time_and_the_legacy_ids_survive_export_and_import(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: MongoDatabase,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored fields the Session does not show: a handed-off session updated later still waits since its handoff,
    and a session imported from the original system keeps its integer ids, after a move to another workspace."""
    await _make_plan(client, tenant, "auth")
    paused = await _build_session(client, tenant, end=False, external_id="thread-1")
    later = clock.now() + timedelta(minutes=7)
    monkeypatch.setattr(clock, "now", lambda: later)
    patch = {"more": "context"}
    await _ok(await client.patch(f"/v1/sessions/{paused}/context", json=patch, headers=tenant.headers))
    await _import(settings, tenant, LARAVEL, file_format="laravel")
    waiting = await _ok(await client.get("/v1/analytics/handoffs", headers=tenant.headers))
    path = _write_lines(tmp_path / "export.jsonl", await _export(tenant.workspace.slug))

    result = await _import(settings, other_tenant, path)

    assert result.rejected == 0
    assert await _ok(await client.get("/v1/analytics/handoffs", headers=other_tenant.headers)) == waiting
    source = await _stored(database, {"workspace_id": tenant.workspace.workspace_id})
    moved = await _stored(database, {"workspace_id": other_tenant.workspace.workspace_id})
    assert moved[paused]["paused_at"] == source[paused]["paused_at"] < moved[paused]["updated_at"]
    legacy = {sid: doc["legacy"] for sid, doc in source.items() if doc["legacy"]}
    assert len(legacy) == 4
    assert {sid: moved[sid]["legacy"] for sid in legacy} == legacy


async def test_a_replayed_from_that_is_not_an_id_rejects_the_line(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    path = _write_lines(
        tmp_path / "in.jsonl",
        [_row("ok", replayed_from=None), _row("number", replayed_from=7), _row("tab", replayed_from="a\tb")],
    )

    result = await _import(settings, tenant, path)

    assert result.summary() == "imported 1, skipped 0, rejected 2"
    assert result.rejects_path is not None
    errors = [json.loads(line)["error"] for line in result.rejects_path.read_text().splitlines()]
    assert errors == [
        "replayed_from must be a string, not int",
        "replayed_from 'a\\tb' must be 1-255 printable ASCII characters",
    ]
    assert set(await _stored(database)) == {"ok"}


# Rejects ----------------------------------------------------------------------------------------------------


async def test_every_kind_of_bad_line_is_rejected_with_its_line_number_and_nothing_partial(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    good = [{"id": f"e{i}", "message": f"m{i}"} for i in range(3)]
    lines: list[Any] = [
        _row("ok-1"),
        '{"session_id": "broken", ',
        _row("x", session_id=None),
        _row("no-status", status=None),
        _row("no-start", started_at=None),
        _row("bad-status", status="archived"),
        _row("bad-type", work_log=[*good, {"message": "m", "type": "note"}]),
        _row("bad-time", work_log=[*good, {"message": "m", "timestamp": "2026-02-30T10:00:00"}]),
        "",
        _row("too-big-entry", work_log=[*good, {"message": "m", "data": {"b": "x" * 70_000}}]),
        _row("bad-id", work_log=[{"id": "no spaces", "message": "m"}]),
        _row("ok-2"),
    ]
    path = _write_lines(tmp_path / "in.jsonl", lines)

    result = await _import(settings, tenant, path)

    assert result.summary() == "imported 2, skipped 0, rejected 9"
    assert result.rejects_path == tmp_path / "in.jsonl.rejects.jsonl"
    rejects = [json.loads(line) for line in result.rejects_path.read_text().splitlines()]
    assert all(set(reject) == {"line", "error", "source"} for reject in rejects)
    errors = {reject["line"]: reject["error"] for reject in rejects}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 10, 11]
    assert errors[2].startswith("invalid JSON")
    assert errors[3] == "missing required field 'session_id'"
    assert errors[4] == "missing required field 'status'"
    assert errors[5] == "missing required field 'started_at'"
    assert errors[6].startswith("unknown status 'archived'")
    assert errors[7].startswith("work_log[3].type 'note' is not one of")
    assert errors[8].startswith("work_log[3].timestamp: '2026-02-30T10:00:00' is not")
    assert errors[10].startswith("work_log[3]: data is 70008 bytes serialized; the limit is 65536")
    assert errors[11].startswith("work_log[0].id")
    sources = {reject["line"]: reject["source"] for reject in rejects}
    assert sources[2] == '{"session_id": "broken", '
    assert json.loads(sources[6])["session_id"] == "bad-status"
    assert set(await _stored(database)) == {"ok-1", "ok-2"}


async def test_external_id_taken_by_another_session_is_rejected(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    await _ok(await client.post("/v1/sessions", json={"external_id": "thread-1"}, headers=tenant.headers), 201)
    path = _write_lines(tmp_path / "in.jsonl", [_row("a"), _row("b", external_id="thread-1"), _row("c")])
    rejects = tmp_path / "out" / "rejected.jsonl"
    rejects.parent.mkdir()

    result = await _import(settings, tenant, path, rejects=rejects, batch_size=2)

    assert result.summary() == "imported 2, skipped 0, rejected 1"
    (reject,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert reject["line"] == 2
    assert reject["error"] == "external_id 'thread-1' is already used by another session of the workspace"
    assert "b" not in await _stored(database)


async def test_unreadable_input_raises_before_anything_is_written(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    good = _write_lines(tmp_path / "good.jsonl", [_row("a")])

    with pytest.raises(bulk.UnreadableFile, match=r"cannot read .*missing.jsonl: No such file"):
        await _import(settings, tenant, good, tmp_path / "missing.jsonl")
    (tmp_path / "binary.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    with pytest.raises(bulk.UnreadableFile, match="not a JSON or JSON Lines file"):
        await _import(settings, tenant, tmp_path / "binary.gz")

    assert await _stored(database) == {}


# Idempotency and replace ------------------------------------------------------------------------------------


async def test_the_same_import_twice_skips_everything_and_changes_nothing(
    tenant: Tenant, database: MongoDatabase, settings: Settings
) -> None:
    first = await _import(settings, tenant, LARAVEL)
    stored = await database["sessions"].find({}).to_list(None)

    second = await _import(settings, tenant, LARAVEL)

    assert first.summary() == "imported 4, skipped 0, rejected 0"
    assert second.summary() == "imported 0, skipped 4, rejected 0"
    assert await database["sessions"].find({}).to_list(None) == stored


async def test_replace_overwrites_the_whole_session_and_recomputes_it(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    path = _write_lines(tmp_path / "in.jsonl", [_row("a", agent_type="one", context_summary={"old": 1}), _row("b")])
    await _import(settings, tenant, path)
    ids = {doc["session_id"]: doc["_id"] for doc in await database["sessions"].find({}).to_list(None)}
    changed = _row(
        "a",
        agent_type="two",
        status="completed",
        ended_at="2026-01-05T11:30:00+00:00",
        work_log=[{"id": "n1", "message": "boom", "type": "error"}, {"id": "n2", "message": "c", "type": "checkpoint"}],
    )
    _write_lines(path, [changed, _row("b")])

    skipped = await _import(settings, tenant, path)
    replaced = await _import(settings, tenant, path, on_conflict="replace")

    assert skipped.summary() == "imported 0, skipped 2, rejected 0"
    assert replaced.summary() == "imported 2, skipped 0, rejected 0"
    doc = await database["sessions"].find_one({"session_id": "a"})
    assert doc is not None
    assert doc["_id"] == ids["a"]
    assert (doc["agent_type"], doc["status"], doc["context_summary"]) == ("two", "completed", None)
    assert (doc["action_count"], doc["error_count"], doc["checkpoint_count"]) == (2, 1, 1)
    assert doc["last_checkpoint"]["id"] == "n2"
    assert doc["duration_minutes"] == 90


async def test_reimport_of_sessions_with_external_ids_skips_or_replaces_without_rejects(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    rows = [_row(f"s{n:02d}", external_id=f"thread-{n}") for n in range(30)]
    path = _write_lines(tmp_path / "in.jsonl", rows)
    first = await _import(settings, tenant, path, batch_size=7)
    stored = await _stored(database)

    again = await _import(settings, tenant, path, batch_size=7)
    replaced = await _import(settings, tenant, path, batch_size=7, on_conflict="replace")
    _write_lines(path, [*rows[:12], *(_row(f"new{n}", external_id=f"new-{n}") for n in range(5)), *rows[12:]])
    grown = await _import(settings, tenant, path, batch_size=7)

    assert first.summary() == "imported 30, skipped 0, rejected 0"
    assert again.summary() == "imported 0, skipped 30, rejected 0"
    assert replaced.summary() == "imported 30, skipped 0, rejected 0"
    assert grown.summary() == "imported 5, skipped 30, rejected 0"
    after = await _stored(database)
    assert {sid: after[sid] for sid in stored} == stored
    assert len(after) == 35


async def test_existing_session_refused_by_its_external_id_index_first_still_counts_as_existing(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    """A server may check the external_id index before the session key; the import must not reject then."""
    sessions = database["sessions"]
    indexes = {index.document["name"]: index for index in Session.Settings.indexes}
    await sessions.drop_index("workspace_session_unique")
    await sessions.create_indexes([indexes["workspace_session_unique"]])  # now after the external_id index
    try:
        path = _write_lines(tmp_path / "in.jsonl", [_row("a", external_id="t-a"), _row("b", external_id="t-b")])
        await _import(settings, tenant, path)
        _write_lines(path, [_row("a", external_id="t-a"), _row("c", external_id="t-b")])

        result = await _import(settings, tenant, path)
    finally:
        await sessions.drop_index("workspace_external_id_unique")
        await sessions.create_indexes([indexes["workspace_external_id_unique"]])

    assert result.summary() == "imported 0, skipped 1, rejected 1"
    reject = json.loads(bulk.default_rejects_path(path).read_text())
    assert (reject["line"], reject["error"]) == (
        2,
        "external_id 't-b' is already used by another session of the workspace",
    )


async def test_a_session_twice_in_one_file_is_imported_once_or_last_wins_under_replace(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    path = _write_lines(tmp_path / "in.jsonl", [_row("a", agent_type="first"), _row("a", agent_type="second")])

    skip = await _import(settings, tenant, path)
    first = (await _stored(database))["a"]["agent_type"]
    await database["sessions"].delete_many({})
    replace = await _import(settings, tenant, path, on_conflict="replace")

    assert (skip.imported, skip.skipped, first) == (1, 1, "first")
    assert (replace.imported, replace.skipped) == (2, 0)
    assert (await _stored(database))["a"]["agent_type"] == "second"


# Laravel ----------------------------------------------------------------------------------------------------


async def test_laravel_rows_read_through_the_api(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    await _make_plan(client, tenant, "auth-rewrite")
    path = tmp_path / "dump.json"
    shutil.copy(LARAVEL, path)

    result = await _import(settings, tenant, path, plan_map={"12": "auth-rewrite", "13": "gone"})

    assert result.summary() == "imported 4, skipped 0, rejected 0"
    assert result.warnings == ["plan 'gone' of the plan map does not exist in workspace 'acme'"]
    h = tenant.headers
    done = await _ok(await client.get("/v1/sessions/sess_20250301_auth", headers=h))
    assert (done["duration"], done["duration_minutes"], done["status"]) == ("2h 5m", 125, "completed")
    assert (done["action_count"], done["checkpoint_count"], done["error_count"], done["artifact_count"]) == (6, 2, 1, 2)
    assert done["plan"] == "auth-rewrite"
    assert done["context_summary"]["goal"] == "Rewrite the auth middleware"
    assert done["started_at"] == "2025-03-01T09:00:00.000000+00:00"
    log = await _ok(await client.get("/v1/sessions/sess_20250301_auth/work-log?type=checkpoint", headers=h))
    assert [(e["id"], e["data"]) for e in log["items"]] == [("legacy-1", {}), ("legacy-5", {"tests": 212})]
    replay = await _ok(await client.get("/v1/sessions/sess_20250301_auth/replay-context", headers=h))
    assert replay["last_checkpoint"]["message"] == "Middleware rewritten, suite green"
    assert [d["message"] for d in replay["decisions"]] == ["Keep session guard for web routes"]
    assert replay["progress_summary"]["summary"] == "6 actions recorded, 2 checkpoints, 1 errors"
    assert replay["artifacts_by_action"] == {
        "created": ["tests/AuthTest.php"],
        "modified": ["app/Http/Middleware/Auth.php"],
        "deleted": [],
    }
    assert replay["plan"] == {"slug": "auth-rewrite", "title": "auth-rewrite", "current_phase": None}
    paused = await _ok(await client.get("/v1/sessions/sess_20250302_billing/handoff-context", headers=h))
    assert paused["handoff_notes"] == {  # as the handoff route stores notes; the dump's context_for_next is PHP's []
        "summary": "Invoice export half done",
        "next_steps": ["CSV writer", "tests"],
        "blockers": [],
        "context_for_next": {},
    }
    assert paused["context_summary"] == {}
    assert paused["plan"]["progress"]["percentage"] == 100
    empty = await _ok(await client.get("/v1/sessions/sess_20250303_empty/replay-context", headers=h))
    assert empty["progress_summary"] == {"completed_steps": 0, "last_action": None, "summary": "No work recorded"}
    assert empty["context_summary"] is None
    failed = await _ok(await client.get("/v1/sessions/sess_20250304_failed/mcp-context", headers=h))
    assert (failed["duration"], failed["ended_at"]) == ("42m", "2025-03-04T07:42:00.000000+00:00")
    assert failed["plan_slug"] is None
    listed = await _ok(await client.get("/v1/sessions?status=paused", headers=h))
    assert [s["session_id"] for s in listed["items"]] == ["sess_20250302_billing"]


async def test_laravel_rows_as_json_lines_store_the_same_documents(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    await _import(settings, tenant, LARAVEL)
    from_array = await _stored(database)
    await database["sessions"].delete_many({})
    lines = _write_lines(tmp_path / "rows.jsonl", json.loads(LARAVEL.read_text()))

    result = await _import(settings, tenant, lines, file_format="laravel")

    assert result.imported == 4
    assert await _stored(database) == from_array


async def test_several_files_in_one_import_name_the_file_in_rejects(
    tenant: Tenant, settings: Settings, tmp_path: Path
) -> None:
    one = _write_lines(tmp_path / "one.jsonl", [_row("a"), "oops"])
    two = _write_lines(tmp_path / "two.jsonl", ["{}", _row("b")])

    result = await _import(settings, tenant, one, LARAVEL, two)

    assert result.summary() == "imported 6, skipped 0, rejected 2"
    rejects = [json.loads(line) for line in (tmp_path / "one.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [(str(one), 2), (str(two), 1)]


async def test_auto_format_reads_each_row_by_its_shape(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    laravel_row = json.loads(LARAVEL.read_text())[2]
    path = _write_lines(tmp_path / "mixed.jsonl", [_row("a"), laravel_row])

    result = await _import(settings, tenant, path)

    assert result.summary() == "imported 2, skipped 0, rejected 0"
    stored = await _stored(database)
    assert stored["a"]["legacy"] is None
    assert stored["sess_20250303_empty"]["legacy"]["id"] == 103


async def test_worker_processes_store_and_reject_exactly_what_the_thread_does(
    tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    rows: list[Any] = [_row(f"s{n}", work_log=[{"message": f"m{n}", "type": "checkpoint"}]) for n in range(40)]
    rows[7] = _row("bad", status="lost")
    rows[21] = "{oops"
    path = _write_lines(tmp_path / "in.jsonl", rows)

    threaded = await _import(settings, tenant, path, batch_size=8, workers=0)
    stored = await _stored(database)
    rejects = bulk.default_rejects_path(path).read_text()
    await database["sessions"].delete_many({})
    pooled = await _import(settings, tenant, path, batch_size=8, workers=1)

    assert threaded.summary() == pooled.summary() == "imported 38, skipped 0, rejected 2"
    assert await _stored(database) == stored
    assert bulk.default_rejects_path(path).read_text() == rejects


# Volume -----------------------------------------------------------------------------------------------------


async def test_ten_thousand_sessions_import_in_batches(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    start = datetime(2026, 2, 1, tzinfo=UTC)
    path = tmp_path / "many.jsonl"
    with path.open("w") as out:
        for n in range(10_000):
            at = (start + timedelta(minutes=n)).isoformat()
            entries = [
                {"id": "a", "action": "edit", "details": {"n": n}, "timestamp": at},
                {"id": "c", "message": "saved", "type": "checkpoint", "data": {}, "timestamp": at},
            ]
            out.write(json.dumps(_row(f"s{n:05d}", started_at=at, work_log=entries)) + "\n")

    result = await _import(settings, tenant, path, batch_size=500)

    assert result.summary() == "imported 10000, skipped 0, rejected 0"
    assert await database["sessions"].count_documents({"workspace_id": tenant.workspace.workspace_id}) == 10_000
    last = await _ok(await client.get("/v1/sessions/s09999", headers=tenant.headers))
    assert (last["action_count"], last["checkpoint_count"]) == (2, 1)
    newest = await _ok(await client.get("/v1/sessions?limit=1", headers=tenant.headers))
    assert newest["items"][0]["session_id"] == "s09999"
