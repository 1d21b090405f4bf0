"""Retry safety (api.md: Work log idempotency, Idempotency-Key, external_id): a retried request stores nothing
twice and answers with what is stored; reusing an id or key for other content is a 422 that writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from handoff import clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from handoff.idempotency import service as idempotency
from handoff.localdb import MongodProcess
from handoff.sessions.schemas import SessionCreate
from tests.factories import Tenant

ID_REUSED = [{"field": "id", "message": "already used with other content"}]
KEY_REUSED = [{"field": "Idempotency-Key", "message": "reused with a different request"}]


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    """One app for the module (building one costs far more than a test here)."""
    return create_app(
        Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent")), database=database
    )


class Later:
    """A clock the test moves forward, so a write that should not happen would show in the timestamps."""

    def __init__(self) -> None:
        self.at = clock.now()

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Later:
    pinned = Later()
    monkeypatch.setattr(clock, "now", pinned.now)
    return pinned


def ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def _session(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> str:
    sid: str = ok(await client.post("/v1/sessions", json=body, headers=tenant.headers), 201)["session_id"]
    return sid


async def _stored(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    doc = await database["sessions"].find_one({"session_id": session_id}, {"_id": 0})
    assert doc is not None
    return doc


# Appends -----------------------------------------------------------------------------------------------------

APPENDS = [
    ("actions", {"action": "ran tests", "details": {"passed": 12, "ratio": 0.5, "tags": ["a", None]}}),
    ("work-log", {"message": "schema migrated", "type": "checkpoint", "data": {"step": 3, "nested": {"x": [1]}}}),
    ("artifacts", {"path": "src/app.py", "action": "created", "metadata": {"lines": 10}}),
]


async def test_retried_append_with_the_same_id_answers_200_with_the_stored_entry_stored_once(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, later: Later, subtests: pytest.Subtests
) -> None:
    for route, body in APPENDS:
        with subtests.test(route):
            sid = await _session(client, tenant)
            url = f"/v1/sessions/{sid}/{route}"
            first = ok(await client.post(url, json=body | {"id": "retry-1"}, headers=tenant.headers), 201)
            stored_after_first = await _stored(database, sid)
            later.at += timedelta(minutes=5)

            retried = ok(await client.post(url, json=body | {"id": "retry-1"}, headers=tenant.headers), 200)

            assert retried == first
            assert await _stored(database, sid) == stored_after_first
            array = "artifacts" if route == "artifacts" else "work_log"
            assert [entry["id"] for entry in stored_after_first[array]] == ["retry-1"]


async def test_retried_typed_entry_relying_on_defaults_matches_the_stored_one(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sid = await _session(client, tenant)
    url = f"/v1/sessions/{sid}/work-log"
    first = ok(await client.post(url, json={"message": "m", "id": "d1"}, headers=tenant.headers), 201)

    explicit = ok(
        await client.post(url, json={"message": "m", "id": "d1", "type": "info", "data": {}}, headers=tenant.headers),
        200,
    )

    assert explicit == first


OTHER_CONTENT = [
    ("actions", {"action": "ran tests"}, {"action": "ran linters"}),
    ("actions", {"action": "ran tests", "details": {"n": 1}}, {"action": "ran tests", "details": {"n": 2}}),
    ("actions", {"action": "ran tests"}, {"action": "ran tests", "details": {}}),
    ("work-log", {"message": "m"}, {"message": "m", "type": "error"}),
    ("work-log", {"message": "m"}, {"message": "n"}),
    ("work-log", {"message": "m", "data": {"a": 1}}, {"message": "m", "data": {"a": 1.5}}),
    ("artifacts", {"path": "a.py"}, {"path": "b.py"}),
    ("artifacts", {"path": "a.py"}, {"path": "a.py", "action": "deleted"}),
    ("artifacts", {"path": "a.py", "metadata": {"k": 1}}, {"path": "a.py"}),
]


async def test_same_id_with_other_content_is_422_and_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    for number, (route, first, second) in enumerate(OTHER_CONTENT):
        with subtests.test(route, first=first, second=second):
            sid = await _session(client, tenant)
            url = f"/v1/sessions/{sid}/{route}"
            ok(await client.post(url, json=first | {"id": f"x{number}"}, headers=tenant.headers), 201)
            before = await _stored(database, sid)

            body = problem(await client.post(url, json=second | {"id": f"x{number}"}, headers=tenant.headers), 422)

            assert body["errors"] == ID_REUSED
            assert await _stored(database, sid) == before


async def test_an_action_id_reused_by_a_typed_entry_is_422(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    ok(await client.post(f"/v1/sessions/{sid}/actions", json={"action": "a", "id": "e"}, headers=tenant.headers), 201)
    before = await _stored(database, sid)

    response = await client.post(
        f"/v1/sessions/{sid}/work-log", json={"message": "a", "id": "e"}, headers=tenant.headers
    )

    assert problem(response, 422)["errors"] == ID_REUSED
    assert await _stored(database, sid) == before


async def test_work_log_and_artifacts_have_separate_ids(client: httpx.AsyncClient, tenant: Tenant) -> None:
    sid = await _session(client, tenant)

    ok(
        await client.post(f"/v1/sessions/{sid}/actions", json={"action": "a", "id": "same"}, headers=tenant.headers),
        201,
    )
    ok(
        await client.post(f"/v1/sessions/{sid}/artifacts", json={"path": "p", "id": "same"}, headers=tenant.headers),
        201,
    )


async def test_the_same_id_in_two_sessions_is_two_entries(client: httpx.AsyncClient, tenant: Tenant) -> None:
    first, second = await _session(client, tenant), await _session(client, tenant)

    for sid in (first, second):
        response = await client.post(
            f"/v1/sessions/{sid}/actions", json={"action": "a", "id": "e1"}, headers=tenant.headers
        )
        assert response.status_code == 201


async def test_retry_of_an_append_to_a_session_ended_since_answers_with_the_stored_entry(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sid = await _session(client, tenant)
    url = f"/v1/sessions/{sid}/actions"
    first = ok(await client.post(url, json={"action": "a", "id": "e1"}, headers=tenant.headers), 201)
    ok(await client.post(f"/v1/sessions/{sid}/complete", headers=tenant.headers), 200)

    retried = ok(await client.post(url, json={"action": "a", "id": "e1"}, headers=tenant.headers), 200)
    fresh = await client.post(url, json={"action": "a", "id": "e2"}, headers=tenant.headers)

    assert retried == first
    assert fresh.status_code == 409


# Batches -----------------------------------------------------------------------------------------------------


async def test_batch_with_ids_already_stored_reports_them_as_duplicates(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    url = f"/v1/sessions/{sid}/work-log/batch"
    first = [{"message": f"m{i}", "id": f"b{i}"} for i in range(5)]
    ok(await client.post(url, json={"entries": first}, headers=tenant.headers), 201)

    overlapping = first[3:] + [{"message": f"m{i}", "id": f"b{i}", "type": "error"} for i in range(5, 8)]
    result = ok(await client.post(url, json={"entries": overlapping}, headers=tenant.headers), 201)

    assert result == {"appended": 3, "duplicates": 2}
    stored = await _stored(database, sid)
    assert [entry["id"] for entry in stored["work_log"]] == [f"b{i}" for i in range(8)]
    assert (stored["action_count"], stored["error_count"]) == (8, 3)


async def test_batch_retried_whole_appends_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    url = f"/v1/sessions/{sid}/work-log/batch"
    entries = [{"message": f"m{i}", "id": f"b{i}"} for i in range(4)]
    ok(await client.post(url, json={"entries": entries}, headers=tenant.headers), 201)
    before = await _stored(database, sid)

    result = ok(await client.post(url, json={"entries": entries}, headers=tenant.headers), 201)

    assert result == {"appended": 0, "duplicates": 4}
    assert await _stored(database, sid) == before


async def test_batch_repeating_an_id_inside_itself_stores_it_once(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    entries = [{"message": "m", "id": "r"}, {"message": "n", "id": "s"}, {"message": "m", "id": "r"}]

    result = ok(
        await client.post(f"/v1/sessions/{sid}/work-log/batch", json={"entries": entries}, headers=tenant.headers), 201
    )

    assert result == {"appended": 2, "duplicates": 1}
    assert [entry["id"] for entry in (await _stored(database, sid))["work_log"]] == ["r", "s"]


async def test_batch_reusing_an_id_for_other_content_is_422_and_writes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    url = f"/v1/sessions/{sid}/work-log/batch"
    ok(await client.post(url, json={"entries": [{"message": "m", "id": "k"}]}, headers=tenant.headers), 201)
    before = await _stored(database, sid)

    against_stored = [{"message": "new", "id": "n1"}, {"message": "other", "id": "k"}]
    inside_request = [{"message": "a", "id": "z"}, {"message": "b", "id": "z"}]

    for entries in (against_stored, inside_request):
        body = problem(await client.post(url, json={"entries": entries}, headers=tenant.headers), 422)
        assert body["errors"] == ID_REUSED
        assert await _stored(database, sid) == before


# Idempotency-Key ---------------------------------------------------------------------------------------------


async def test_create_with_an_idempotency_key_repeated_answers_200_with_the_same_session(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "create-1"}
    body = {"agent_type": "coder", "context_summary": {"k": 1}}
    first = ok(await client.post("/v1/sessions", json=body, headers=headers), 201)

    repeats = [ok(await client.post("/v1/sessions", json=body, headers=headers), 200) for _ in range(2)]

    assert repeats == [first, first]
    assert await database["sessions"].count_documents({}) == 1


async def test_the_request_that_inserts_answers_201_even_when_another_claimed_the_key_first(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """A first request that claimed its key but has not inserted yet (slow, or dead): the repeat that creates the
    session answers 201, every later one 200, so racing requests with one key see exactly one 201."""
    body = {"agent_type": "coder"}
    reserved = await idempotency.claim(
        tenant.workspace.workspace_id,
        scope="create",
        key="slow-first",
        body=SessionCreate.model_validate(body).model_dump(mode="json"),  # what the create route fingerprints
        proposed_session_id="sess_00000000-0000-4000-8000-000000000001",
        ttl_hours=24,
    )
    headers = {**tenant.headers, "Idempotency-Key": "slow-first"}

    creating = ok(await client.post("/v1/sessions", json=body, headers=headers), 201)
    repeated = ok(await client.post("/v1/sessions", json=body, headers=headers), 200)

    assert creating["session_id"] == repeated["session_id"] == reserved


async def test_create_with_an_idempotency_key_and_another_body_is_422_and_creates_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "create-2"}
    ok(await client.post("/v1/sessions", json={"agent_type": "coder"}, headers=headers), 201)

    for other in ({"agent_type": "reviewer"}, {}, {"agent_type": "coder", "context_summary": {}}):
        body = problem(await client.post("/v1/sessions", json=other, headers=headers), 422)
        assert body["errors"] == KEY_REUSED
    assert await database["sessions"].count_documents({}) == 1


async def test_different_idempotency_keys_create_different_sessions(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    ids = {
        ok(await client.post("/v1/sessions", json={}, headers={**who.headers, "Idempotency-Key": key}), 201)[
            "session_id"
        ]
        for who, key in ((tenant, "k1"), (tenant, "k2"), (other_tenant, "k1"))
    }

    assert len(ids) == 3


async def test_idempotency_key_is_kept_at_least_24_hours(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    ok(await client.post("/v1/sessions", json={}, headers={**tenant.headers, "Idempotency-Key": "ttl"}), 201)

    record = await database["idempotency_keys"].find_one({"key": "ttl"})
    indexes = await database["idempotency_keys"].index_information()

    assert record is not None
    assert record["expires_at"] - record["created_at"] >= timedelta(hours=24)
    assert any(
        index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0 for index in indexes.values()
    )


async def test_malformed_idempotency_key_is_422(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, subtests: pytest.Subtests
) -> None:
    sid = await _session(client, tenant)

    for key in ["x" * 256, "caf\u00e9".encode("latin-1"), "tab\tkey"]:
        with subtests.test(key=key[:20]):
            headers = {**tenant.headers, "Idempotency-Key": key}
            problem(await client.post("/v1/sessions", json={}, headers=headers), 422)
            problem(await client.post(f"/v1/sessions/{sid}/replay", headers=headers), 422)
    assert await database["sessions"].count_documents({}) == 1


async def test_idempotency_key_of_255_printable_characters_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = "".join(chr(c) for c in range(0x21, 0x7F)) * 3
    key = key[:100] + " " + key[100:]  # printable ASCII includes the space (inside: a header value's edges are trimmed)

    response = await client.post("/v1/sessions", json={}, headers={**tenant.headers, "Idempotency-Key": key[:255]})

    assert response.status_code == 201


async def test_replay_with_an_idempotency_key_repeated_answers_200_with_the_same_replay(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(client, tenant)
    headers = {**tenant.headers, "Idempotency-Key": "replay-1"}
    first = ok(await client.post(f"/v1/sessions/{sid}/replay", json={"agent_type": "b"}, headers=headers), 201)

    repeated = ok(await client.post(f"/v1/sessions/{sid}/replay", json={"agent_type": "b"}, headers=headers), 200)
    other_body = await client.post(f"/v1/sessions/{sid}/replay", json={"agent_type": "c"}, headers=headers)
    no_key = ok(await client.post(f"/v1/sessions/{sid}/replay", json={"agent_type": "b"}, headers=tenant.headers), 201)

    assert repeated == first
    assert first["session_id"].startswith("ses_replay_")
    assert problem(other_body, 422)["errors"] == KEY_REUSED
    assert no_key["session_id"] != first["session_id"]
    assert await database["sessions"].count_documents({}) == 3


async def test_an_idempotency_key_names_one_request_across_the_workspace(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    """The key is scoped to the workspace: used on one operation, it is a different request on any other."""
    first, second = await _session(client, tenant), await _session(client, tenant)
    headers = {**tenant.headers, "Idempotency-Key": "one-request"}
    ok(await client.post(f"/v1/sessions/{first}/replay", headers=headers), 201)

    other_session = await client.post(f"/v1/sessions/{second}/replay", headers=headers)
    other_operation = await client.post("/v1/sessions", json={}, headers=headers)

    assert problem(other_session, 422)["errors"] == KEY_REUSED
    assert problem(other_operation, 422)["errors"] == KEY_REUSED
    assert await database["sessions"].count_documents({}) == 3


async def test_replay_repeated_without_a_body_matches_the_first(client: httpx.AsyncClient, tenant: Tenant) -> None:
    sid = await _session(client, tenant)
    headers = {**tenant.headers, "Idempotency-Key": "replay-2"}
    first = ok(await client.post(f"/v1/sessions/{sid}/replay", headers=headers), 201)

    assert ok(await client.post(f"/v1/sessions/{sid}/replay", headers=headers), 200) == first


# external_id -------------------------------------------------------------------------------------------------


async def test_create_with_an_existing_external_id_answers_200_with_that_session(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    first = ok(
        await client.post("/v1/sessions", json={"external_id": "thread-1", "agent_type": "a"}, headers=tenant.headers),
        201,
    )

    same = ok(await client.post("/v1/sessions", json={"external_id": "thread-1"}, headers=tenant.headers), 200)
    other_fields = ok(
        await client.post("/v1/sessions", json={"external_id": "thread-1", "agent_type": "b"}, headers=tenant.headers),
        200,
    )

    assert same == first
    assert other_fields == first
    assert await database["sessions"].count_documents({}) == 1


async def test_create_with_the_external_id_of_an_ended_session_returns_it(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sid = await _session(client, tenant, external_id="thread-2")
    ok(await client.post(f"/v1/sessions/{sid}/complete", headers=tenant.headers), 200)

    again = ok(await client.post("/v1/sessions", json={"external_id": "thread-2"}, headers=tenant.headers), 200)

    assert (again["session_id"], again["status"]) == (sid, "completed")


async def test_external_id_is_unique_per_workspace_only(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await _session(client, tenant, external_id="thread-3")
    theirs = await _session(client, other_tenant, external_id="thread-3")

    assert mine != theirs


async def test_sessions_without_external_id_do_not_collide(client: httpx.AsyncClient, tenant: Tenant) -> None:
    ids = {await _session(client, tenant) for _ in range(3)} | {await _session(client, tenant, external_id=None)}

    assert len(ids) == 4
