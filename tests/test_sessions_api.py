"""The sessions REST contract (api.md: Sessions, Session lifecycle, Work log, Artifacts, Context summary, Handoff
and replay, Limits) through HTTP against the real MongoDB: every route, every status code, exact shapes.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from pymongo.errors import BulkWriteError, OperationFailure, WriteError

from handoff import clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import store
from handoff.sessions.limits import stored_size
from tests.api import Api, ok, problem
from tests.factories import Tenant

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

SESSION_FIELDS = {
    "session_id",
    "external_id",
    "workspace_id",
    "agent_api_key_id",
    "plan",
    "agent_type",
    "status",
    "context_summary",
    "handoff_notes",
    "final_summary",
    "started_at",
    "last_active_at",
    "ended_at",
    "created_at",
    "updated_at",
    "duration",
    "duration_minutes",
    "action_count",
    "artifact_count",
    "checkpoint_count",
    "error_count",
}
ENTRY_TYPES = ["info", "warning", "error", "success", "checkpoint", "decision"]


# Helpers -----------------------------------------------------------------------------------------------------


def assert_ended_conflict(response: httpx.Response, session_id: str) -> None:
    """409 whose detail says the session has ended and that replay continues it."""
    detail = problem(response, 409)["detail"]
    assert "ended" in detail
    assert f"POST /v1/sessions/{session_id}/replay" in detail


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    """One app for the module: building one costs about half a second, far more than a test here."""
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


class Clock:
    """A pinned clock: every time the service stamps is ``at``."""

    def __init__(self) -> None:
        self.at = clock.now()

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> datetime:
        self.at += delta
        return self.at


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned_clock = Clock()
    monkeypatch.setattr(clock, "now", pinned_clock.now)
    return pinned_clock


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# Creating and reading ----------------------------------------------------------------------------------------


async def test_create_session_answers_201_with_every_field_and_the_defaults(
    api: Api, tenant: Tenant, database: MongoDatabase
) -> None:
    response = await api.call("POST", "", {})

    session = ok(response, 201)
    assert set(session) == SESSION_FIELDS
    sid = session["session_id"]
    assert sid.startswith("sess_")
    assert uuid.UUID(sid.removeprefix("sess_")).version == 4
    assert sid.removeprefix("sess_") == str(uuid.UUID(sid.removeprefix("sess_")))
    assert session | {"session_id": sid} == {
        "session_id": sid,
        "external_id": None,
        "workspace_id": tenant.workspace.workspace_id,
        "agent_api_key_id": tenant.key_id,
        "plan": None,
        "agent_type": None,
        "status": "active",
        "context_summary": None,
        "handoff_notes": None,
        "final_summary": None,
        "started_at": session["started_at"],
        "last_active_at": session["started_at"],
        "ended_at": None,
        "created_at": session["started_at"],
        "updated_at": session["started_at"],
        "duration": "0m",
        "duration_minutes": 0,
        "action_count": 0,
        "artifact_count": 0,
        "checkpoint_count": 0,
        "error_count": 0,
    }
    assert ISO_UTC.match(session["started_at"])
    stored = await database["sessions"].find_one({"session_id": sid})
    assert stored is not None
    assert isinstance(stored["started_at"], datetime)
    assert stored["work_log"] == []
    assert stored["artifacts"] == []
    assert iso(stored["started_at"]) == session["started_at"]


async def test_create_session_without_a_body_is_the_same_as_an_empty_object(api: Api) -> None:
    """Every field of the create body is optional, so the body itself is too (as for complete, fail, replay)."""
    bare = ok(await api.call("POST", ""), 201)
    first = await api.call("POST", "", headers={"Idempotency-Key": "no-body"})
    again = await api.call("POST", "", {}, headers={"Idempotency-Key": "no-body"})

    assert (bare["status"], bare["agent_type"], bare["context_summary"]) == ("active", None, None)
    assert ok(first, 201)["session_id"] == ok(again, 200)["session_id"]


async def test_create_session_with_every_field_stores_them(api: Api, client: httpx.AsyncClient, tenant: Tenant) -> None:
    ok(await client.post("/v1/plans", json={"slug": "launch", "title": "Launch"}, headers=tenant.headers), 201)

    session = await api.create(
        agent_type="claude-code", plan="launch", context_summary={"repo": "x", "n": [1, 2]}, external_id="thread-42"
    )

    assert session["agent_type"] == "claude-code"
    assert session["plan"] == "launch"
    assert session["context_summary"] == {"repo": "x", "n": [1, 2]}
    assert session["external_id"] == "thread-42"
    assert await api.get(session["session_id"]) == session


async def test_create_session_with_an_unknown_plan_is_422_and_creates_nothing(
    api: Api, database: MongoDatabase
) -> None:
    body = problem(await api.call("POST", "", {"plan": "nope"}), 422)

    assert body["errors"] == [{"field": "plan", "message": "no such plan"}]
    assert await database["sessions"].count_documents({}) == 0


async def test_create_session_with_a_malformed_external_id_is_422(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    for external_id in ["", "x" * 256, "tab\there", "é", "new\nline", "del\x7f"]:
        with subtests.test(external_id=external_id[:20]):
            problem(await api.call("POST", "", {"external_id": external_id}), 422)
    assert await database["sessions"].count_documents({}) == 0


async def test_create_session_accepts_an_external_id_of_255_printable_characters(api: Api) -> None:
    external_id = "".join(chr(c) for c in range(0x20, 0x7F)) * 3  # 95 * 3 = 285, the space included
    session = await api.create(external_id=external_id[:255])

    assert session["external_id"] == external_id[:255]


async def test_get_unknown_session_is_404(api: Api) -> None:
    problem(await api.call("GET", "/sess_00000000-0000-4000-8000-000000000000"), 404)


async def test_session_body_never_contains_the_arrays(api: Api) -> None:
    session = await api.create()
    sid = session["session_id"]
    await api.post(sid, "actions", {"action": "edit"}, 201)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)

    for body in (await api.get(sid), await api.post(sid, "touch"), ok(await api.call("GET", ""))["items"][0]):
        assert set(body) == SESSION_FIELDS


# Listing -----------------------------------------------------------------------------------------------------


async def _page_through(api: Api, query: str, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params = f"?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        page = ok(await api.call("GET", params))
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        seen += [item["session_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages


async def test_list_sessions_newest_first_in_keyset_pages(api: Api, pinned: Clock) -> None:
    created = []
    for _ in range(7):
        pinned.advance(timedelta(seconds=1))
        created.append((await api.create())["session_id"])

    first = ok(await api.call("GET", "?limit=3"))
    seen, pages = await _page_through(api, "", 3)

    assert [item["session_id"] for item in first["items"]] == created[::-1][:3]
    assert isinstance(first["next_cursor"], str)
    assert seen == created[::-1]
    assert pages == 3


async def test_list_sessions_with_a_limit_equal_to_the_count_has_no_next_page(api: Api) -> None:
    for _ in range(3):
        await api.create()

    page = ok(await api.call("GET", "?limit=3"))

    assert len(page["items"]) == 3
    assert page["next_cursor"] is None


async def test_list_sessions_pages_through_identical_start_times_by_session_id(
    api: Api, database: MongoDatabase
) -> None:
    ids = [(await api.create())["session_id"] for _ in range(9)]
    same = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    await database["sessions"].update_many({}, {"$set": {"started_at": same}})

    seen, pages = await _page_through(api, "", 2)

    assert seen == sorted(ids, reverse=True)
    assert pages == 5


async def test_list_sessions_default_limit_is_50(api: Api, database: MongoDatabase, tenant: Tenant) -> None:
    now = clock.now()
    docs = [
        {
            "workspace_id": tenant.workspace.workspace_id,
            "session_id": f"sess_bulk_{i:03}",
            "status": "active",
            "started_at": now,
            "last_active_at": now,
            "created_at": now,
            "updated_at": now,
            "work_log": [],
            "artifacts": [],
        }
        for i in range(51)
    ]
    await database["sessions"].insert_many(docs)

    page = ok(await api.call("GET", ""))

    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None


async def test_list_sessions_filters_by_status_agent_type_plan_and_external_id(
    api: Api, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ok(await client.post("/v1/plans", json={"slug": "p1", "title": "P1"}, headers=tenant.headers), 201)
    a = await api.in_status("active", agent_type="coder", plan="p1", external_id="ext-a")
    b = await api.in_status("paused", agent_type="coder")
    c = await api.in_status("completed", agent_type="reviewer", plan="p1")
    d = await api.in_status("failed")

    async def ids(query: str) -> set[str]:
        return {item["session_id"] for item in ok(await api.call("GET", f"?{query}"))["items"]}

    assert await ids("") == {s["session_id"] for s in (a, b, c, d)}
    assert await ids("status=active") == {a["session_id"]}
    assert await ids("status=paused") == {b["session_id"]}
    assert await ids("status=completed") == {c["session_id"]}
    assert await ids("status=failed") == {d["session_id"]}
    assert await ids("agent_type=coder") == {a["session_id"], b["session_id"]}
    assert await ids("plan=p1") == {a["session_id"], c["session_id"]}
    assert await ids("external_id=ext-a") == {a["session_id"]}
    assert await ids("agent_type=coder&status=paused") == {b["session_id"]}
    assert await ids("plan=none") == set()


async def test_list_sessions_with_invalid_parameters_is_422(api: Api, subtests: pytest.Subtests) -> None:
    for query in ["limit=0", "limit=201", "limit=-1", "limit=x", "status=bogus", "status=ended", "status=ACTIVE"]:
        with subtests.test(query=query):
            problem(await api.call("GET", f"?{query}"), 422)


async def test_list_sessions_accepts_limit_200(api: Api) -> None:
    await api.create()

    assert len(ok(await api.call("GET", "?limit=200"))["items"]) == 1


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "not base64": "%%%",
    "not json": "bm90IGpzb24",
    "a string": _cursor("x"),
    "three items": _cursor([1, 2, 3]),
    "an object": _cursor({"a": 1}),
    "a time past year 9999": _cursor([1e20, "x"]),
    "a time before year 1": _cursor([-1e20, "x"]),
    "an int past any float": _cursor([10**400, "x"]),
}


async def test_list_sessions_with_a_cursor_this_api_did_not_issue_is_422(api: Api, subtests: pytest.Subtests) -> None:
    for case, cursor in BAD_CURSORS.items():
        with subtests.test(case):
            body = problem(await api.call("GET", f"?cursor={cursor}"), 422)
            assert body["errors"] == [{"field": "cursor", "message": "invalid cursor"}]


async def test_listing_and_its_filters_are_served_by_an_index(
    api: Api, database: MongoDatabase, tenant: Tenant, pinned: Clock
) -> None:
    for status in ("active", "paused", "completed", "active", "paused"):
        pinned.advance(timedelta(seconds=1))
        await api.in_status(status, agent_type="coder")
    cursor = ok(await api.call("GET", "?limit=2"))["next_cursor"]
    await database.command("profile", 2)
    try:
        for query in ("", "?status=paused", "?agent_type=coder", f"?limit=2&cursor={cursor}", "?status=active&limit=1"):
            ok(await api.call("GET", query))
    finally:
        await database.command("profile", 0)

    finds = await (
        database["system.profile"]
        .find({"ns": f"{database.name}.sessions", "command.filter.workspace_id": tenant.workspace.workspace_id})
        .to_list(None)
    )
    assert len(finds) == 5
    for entry in finds:
        assert "IXSCAN" in entry["planSummary"], entry["planSummary"]
        assert "COLLSCAN" not in entry["planSummary"]
        assert not entry.get("hasSortStage", False), entry["planSummary"]


async def test_status_filter_explain_is_an_index_scan(database: MongoDatabase, api: Api, tenant: Tenant) -> None:
    for status in ("active", "paused", "completed"):
        await api.in_status(status)

    plan = await (
        database["sessions"]
        .find({"workspace_id": tenant.workspace.workspace_id, "status": "paused"})
        .sort([("started_at", -1), ("session_id", -1)])
        .limit(51)
        .explain()
    )

    winning = json.dumps(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in winning
    assert "COLLSCAN" not in winning
    assert '"stage": "SORT"' not in winning
    assert "listing_by_status" in winning


# Delete ------------------------------------------------------------------------------------------------------


async def test_delete_session_answers_204_then_404_everywhere(api: Api, database: MongoDatabase) -> None:
    session = await api.create()
    sid = session["session_id"]
    await api.post(sid, "actions", {"action": "edit"}, 201)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)
    child = await api.post(sid, "replay", None, 201)
    keep = await api.create()

    response = await api.call("DELETE", f"/{sid}")

    assert response.status_code == 204
    assert response.content == b""
    problem(await api.call("GET", f"/{sid}"), 404)
    problem(await api.call("GET", f"/{sid}/work-log"), 404)
    problem(await api.call("GET", f"/{sid}/artifacts"), 404)
    problem(await api.call("DELETE", f"/{sid}"), 404)
    assert await database["sessions"].count_documents({"session_id": sid}) == 0
    assert (await api.get(keep["session_id"]))["status"] == "active"
    assert (await api.get(child["session_id"]))["context_summary"]["replayed_from"] == sid


async def test_delete_session_in_any_status(api: Api) -> None:
    for status in ("active", "paused", "completed", "failed"):
        session = await api.in_status(status)

        assert (await api.call("DELETE", f"/{session['session_id']}")).status_code == 204, status
        problem(await api.call("GET", f"/{session['session_id']}"), 404)


# Lifecycle: every row of the table through HTTP --------------------------------------------------------------

#: operation -> (method, path suffix, body, success status, status after it or None to keep it)
OPERATIONS: dict[str, tuple[str, str, Any, int, str | None]] = {
    "pause": ("POST", "pause", None, 200, "paused"),
    "resume": ("POST", "resume", None, 200, "active"),
    "complete": ("POST", "complete", {"summary": "done"}, 200, "completed"),
    "fail": ("POST", "fail", {"reason": "broke"}, 200, "failed"),
    "end-completed": ("POST", "end", {"status": "completed"}, 200, "completed"),
    "end-failed": ("POST", "end", {"status": "failed"}, 200, "failed"),
    "handoff": ("POST", "handoff", {"summary": "over to you"}, 200, "paused"),
    "actions": ("POST", "actions", {"action": "edit"}, 201, None),
    "work-log": ("POST", "work-log", {"message": "m"}, 201, None),
    "work-log-batch": ("POST", "work-log/batch", {"entries": [{"message": "m"}]}, 201, None),
    "artifacts": ("POST", "artifacts", {"path": "a.py"}, 201, None),
    "context-put": ("PUT", "context", {"k": 1}, 200, None),
    "context-patch": ("PATCH", "context", {"k": 1}, 200, None),
    "touch": ("POST", "touch", None, 200, None),
}


@pytest.mark.parametrize("start", ["active", "paused"])
async def test_lifecycle_rows_of_an_open_session(api: Api, subtests: pytest.Subtests, start: str) -> None:
    for operation, (method, suffix, body, success, target) in OPERATIONS.items():
        with subtests.test(operation, start=start):
            sid = (await api.in_status(start))["session_id"]

            response = await api.call(method, f"/{sid}/{suffix}", body)

            assert response.status_code == success, response.text
            after = await api.get(sid)
            assert after["status"] == (target or start)
            if after["status"] in ("completed", "failed"):
                assert after["ended_at"] is not None
            else:
                assert after["ended_at"] is None


@pytest.mark.parametrize("start", ["completed", "failed"])
async def test_lifecycle_rows_of_an_ended_session_are_409_and_change_nothing(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests, start: str
) -> None:
    sid = (await api.in_status(start))["session_id"]
    before = await database["sessions"].find_one({"session_id": sid}, {"_id": 0})

    for operation, (method, suffix, body, _, _) in OPERATIONS.items():
        with subtests.test(operation, start=start):
            assert_ended_conflict(await api.call(method, f"/{sid}/{suffix}", body), sid)
            assert await database["sessions"].find_one({"session_id": sid}, {"_id": 0}) == before


async def test_lifecycle_operation_on_an_unknown_session_is_404(api: Api, subtests: pytest.Subtests) -> None:
    for operation, (method, suffix, body, _, _) in OPERATIONS.items():
        with subtests.test(operation):
            problem(await api.call(method, f"/sess_missing/{suffix}", body), 404)


async def test_complete_fail_and_end_set_final_summary_and_ended_at(api: Api, pinned: Clock) -> None:
    started = pinned.at
    a, b, c, d, e = [(await api.create())["session_id"] for _ in range(5)]
    ended = pinned.advance(timedelta(minutes=125, seconds=30))

    completed = await api.post(a, "complete", {"summary": "all green"})
    failed = await api.post(b, "fail", {"reason": "disk full"})
    end_failed = await api.post(c, "end", {"status": "failed", "summary": "gave up"})
    bare_complete = await api.post(d, "complete")
    bare_fail = await api.post(e, "fail")
    pinned.advance(timedelta(hours=5))

    assert (completed["status"], completed["final_summary"]) == ("completed", "all green")
    assert (failed["status"], failed["final_summary"]) == ("failed", "disk full")
    assert (end_failed["status"], end_failed["final_summary"]) == ("failed", "gave up")
    assert (bare_complete["status"], bare_complete["final_summary"]) == ("completed", None)
    assert (bare_fail["status"], bare_fail["final_summary"]) == ("failed", None)
    for sid in (a, b, c, d, e):
        session = await api.get(sid)
        assert session["ended_at"] == iso(ended)
        assert session["started_at"] == iso(started)
        assert session["duration_minutes"] == 125
        assert session["duration"] == "2h 5m"


async def test_end_with_a_status_other_than_completed_or_failed_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for body in [{"status": "active"}, {"status": "paused"}, {"status": "bogus"}, {}, {"status": None}, None]:
        with subtests.test(body=body):
            problem(await api.call("POST", f"/{sid}/end", body), 422)
            assert (await api.get(sid))["status"] == "active"


async def test_duration_of_a_running_session_grows_with_the_clock(api: Api, pinned: Clock) -> None:
    sid = (await api.create())["session_id"]

    pinned.advance(timedelta(minutes=42, seconds=59))
    at_42 = await api.get(sid)
    pinned.advance(timedelta(minutes=82))
    at_125 = await api.get(sid)

    assert (at_42["duration"], at_42["duration_minutes"]) == ("42m", 42)
    assert (at_125["duration"], at_125["duration_minutes"]) == ("2h 4m", 124)


async def test_touch_and_resume_move_last_active_at(api: Api, pinned: Clock) -> None:
    session = await api.create()
    sid = session["session_id"]

    touched_at = pinned.advance(timedelta(minutes=3))
    touched = await api.post(sid, "touch")
    paused = await api.post(sid, "pause")
    resumed_at = pinned.advance(timedelta(minutes=3))
    resumed = await api.post(sid, "resume")

    assert touched["last_active_at"] == touched["updated_at"] == iso(touched_at)
    assert touched["started_at"] == session["started_at"]
    assert paused["status"] == "paused"
    assert resumed["last_active_at"] == iso(resumed_at)
    assert resumed["status"] == "active"


# Work log ----------------------------------------------------------------------------------------------------


async def test_log_action_answers_201_with_the_entry_and_moves_counters(api: Api, pinned: Clock) -> None:
    sid = (await api.create())["session_id"]
    at = pinned.advance(timedelta(minutes=1))

    entry = await api.post(sid, "actions", {"action": "ran tests"}, 201)

    assert set(entry) == {"id", "action", "details", "timestamp"}
    assert GENERATED_ID.match(entry["id"])
    assert entry == {"id": entry["id"], "action": "ran tests", "details": None, "timestamp": iso(at)}
    session = await api.get(sid)
    assert (session["action_count"], session["checkpoint_count"], session["error_count"]) == (1, 0, 0)
    assert session["last_active_at"] == iso(at)


async def test_log_action_with_client_id_and_details(api: Api) -> None:
    sid = (await api.create())["session_id"]

    entry = await api.post(sid, "actions", {"action": "edit", "details": {"file": "a.py", "n": [1]}, "id": "a:1"}, 201)

    assert entry["id"] == "a:1"
    assert entry["details"] == {"file": "a.py", "n": [1]}


async def test_log_work_answers_201_with_a_typed_info_entry_by_default(api: Api, pinned: Clock) -> None:
    sid = (await api.create())["session_id"]

    entry = await api.post(sid, "work-log", {"message": "started"}, 201)

    assert entry == {"id": entry["id"], "message": "started", "type": "info", "data": {}, "timestamp": iso(pinned.at)}
    assert GENERATED_ID.match(entry["id"])


async def test_log_work_accepts_every_entry_type(api: Api, subtests: pytest.Subtests) -> None:
    for entry_type in ENTRY_TYPES:
        with subtests.test(entry_type):
            sid = (await api.create())["session_id"]

            entry = await api.post(sid, "work-log", {"message": "m", "type": entry_type, "data": {"k": "v"}}, 201)

            assert (entry["type"], entry["data"]) == (entry_type, {"k": "v"})
            session = await api.get(sid)
            assert session["action_count"] == 1
            assert session["checkpoint_count"] == int(entry_type == "checkpoint")
            assert session["error_count"] == int(entry_type == "error")


async def test_log_work_with_an_unknown_type_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for entry_type in ["Info", "note", "", "ERROR", "action", None, 1]:
        with subtests.test(entry_type=entry_type):
            problem(await api.call("POST", f"/{sid}/work-log", {"message": "m", "type": entry_type}), 422)
    assert (await api.get(sid))["action_count"] == 0


async def test_append_with_a_malformed_id_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for entry_id in ["", "has space", "slash/id", "x" * 65, "é", "$gt", 7]:
        with subtests.test(entry_id=entry_id):
            problem(await api.call("POST", f"/{sid}/work-log", {"message": "m", "id": entry_id}), 422)
            problem(await api.call("POST", f"/{sid}/actions", {"action": "a", "id": entry_id}), 422)
            problem(await api.call("POST", f"/{sid}/artifacts", {"path": "p", "id": entry_id}), 422)
    session = await api.get(sid)
    assert (session["action_count"], session["artifact_count"]) == (0, 0)


async def test_append_accepts_an_id_of_64_allowed_characters(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entry_id = ("Az09_.:-" * 8)[:64]

    assert (await api.post(sid, "work-log", {"message": "m", "id": entry_id}, 201))["id"] == entry_id


async def test_counters_count_every_entry_checkpoints_and_errors(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await api.post(sid, "actions", {"action": "a"}, 201)
    for entry_type in ("checkpoint", "error", "error", "info", "decision", "checkpoint"):
        await api.post(sid, "work-log", {"message": entry_type, "type": entry_type}, 201)
    await api.post(sid, "work-log/batch", {"entries": [{"message": "x", "type": "error"}, {"message": "y"}]}, 201)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)

    session = await api.get(sid)

    assert session["action_count"] == 9
    assert session["checkpoint_count"] == 2
    assert session["error_count"] == 3
    assert session["artifact_count"] == 1


async def test_batch_appends_entries_in_order_and_reports_counts(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = [{"message": f"m{i}", "type": ENTRY_TYPES[i % 6], "id": f"b{i}"} for i in range(12)]

    result = await api.post(sid, "work-log/batch", {"entries": entries}, 201)

    assert result == {"appended": 12, "duplicates": 0}
    page = ok(await api.call("GET", f"/{sid}/work-log"))
    assert [(e["id"], e["message"], e["type"]) for e in page["items"]] == [
        (e["id"], e["message"], e["type"]) for e in entries
    ]
    assert len({e["timestamp"] for e in page["items"]}) == 1


async def test_batch_of_zero_or_more_than_1000_entries_is_422(api: Api) -> None:
    sid = (await api.create())["session_id"]

    for count in (0, 1001):
        problem(await api.call("POST", f"/{sid}/work-log/batch", {"entries": [{"message": "m"}] * count}), 422)
    problem(await api.call("POST", f"/{sid}/work-log/batch", {}), 422)
    assert (await api.get(sid))["action_count"] == 0


async def test_batch_of_1000_entries_is_accepted(api: Api) -> None:
    sid = (await api.create())["session_id"]

    result = await api.post(sid, "work-log/batch", {"entries": [{"message": f"m{i}"} for i in range(1000)]}, 201)

    assert result == {"appended": 1000, "duplicates": 0}
    assert (await api.get(sid))["action_count"] == 1000


async def _log_mixed(api: Api, sid: str) -> list[dict[str, Any]]:
    """Five entries: action, checkpoint, error, info, checkpoint (oldest first)."""
    return [
        await api.post(sid, "actions", {"action": "a0", "id": "e0"}, 201),
        await api.post(sid, "work-log", {"message": "m1", "type": "checkpoint", "id": "e1"}, 201),
        await api.post(sid, "work-log", {"message": "m2", "type": "error", "id": "e2"}, 201),
        await api.post(sid, "work-log", {"message": "m3", "id": "e3"}, 201),
        await api.post(sid, "work-log", {"message": "m4", "type": "checkpoint", "id": "e4"}, 201),
    ]


async def test_work_log_pages_with_type_offset_limit_and_order(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = await _log_mixed(api, sid)

    async def page(query: str = "") -> tuple[list[str], int]:
        body = ok(await api.call("GET", f"/{sid}/work-log{query}"))
        assert set(body) == {"items", "total"}
        return [item["id"] for item in body["items"]], body["total"]

    assert ok(await api.call("GET", f"/{sid}/work-log"))["items"] == entries
    assert await page() == (["e0", "e1", "e2", "e3", "e4"], 5)
    assert await page("?order=asc") == (["e0", "e1", "e2", "e3", "e4"], 5)
    assert await page("?order=desc") == (["e4", "e3", "e2", "e1", "e0"], 5)
    assert await page("?offset=1&limit=2") == (["e1", "e2"], 5)
    assert await page("?offset=1&limit=2&order=desc") == (["e3", "e2"], 5)
    assert await page("?offset=5") == ([], 5)
    assert await page("?offset=99&limit=1000") == ([], 5)
    assert await page("?type=checkpoint") == (["e1", "e4"], 2)
    assert await page("?type=checkpoint&order=desc&limit=1") == (["e4"], 2)
    assert await page("?type=checkpoint&offset=1") == (["e4"], 2)
    assert await page("?type=error") == (["e2"], 1)
    assert await page("?type=info") == (["e3"], 1)
    assert await page("?type=decision") == ([], 0)


async def test_work_log_default_limit_is_100(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"m{i}"} for i in range(120)]}, 201)

    body = ok(await api.call("GET", f"/{sid}/work-log"))

    assert len(body["items"]) == 100
    assert body["total"] == 120
    assert body["items"][0]["message"] == "m0"


async def test_work_log_with_invalid_parameters_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for query in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "order=up",
        "order=DESC",
        "type=bogus",
        "type=action",
        "limit=x",
    ]:
        with subtests.test(query=query):
            problem(await api.call("GET", f"/{sid}/work-log?{query}"), 422)


async def test_work_log_accepts_limit_1000(api: Api) -> None:
    sid = (await api.create())["session_id"]

    assert ok(await api.call("GET", f"/{sid}/work-log?limit=1000")) == {"items": [], "total": 0}


async def test_recent_actions_newest_first_ten_by_default(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"m{i}", "id": f"r{i}"} for i in range(12)]}, 201)
    last = await api.post(sid, "actions", {"action": "newest", "id": "r12"}, 201)

    default = ok(await api.call("GET", f"/{sid}/recent-actions"))
    three = ok(await api.call("GET", f"/{sid}/recent-actions?limit=3"))
    everything = ok(await api.call("GET", f"/{sid}/recent-actions?limit=100"))

    assert set(default) == {"items"}
    assert [e["id"] for e in default["items"]] == [f"r{i}" for i in range(12, 2, -1)]
    assert default["items"][0] == last
    assert [e["id"] for e in three["items"]] == ["r12", "r11", "r10"]
    assert len(everything["items"]) == 13


async def test_recent_actions_agree_inside_and_past_the_kept_window(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"m{i}", "id": f"w{i}"} for i in range(30)]}, 201)

    window = ok(await api.call("GET", f"/{sid}/recent-actions?limit=20"))
    past_window = ok(await api.call("GET", f"/{sid}/recent-actions?limit=25"))

    assert [e["id"] for e in window["items"]] == [f"w{i}" for i in range(29, 9, -1)]
    assert [e["id"] for e in past_window["items"]] == [f"w{i}" for i in range(29, 4, -1)]


async def test_recent_actions_with_a_limit_outside_1_to_100_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for limit in ["0", "101", "-1", "x"]:
        with subtests.test(limit=limit):
            problem(await api.call("GET", f"/{sid}/recent-actions?limit={limit}"), 422)


async def test_recent_actions_of_an_empty_log_is_empty(api: Api) -> None:
    sid = (await api.create())["session_id"]

    assert ok(await api.call("GET", f"/{sid}/recent-actions")) == {"items": []}


# Artifacts ---------------------------------------------------------------------------------------------------


async def test_record_artifact_answers_201_modified_by_default(api: Api, pinned: Clock) -> None:
    sid = (await api.create())["session_id"]

    artifact = await api.post(sid, "artifacts", {"path": "src/app.py"}, 201)

    assert set(artifact) == {"id", "path", "action", "metadata", "timestamp"}
    assert GENERATED_ID.match(artifact["id"])
    assert artifact == {
        "id": artifact["id"],
        "path": "src/app.py",
        "action": "modified",
        "metadata": None,
        "timestamp": iso(pinned.at),
    }
    session = await api.get(sid)
    assert session["artifact_count"] == 1
    assert session["action_count"] == 0


async def test_artifacts_listed_in_order_and_filtered_by_action(api: Api) -> None:
    sid = (await api.create())["session_id"]
    recorded = [
        await api.post(sid, "artifacts", {"path": "a.py", "action": "created", "metadata": {"lines": 3}}, 201),
        await api.post(sid, "artifacts", {"path": "b.py", "action": "modified", "id": "art-b"}, 201),
        await api.post(sid, "artifacts", {"path": "c.py", "action": "deleted"}, 201),
        await api.post(sid, "artifacts", {"path": "d.py", "action": "created"}, 201),
    ]

    everything = ok(await api.call("GET", f"/{sid}/artifacts"))

    assert everything == {"items": recorded, "total": 4}
    for action in ("created", "modified", "deleted"):
        listed = ok(await api.call("GET", f"/{sid}/artifacts?action={action}"))
        expected = [a for a in recorded if a["action"] == action]
        assert listed == {"items": expected, "total": len(expected)}
    assert (await api.get(sid))["artifact_count"] == 4


async def test_artifact_with_an_unknown_action_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for action in ["renamed", "CREATED", ""]:
        with subtests.test(action=action):
            problem(await api.call("POST", f"/{sid}/artifacts", {"path": "a.py", "action": action}), 422)
            problem(await api.call("GET", f"/{sid}/artifacts?action={action or 'x'}"), 422)
    assert (await api.get(sid))["artifact_count"] == 0


# Context summary ---------------------------------------------------------------------------------------------


async def test_put_context_replaces_the_whole_map(api: Api, pinned: Clock) -> None:
    sid = (await api.create(context_summary={"old": 1, "keep": 2}))["session_id"]
    at = pinned.advance(timedelta(minutes=1))

    session = ok(await api.call("PUT", f"/{sid}/context", {"new": {"nested": [1, {"a": None}]}}))

    assert set(session) == SESSION_FIELDS
    assert session["context_summary"] == {"new": {"nested": [1, {"a": None}]}}
    assert session["last_active_at"] == session["updated_at"] == iso(at)
    assert ok(await api.call("PUT", f"/{sid}/context", {}))["context_summary"] == {}


async def test_patch_context_sets_given_keys_and_leaves_the_others(api: Api) -> None:
    sid = (await api.create(context_summary={"a": 1, "b": {"x": 1}}))["session_id"]

    session = ok(await api.call("PATCH", f"/{sid}/context", {"b": {"y": 2}, "c": 3}))

    assert session["context_summary"] == {"a": 1, "b": {"y": 2}, "c": 3}


async def test_patch_context_of_a_session_without_context_creates_it(api: Api) -> None:
    sid = (await api.create())["session_id"]

    assert ok(await api.call("PATCH", f"/{sid}/context", {"k": "v"}))["context_summary"] == {"k": "v"}


INVALID_CONTEXTS: list[dict[str, Any]] = [
    {"": 1},
    {".": 1},
    {"a.b": 1},
    {"trailing.": 1},
    {"$": 1},
    {"$set": {"status": "completed"}},
    {"$where": "1"},
    {"nul\x00key": 1},
    {"ok": 1, "bad.key": 2},
    {"ok": {"$gt": ""}},
    {"deep": [{"x": {"$ne": None}}]},
    {"deep": {"nul\x00": 1}},
]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_context_with_an_invalid_key_is_422_and_the_document_unchanged(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests, method: str
) -> None:
    sid = (await api.create(context_summary={"keep": "me"}))["session_id"]
    before = await database["sessions"].find_one({"session_id": sid}, {"_id": 0})

    for context in INVALID_CONTEXTS:
        with subtests.test(method, context=context):
            problem(await api.call(method, f"/{sid}/context", context), 422)
            assert await database["sessions"].find_one({"session_id": sid}, {"_id": 0}) == before


async def test_context_that_is_not_an_object_is_422(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for method in ("PUT", "PATCH"):
        for body in [[1, 2], "text", 3, None]:
            with subtests.test(method, body=body):
                problem(await api.call(method, f"/{sid}/context", content=json.dumps(body).encode()), 422)
    assert (await api.get(sid))["context_summary"] is None


# Handoff -----------------------------------------------------------------------------------------------------


async def test_handoff_sets_notes_with_defaults_and_pauses(api: Api) -> None:
    sid = (await api.create())["session_id"]

    session = await api.post(sid, "handoff", {"summary": "halfway"})

    assert set(session) == SESSION_FIELDS
    assert session["status"] == "paused"
    assert session["handoff_notes"] == {"summary": "halfway", "next_steps": [], "blockers": [], "context_for_next": {}}


async def test_handoff_with_every_field_and_from_paused_stays_paused(api: Api) -> None:
    sid = (await api.in_status("paused"))["session_id"]
    notes = {"summary": "s", "next_steps": ["a", "b"], "blockers": ["c"], "context_for_next": {"branch": "x"}}

    session = await api.post(sid, "handoff", notes)

    assert session["status"] == "paused"
    assert session["handoff_notes"] == notes


INVALID_HANDOFFS: list[dict[str, Any]] = [
    {},
    {"summary": ""},
    {"summary": "s", "next_steps": "a"},
    {"summary": "s", "blockers": [1]},
    {"summary": "s", "context_for_next": []},
    {"summary": "s", "extra": 1},
    {"summary": {"$gt": ""}},
]


async def test_handoff_with_an_invalid_body_is_422_and_changes_nothing(api: Api, subtests: pytest.Subtests) -> None:
    sid = (await api.create())["session_id"]

    for body in INVALID_HANDOFFS:
        with subtests.test(body=body):
            problem(await api.call("POST", f"/{sid}/handoff", body), 422)
            session = await api.get(sid)
            assert (session["status"], session["handoff_notes"]) == ("active", None)


# Handoff context ---------------------------------------------------------------------------------------------

HANDOFF_CONTEXT_FIELDS = {
    "session_id",
    "agent_type",
    "started_at",
    "last_active_at",
    "context_summary",
    "recent_actions",
    "artifacts",
    "handoff_notes",
}


async def test_handoff_context_without_a_plan_has_no_plan_block(api: Api) -> None:
    session = await api.create(agent_type="coder", context_summary={"k": 1})
    sid = session["session_id"]

    context = ok(await api.call("GET", f"/{sid}/handoff-context"))

    assert context == {
        "session_id": sid,
        "agent_type": "coder",
        "started_at": session["started_at"],
        "last_active_at": session["last_active_at"],
        "context_summary": {"k": 1},
        "recent_actions": [],
        "artifacts": [],
        "handoff_notes": None,
    }


async def test_handoff_context_has_the_newest_20_entries_newest_first_artifacts_notes_and_plan(
    api: Api, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    plan = {
        "slug": "ship",
        "title": "Ship it",
        "phases": [{"name": "build", "tasks": [{"name": "t1", "status": "completed"}, {"name": "t2"}, {"name": "t3"}]}],
        "current_phase": "build",
    }
    ok(await client.post("/v1/plans", json=plan, headers=tenant.headers), 201)
    sid = (await api.create(plan="ship"))["session_id"]
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"m{i}", "id": f"w{i}"} for i in range(24)]}, 201)
    last = await api.post(sid, "actions", {"action": "final", "id": "w24"}, 201)
    artifacts = [await api.post(sid, "artifacts", {"path": f"f{i}.py"}, 201) for i in range(3)]
    session = await api.post(sid, "handoff", {"summary": "s", "next_steps": ["n"]})

    context = ok(await api.call("GET", f"/{sid}/handoff-context"))

    assert set(context) == HANDOFF_CONTEXT_FIELDS | {"plan"}
    assert [e["id"] for e in context["recent_actions"]] == [f"w{i}" for i in range(24, 4, -1)]
    assert context["recent_actions"][0] == last
    assert context["artifacts"] == artifacts
    assert context["handoff_notes"] == session["handoff_notes"]
    assert context["last_active_at"] == session["last_active_at"]
    assert context["plan"] == {
        "slug": "ship",
        "title": "Ship it",
        "current_phase": "build",
        "progress": {"total_tasks": 3, "completed_tasks": 1, "percentage": 33},
    }


# Replay context ----------------------------------------------------------------------------------------------

REPLAY_CONTEXT_FIELDS = {
    "session_id",
    "status",
    "agent_type",
    "plan",
    "started_at",
    "last_active_at",
    "duration",
    "context_summary",
    "progress_summary",
    "last_checkpoint",
    "checkpoints",
    "decisions",
    "errors",
    "artifacts",
    "artifacts_by_action",
    "recent_actions",
    "total_actions",
    "handoff_notes",
    "final_summary",
}


async def test_replay_context_of_an_empty_session(api: Api) -> None:
    session = await api.create(agent_type="coder")
    sid = session["session_id"]

    context = ok(await api.call("GET", f"/{sid}/replay-context"))

    assert context == {
        "session_id": sid,
        "status": "active",
        "agent_type": "coder",
        "plan": None,
        "started_at": session["started_at"],
        "last_active_at": session["last_active_at"],
        "duration": "0m",
        "context_summary": None,
        "progress_summary": {"completed_steps": 0, "last_action": None, "summary": "No work recorded"},
        "last_checkpoint": None,
        "checkpoints": [],
        "decisions": [],
        "errors": [],
        "artifacts": [],
        "artifacts_by_action": {"created": [], "modified": [], "deleted": []},
        "recent_actions": [],
        "total_actions": 0,
        "handoff_notes": None,
        "final_summary": None,
    }


async def test_replay_context_of_a_worked_session_is_computed_exactly(
    api: Api, client: httpx.AsyncClient, tenant: Tenant, pinned: Clock
) -> None:
    ok(await client.post("/v1/plans", json={"slug": "p", "title": "P"}, headers=tenant.headers), 201)
    session = await api.create(plan="p", context_summary={"k": "v"})
    sid = session["session_id"]
    entries = await _log_mixed(api, sid)
    decision = await api.post(sid, "work-log", {"message": "use mongo", "type": "decision", "id": "e5"}, 201)
    await api.post(sid, "work-log/batch", {"entries": [{"message": f"f{i}", "id": f"f{i}"} for i in range(20)]}, 201)
    last_at = pinned.advance(timedelta(minutes=61))
    last = await api.post(sid, "actions", {"action": "wrapped up", "id": "z"}, 201)
    artifacts = [
        await api.post(sid, "artifacts", {"path": "a.py", "action": "created"}, 201),
        await api.post(sid, "artifacts", {"path": "b.py"}, 201),
        await api.post(sid, "artifacts", {"path": "c.py", "action": "deleted"}, 201),
        await api.post(sid, "artifacts", {"path": "d.py", "action": "created"}, 201),
    ]
    ended = await api.post(sid, "fail", {"reason": "out of time"})

    context = ok(await api.call("GET", f"/{sid}/replay-context"))

    assert set(context) == REPLAY_CONTEXT_FIELDS
    recent = ok(await api.call("GET", f"/{sid}/recent-actions?limit=20"))["items"]
    assert context == {
        "session_id": sid,
        "status": "failed",
        "agent_type": None,
        "plan": {"slug": "p", "title": "P", "current_phase": None},
        "started_at": session["started_at"],
        "last_active_at": iso(last_at),
        "duration": "1h 1m",
        "context_summary": {"k": "v"},
        "progress_summary": {
            "completed_steps": 27,
            "checkpoint_count": 2,
            "error_count": 1,
            "last_action": "wrapped up",
            "last_action_at": last["timestamp"],
            "summary": "27 actions recorded, 2 checkpoints, 1 errors",
        },
        "last_checkpoint": entries[4],
        "checkpoints": [entries[1], entries[4]],
        "decisions": [decision],
        "errors": [entries[2]],
        "artifacts": artifacts,
        "artifacts_by_action": {"created": ["a.py", "d.py"], "modified": ["b.py"], "deleted": ["c.py"]},
        "recent_actions": recent,
        "total_actions": 27,
        "handoff_notes": None,
        "final_summary": "out of time",
    }
    assert [e["id"] for e in recent] == ["z"] + [f"f{i}" for i in range(19, 0, -1)]
    assert ended["ended_at"] == iso(last_at)


async def test_replay_context_last_action_is_the_message_of_a_typed_last_entry(api: Api) -> None:
    sid = (await api.create())["session_id"]
    await api.post(sid, "actions", {"action": "first"}, 201)
    await api.post(sid, "work-log", {"message": "typed last", "type": "success"}, 201)

    progress = ok(await api.call("GET", f"/{sid}/replay-context"))["progress_summary"]

    assert progress["last_action"] == "typed last"
    assert progress["summary"] == "2 actions recorded, 0 checkpoints, 0 errors"


# Replay ------------------------------------------------------------------------------------------------------

REPLAY_ID = re.compile(r"^ses_replay_(\d{8}_\d{6})_\S+$")


async def test_replay_creates_an_active_session_that_continues_the_original(
    api: Api, client: httpx.AsyncClient, tenant: Tenant, pinned: Clock
) -> None:
    ok(await client.post("/v1/plans", json={"slug": "p", "title": "P"}, headers=tenant.headers), 201)
    original = await api.create(agent_type="coder", plan="p", context_summary={"branch": "b"})
    sid = original["session_id"]
    entries = await _log_mixed(api, sid)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)
    notes = {"summary": "s", "next_steps": ["n"], "blockers": ["b"], "context_for_next": {"x": 1}}
    await api.post(sid, "handoff", notes)
    now = pinned.advance(timedelta(minutes=5))

    replay = await api.post(sid, "replay", None, 201)

    assert set(replay) == SESSION_FIELDS
    match = REPLAY_ID.match(replay["session_id"])
    assert match is not None
    assert match.group(1) == now.strftime("%Y%m%d_%H%M%S")
    assert replay | {"session_id": sid} == {
        "session_id": sid,
        "external_id": None,
        "workspace_id": tenant.workspace.workspace_id,
        "agent_api_key_id": tenant.key_id,
        "plan": "p",
        "agent_type": "coder",
        "status": "active",
        "context_summary": {
            "replayed_from": sid,
            "original_started_at": original["started_at"],
            "original_status": "paused",
            "inherited_context": {"branch": "b"},
            "replay_checkpoint": entries[4],
            "original_progress": {
                "completed_steps": 5,
                "checkpoint_count": 2,
                "error_count": 1,
                "last_action": "m4",
                "last_action_at": entries[4]["timestamp"],
                "summary": "5 actions recorded, 2 checkpoints, 1 errors",
            },
        },
        "handoff_notes": notes,
        "final_summary": None,
        "started_at": iso(now),
        "last_active_at": iso(now),
        "ended_at": None,
        "created_at": iso(now),
        "updated_at": iso(now),
        "duration": "0m",
        "duration_minutes": 0,
        "action_count": 1,
        "artifact_count": 0,
        "checkpoint_count": 0,
        "error_count": 0,
    }
    log = ok(await api.call("GET", f"/{replay['session_id']}/work-log"))
    assert log["total"] == 1
    [entry] = log["items"]
    assert entry == {
        "id": entry["id"],
        "message": f"Replayed from session {sid}",
        "type": "info",
        "data": {"original_session": sid, "original_actions": 5, "original_checkpoints": 2},
        "timestamp": iso(now),
    }
    assert ok(await api.call("GET", f"/{replay['session_id']}/artifacts")) == {"items": [], "total": 0}
    assert (await api.get(sid))["status"] == "paused"


async def test_replay_of_a_session_in_any_status(api: Api, subtests: pytest.Subtests) -> None:
    for status in ("active", "paused", "completed", "failed"):
        with subtests.test(status):
            original = await api.in_status(status, agent_type="first-agent")

            replay = await api.post(original["session_id"], "replay", {"agent_type": "next-agent"}, 201)

            assert replay["status"] == "active"
            assert replay["agent_type"] == "next-agent"
            assert replay["context_summary"]["original_status"] == status
            assert (await api.get(original["session_id"]))["status"] == status


async def test_two_replays_of_one_session_in_the_same_second_get_distinct_ids(api: Api, pinned: Clock) -> None:
    sid = (await api.create())["session_id"]

    first = await api.post(sid, "replay", None, 201)
    second = await api.post(sid, "replay", {}, 201)

    assert first["session_id"] != second["session_id"]
    assert first["session_id"][:26] == second["session_id"][:26]  # ses_replay_YYYYmmdd_HHMMSS_


async def test_replay_of_an_unknown_session_is_404(api: Api, database: MongoDatabase) -> None:
    problem(await api.call("POST", "/sess_missing/replay"), 404)
    assert await database["sessions"].count_documents({}) == 0


async def test_replay_with_an_invalid_body_is_422_and_creates_nothing(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    sid = (await api.create())["session_id"]

    for body in [{"agent": "x"}, {"agent_type": {"$gt": ""}}, {"agent_type": "x" * 256}, [1]]:
        with subtests.test(body=str(body)[:40]):
            problem(await api.call("POST", f"/{sid}/replay", body), 422)
            assert await database["sessions"].count_documents({}) == 1


# MCP context -------------------------------------------------------------------------------------------------


async def test_mcp_context_is_the_compact_view(api: Api, client: httpx.AsyncClient, tenant: Tenant) -> None:
    ok(await client.post("/v1/plans", json={"slug": "p", "title": "P"}, headers=tenant.headers), 201)
    sid = (await api.create(agent_type="coder", plan="p", context_summary={"k": 1}))["session_id"]
    await api.post(sid, "actions", {"action": "a"}, 201)
    await api.post(sid, "artifacts", {"path": "a.py"}, 201)
    ended = await api.post(sid, "complete", {"summary": "done"})

    context = ok(await api.call("GET", f"/{sid}/mcp-context"))

    assert context == {
        "session_id": sid,
        "agent_type": "coder",
        "status": "completed",
        "workspace_id": tenant.workspace.workspace_id,
        "plan_slug": "p",
        "started_at": ended["started_at"],
        "last_active_at": ended["last_active_at"],
        "ended_at": ended["ended_at"],
        "duration": "0m",
        "action_count": 1,
        "artifact_count": 1,
        "context_summary": {"k": 1},
        "handoff_notes": None,
    }


# Reads of unknown sessions -----------------------------------------------------------------------------------

READ_SUFFIXES = [
    "",
    "/work-log",
    "/recent-actions",
    "/artifacts",
    "/handoff-context",
    "/replay-context",
    "/mcp-context",
]


async def test_read_of_an_unknown_session_is_404(api: Api, subtests: pytest.Subtests) -> None:
    for suffix in READ_SUFFIXES:
        with subtests.test(suffix=suffix):
            body = problem(await api.call("GET", f"/sess_missing{suffix}"), 404)
            assert body["title"] == "Not found"


# Limits and bad input ----------------------------------------------------------------------------------------


async def test_body_over_1_mib_is_413_and_nothing_is_stored(api: Api) -> None:
    sid = (await api.create())["session_id"]
    body = json.dumps({"message": "m", "data": {"blob": "x" * (1024 * 1024)}}).encode()

    response = await api.call("POST", f"/{sid}/work-log", content=body, headers={"content-type": "application/json"})

    problem(response, 413)
    assert (await api.get(sid))["action_count"] == 0


async def test_body_of_exactly_1_mib_is_accepted_and_one_byte_more_is_413(api: Api, database: MongoDatabase) -> None:
    sid = (await api.create())["session_id"]
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")).encode())
    at_limit = json.dumps({"k": "x" * (1024 * 1024 - overhead)}, separators=(",", ":")).encode()
    over = json.dumps({"k": "x" * (1024 * 1024 - overhead + 1)}, separators=(",", ":")).encode()
    assert (len(at_limit), len(over)) == (1024 * 1024, 1024 * 1024 + 1)
    json_type = {"content-type": "application/json"}

    problem(await api.call("PUT", f"/{sid}/context", content=over, headers=json_type), 413)
    assert (await api.get(sid))["context_summary"] is None
    accepted = await api.call("PUT", f"/{sid}/context", content=at_limit, headers=json_type)

    assert accepted.status_code == 200
    stored = await database["sessions"].find_one({"session_id": sid})
    assert stored is not None
    assert len(stored["context_summary"]["k"]) == 1024 * 1024 - overhead


def _payload_of(size: int) -> dict[str, str]:
    """An object whose compact JSON serialisation is exactly ``size`` bytes."""
    value = {"blob": ""}
    overhead = len(json.dumps(value, separators=(",", ":")))
    return {"blob": "x" * (size - overhead)}


PAYLOAD_ROUTES = [
    ("actions", "details", {"action": "a"}),
    ("work-log", "data", {"message": "m"}),
    ("artifacts", "metadata", {"path": "p"}),
]


async def test_payload_of_64_kib_is_accepted_and_one_byte_more_is_413(api: Api, subtests: pytest.Subtests) -> None:
    for route, field, base in PAYLOAD_ROUTES:
        with subtests.test(field):
            sid = (await api.create())["session_id"]

            at_limit = await api.call("POST", f"/{sid}/{route}", base | {field: _payload_of(64 * 1024)})
            over = await api.call("POST", f"/{sid}/{route}", base | {field: _payload_of(64 * 1024 + 1)})

            assert at_limit.status_code == 201, at_limit.text
            problem(over, 413)
            session = await api.get(sid)
            assert session["action_count"] + session["artifact_count"] == 1


async def test_batch_with_one_oversized_data_is_413_and_stores_nothing(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = [{"message": "ok"}, {"message": "big", "data": _payload_of(64 * 1024 + 1)}]

    problem(await api.call("POST", f"/{sid}/work-log/batch", {"entries": entries}), 413)
    assert (await api.get(sid))["action_count"] == 0


async def test_text_at_its_limit_is_accepted_and_one_character_more_is_422(api: Api, subtests: pytest.Subtests) -> None:
    for route, field, limit in [
        ("actions", "action", 10_000),
        ("work-log", "message", 10_000),
        ("artifacts", "path", 1_024),
    ]:
        with subtests.test(field):
            sid = (await api.create())["session_id"]

            at_limit = await api.call("POST", f"/{sid}/{route}", {field: "é" * limit})
            over = await api.call("POST", f"/{sid}/{route}", {field: "é" * (limit + 1)})

            assert at_limit.status_code == 201, at_limit.text
            body = problem(over, 422)
            assert body["errors"] == [{"field": field, "message": f"at most {limit} characters"}]
            session = await api.get(sid)
            assert session["action_count"] + session["artifact_count"] == 1


async def test_batch_with_an_overlong_message_is_422_and_stores_nothing(api: Api) -> None:
    sid = (await api.create())["session_id"]
    entries = [{"message": "ok"}, {"message": "x" * 10_001}]

    problem(await api.call("POST", f"/{sid}/work-log/batch", {"entries": entries}), 422)
    assert (await api.get(sid))["action_count"] == 0


#: route suffix (None: the create route) -> a valid body, to which an unknown field is added.
BODY_ROUTES: list[tuple[str, str | None, dict[str, Any]]] = [
    ("POST", None, {}),
    ("POST", "actions", {"action": "a"}),
    ("POST", "work-log", {"message": "m"}),
    ("POST", "work-log/batch", {"entries": [{"message": "m"}]}),
    ("POST", "artifacts", {"path": "p"}),
    ("POST", "complete", {"summary": "s"}),
    ("POST", "fail", {"reason": "r"}),
    ("POST", "end", {"status": "completed"}),
    ("POST", "handoff", {"summary": "s"}),
    ("POST", "replay", {"agent_type": "a"}),
]


async def test_unknown_field_in_a_body_is_422_and_changes_nothing(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    sid = (await api.create())["session_id"]
    before = await database["sessions"].find({}, {"_id": 0}).to_list(None)

    for method, suffix, body in BODY_ROUTES:
        with subtests.test(suffix or "create"):
            path = "" if suffix is None else f"/{sid}/{suffix}"
            problem(await api.call(method, path, body | {"messsage": "typo"}), 422)
            assert await database["sessions"].find({}, {"_id": 0}).to_list(None) == before


async def test_unknown_field_in_a_batch_entry_is_422(api: Api) -> None:
    sid = (await api.create())["session_id"]

    problem(await api.call("POST", f"/{sid}/work-log/batch", {"entries": [{"message": "m", "typ": "error"}]}), 422)


OPERATOR = {"$gt": ""}


OPERATOR_BODIES: list[tuple[str | None, dict[str, Any]]] = [
    (None, {"agent_type": OPERATOR}),
    (None, {"plan": OPERATOR}),
    (None, {"plan": {"$ne": None}}),
    (None, {"external_id": OPERATOR}),
    (None, {"context_summary": {"a": OPERATOR}}),
    ("actions", {"action": OPERATOR}),
    ("actions", {"action": "a", "id": OPERATOR}),
    ("actions", {"action": "a", "details": {"$where": "sleep(1)"}}),
    ("work-log", {"message": OPERATOR}),
    ("work-log", {"message": "m", "type": OPERATOR}),
    ("work-log", {"message": "m", "data": {"x": {"$gt": 1}}}),
    ("work-log/batch", {"entries": [{"message": OPERATOR}]}),
    ("artifacts", {"path": OPERATOR}),
    ("artifacts", {"path": "p", "action": OPERATOR}),
    ("artifacts", {"path": "p", "metadata": {"$set": {}}}),
    ("end", {"status": OPERATOR}),
    ("complete", {"summary": OPERATOR}),
    ("fail", {"reason": OPERATOR}),
    ("handoff", {"summary": OPERATOR}),
    ("handoff", {"summary": "s", "next_steps": [OPERATOR]}),
    ("handoff", {"summary": "s", "context_for_next": {"$x": 1}}),
    ("replay", {"agent_type": OPERATOR}),
]


async def test_operator_shaped_value_is_422_and_changes_nothing(
    api: Api, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    sid = (await api.create())["session_id"]
    before = await database["sessions"].find({}, {"_id": 0}).to_list(None)

    for suffix, body in OPERATOR_BODIES:
        with subtests.test(suffix or "create", body=body):
            path = "" if suffix is None else f"/{sid}/{suffix}"
            problem(await api.call("POST", path, body), 422)
            assert await database["sessions"].find({}, {"_id": 0}).to_list(None) == before


async def test_integer_beyond_int64_is_422_not_500(api: Api) -> None:
    sid = (await api.create())["session_id"]
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "", {"context_summary": {"n": 2**63}}),
        ("POST", f"/{sid}/work-log", {"message": "m", "data": {"n": 2**64}}),
        ("POST", f"/{sid}/actions", {"action": "a", "details": {"n": -(2**63) - 1}}),
        ("POST", f"/{sid}/artifacts", {"path": "p", "metadata": {"n": 2**64}}),
        ("PUT", f"/{sid}/context", {"n": [2**70]}),
        ("POST", f"/{sid}/handoff", {"summary": "s", "context_for_next": {"n": 2**64}}),
    ]

    statuses = [(await api.call(method, path, body)).status_code for method, path, body in cases]

    assert statuses == [422] * len(cases)


OPERATIONS_BY_SUFFIX = [(suffix, body) for method, suffix, body, _, _ in OPERATIONS.values() if method == "POST"]
BAD_IDS = ["%24gt", "a.b", "a%00b", "x" * 300, "sess_not-a-uuid", "%E2%9C%93", "..", "%20"]


async def test_bad_shaped_session_id_in_a_path_is_404(api: Api, subtests: pytest.Subtests) -> None:
    await api.create()

    for bad_id in BAD_IDS:
        with subtests.test(bad_id=bad_id[:20]):
            for suffix in READ_SUFFIXES:
                problem(await api.call("GET", f"/{bad_id}{suffix}"), 404)
            for suffix, body in OPERATIONS_BY_SUFFIX:
                problem(await api.call("POST", f"/{bad_id}/{suffix}", body), 404)
            problem(await api.call("POST", f"/{bad_id}/replay"), 404)
            problem(await api.call("PATCH", f"/{bad_id}/context", {"k": 1}), 404)
            problem(await api.call("PUT", f"/{bad_id}/context", {"k": 1}), 404)
            problem(await api.call("DELETE", f"/{bad_id}"), 404)


async def test_malformed_json_is_400(api: Api) -> None:
    sid = (await api.create())["session_id"]

    for path in ("", f"/{sid}/work-log", f"/{sid}/handoff"):
        response = await api.call("POST", path, content=b'{"message": ', headers={"content-type": "application/json"})
        problem(response, 400)


# Session full ------------------------------------------------------------------------------------------------


class TestSessionFull:
    """A session whose arrays reach ``max_session_bytes`` refuses further appends with a clean 409."""

    @pytest.fixture
    def app(self, settings: Settings, database: MongoDatabase) -> Litestar:
        small = Settings(
            mongodb_url=settings.mongodb_url,
            database=settings.database,
            data_dir=settings.data_dir,
            max_session_bytes=64 * 1024,
        )
        return create_app(small, database=database)

    @staticmethod
    def _assert_full(response: httpx.Response, session_id: str) -> None:
        body = problem(response, 409)
        assert body["title"] == "Session is full"
        assert "full" in body["detail"]
        assert f"POST /v1/sessions/{session_id}/replay" in body["detail"]

    async def test_append_past_the_cap_is_409_full_and_stores_nothing(self, api: Api, database: MongoDatabase) -> None:
        sid = (await api.create())["session_id"]
        chunk = _payload_of(25 * 1024)
        await api.post(sid, "work-log", {"message": "1", "data": chunk, "id": "w1"}, 201)
        await api.post(sid, "actions", {"action": "2", "details": chunk, "id": "w2"}, 201)
        before = await database["sessions"].find_one({"session_id": sid}, {"_id": 0})

        for suffix, body in [
            ("work-log", {"message": "3", "data": chunk}),
            ("actions", {"action": "3", "details": chunk}),
            ("artifacts", {"path": "p", "metadata": chunk}),
            ("work-log/batch", {"entries": [{"message": "3", "data": chunk}]}),
        ]:
            self._assert_full(await api.call("POST", f"/{sid}/{suffix}", body), sid)

        assert await database["sessions"].find_one({"session_id": sid}, {"_id": 0}) == before
        session = await api.get(sid)
        assert (session["action_count"], session["artifact_count"]) == (2, 0)

    async def test_a_retry_of_a_stored_entry_still_answers_200_when_full(self, api: Api) -> None:
        sid = (await api.create())["session_id"]
        chunk = _payload_of(25 * 1024)
        first = await api.post(sid, "work-log", {"message": "1", "data": chunk, "id": "w1"}, 201)
        await api.post(sid, "work-log", {"message": "2", "data": chunk, "id": "w2"}, 201)

        retried = await api.post(sid, "work-log", {"message": "1", "data": chunk, "id": "w1"}, 200)

        assert retried == first

    async def test_full_session_is_continued_by_replay(self, api: Api) -> None:
        sid = (await api.create())["session_id"]
        chunk = _payload_of(25 * 1024)
        for i in range(2):
            await api.post(sid, "work-log", {"message": str(i), "data": chunk}, 201)
        self._assert_full(await api.call("POST", f"/{sid}/work-log", {"message": "x", "data": chunk}), sid)

        replay = await api.post(sid, "replay", None, 201)

        await api.post(replay["session_id"], "work-log", {"message": "x", "data": chunk}, 201)
        assert (await api.get(replay["session_id"]))["action_count"] == 2

    async def test_small_writes_that_fit_still_succeed_up_to_the_cap(self, api: Api) -> None:
        sid = (await api.create())["session_id"]
        stored = 0
        while True:
            response = await api.call("POST", f"/{sid}/work-log", {"message": "m", "data": _payload_of(4 * 1024)})
            if response.status_code == 409:
                self._assert_full(response, sid)
                break
            assert response.status_code == 201
            stored += 1
        assert 10 <= stored < 16
        assert (await api.get(sid))["action_count"] == stored

    async def test_every_entry_type_counts_once_against_the_cap(self, api: Api, database: MongoDatabase) -> None:
        """The paged log keeps no copies: a checkpoint costs what an info entry costs, and ``payload_bytes`` is
        exactly the stored entries' size."""
        stored: dict[str, int] = {}
        for entry_type in ("info", "checkpoint"):
            sid = (await api.create())["session_id"]
            stored[entry_type] = 0
            while True:
                body = {"message": "m", "type": entry_type, "data": _payload_of(4 * 1024)}
                response = await api.call("POST", f"/{sid}/work-log", body)
                if response.status_code == 409:
                    self._assert_full(response, sid)
                    break
                assert response.status_code == 201
                stored[entry_type] += 1
            doc = await database["sessions"].find_one({"session_id": sid})
            assert doc is not None
            pages = await database["log_pages"].find({"session_id": sid}).to_list(None)
            entries = [*doc["work_log"], *(entry for page in pages for entry in page["entries"])]
            assert doc["payload_bytes"] == sum(stored_size(entry) for entry in entries) <= 64 * 1024

        assert stored["checkpoint"] == stored["info"]


async def test_write_that_would_pass_mongodbs_16_mib_is_409_full_and_stores_nothing(
    api: Api, database: MongoDatabase
) -> None:
    """The running byte count covers the arrays; MongoDB's own limit backs it up for everything else."""
    sid = (await api.create(context_summary={}))["session_id"]
    for number in range(16):  # a context of ~16 MB, built the way 16 PATCH requests of 1 MB would
        await database["sessions"].update_one(
            {"session_id": sid}, {"$set": {f"context_summary.k{number}": "y" * 1_000_000}}
        )
    before = await database["sessions"].find_one({"session_id": sid}, {"_id": 0})
    big_batch = {"entries": [{"message": "m", "data": _payload_of(60 * 1024)} for _ in range(14)]}

    for method, suffix, body in [
        ("PATCH", "context", {"more": "z" * 900_000}),
        ("POST", "handoff", {"summary": "z" * 900_000}),
        ("POST", "complete", {"summary": "z" * 900_000}),
        ("POST", "work-log/batch", big_batch),
    ]:
        response = await api.call(method, f"/{sid}/{suffix}", body)
        assert response.status_code == 409, (suffix, response.status_code)
        assert problem(response, 409)["title"] == "Session is full", suffix
        assert f"POST /v1/sessions/{sid}/replay" in response.json()["detail"]

    assert await database["sessions"].find_one({"session_id": sid}, {"_id": 0}) == before
    assert (await api.post(sid, "actions", {"action": "small"}, 201))["action"] == "small"


class _TooLargeForCache:
    """The sessions collection, except that updates fail as MongoDB does when a write outgrows its cache (388)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        raise WriteError("TransactionTooLargeForCache", code=388, details={"code": 388})

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        raise OperationFailure("TransactionTooLargeForCache", code=388)

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:  # appends, through group commit
        errors = [{"index": n, "code": 388, "errmsg": "TransactionTooLargeForCache"} for n in range(len(requests))]
        raise BulkWriteError({"writeErrors": errors, "nMatched": 0, "nModified": 0, "nUpserted": 0, "nInserted": 0})


async def test_write_too_large_for_mongodbs_cache_is_409_full(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Code 388 cannot succeed on a retry either: the same clean 409 as a session past its size cap, not a 500."""
    sid = (await api.create())["session_id"]
    real = store.sessions()
    monkeypatch.setattr(store, "sessions", lambda: _TooLargeForCache(real))

    for method, suffix, body in [
        ("POST", "work-log", {"message": "m"}),
        ("POST", "artifacts", {"path": "a.py"}),
        ("PATCH", "context", {"k": "v"}),
        ("POST", "complete", {"summary": "done"}),
    ]:
        response = await api.call(method, f"/{sid}/{suffix}", body)
        assert problem(response, 409)["title"] == "Session is full", suffix
