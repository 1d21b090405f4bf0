"""Hostile input: operator injection, path injection through keys, deep nesting, huge arrays, oversized bodies.

MongoDB interprets two kinds of client data if a service is careless: objects with ``$`` keys where a value is
expected (``{"$gt": ""}`` matches everything, ``{"$where": ...}`` runs JavaScript), and strings that an
aggregation or pipeline update reads as expressions (``"$status"`` is a field path, ``"$$ROOT"`` the whole
document). Each must be refused with 422 or stored as the plain data it is, and the stored document is read
back to prove it. Every string field comes from the OpenAPI schema of every request body, so a new field is
covered (or the test says it is not). Bodies that are too deep, too wide or too long are refused with 4xx
(413 for size) without the server reading more than its limit.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from handoff.app import create_app
from handoff.config import KIB, MIB, Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON
from tests.factories import Tenant
from tests.inprocess import in_process
from tests.test_client_sync import serve_app

PLAN = "hostile-plan"
SESSION = "{session_id}"
#: Stands for a blob of the case's own session in a body (``_bound`` puts the real id in).
BLOB = "{blob_id}"
#: The blob each fresh session was given, by session id.
FRESH_BLOBS: dict[str, str] = {}

#: Every request body with every optional field present (``{session_id}`` is a fresh session per case).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/sessions"): {
        "agent_type": "coder",
        "plan": PLAN,
        "context_summary": {"goal": "x"},
        "external_id": "ext-1",
    },
    ("POST", "/v1/sessions/{session_id}/complete"): {"summary": "done"},
    ("POST", "/v1/sessions/{session_id}/fail"): {"reason": "broken"},
    ("POST", "/v1/sessions/{session_id}/end"): {"status": "completed", "summary": "done"},
    ("POST", "/v1/sessions/{session_id}/actions"): {
        "action": "ran",
        "details": {"k": 1},
        "id": "a-1",
        "blob_id": BLOB,
    },
    ("POST", "/v1/sessions/{session_id}/work-log"): {
        "message": "m",
        "type": "info",
        "data": {"k": 1},
        "id": "w-1",
        "blob_id": BLOB,
    },
    ("POST", "/v1/sessions/{session_id}/work-log/batch"): {
        "entries": [{"message": "m", "type": "info", "data": {"k": 1}, "id": "b-1", "blob_id": BLOB}]
    },
    ("POST", "/v1/sessions/{session_id}/artifacts"): {
        "path": "src/a.py",
        "action": "created",
        "metadata": {"k": 1},
        "id": "r-1",
        "blob_id": BLOB,
    },
    ("PUT", "/v1/sessions/{session_id}/context"): {"k": {"v": 1}},
    ("PATCH", "/v1/sessions/{session_id}/context"): {"k": {"v": 1}},
    ("POST", "/v1/sessions/{session_id}/handoff"): {
        "summary": "s",
        "next_steps": ["n"],
        "blockers": ["b"],
        "context_for_next": {"k": 1},
    },
    ("POST", "/v1/sessions/{session_id}/replay"): {"agent_type": "coder"},
    ("POST", "/v1/plans"): {
        "slug": "p-1",
        "title": "t",
        "description": "d",
        "phases": [{"name": "build", "tasks": [{"name": "code", "status": "pending"}]}],
        "current_phase": "build",
    },
    ("PATCH", "/v1/plans/{slug}"): {"title": "t", "description": "d", "current_phase": "build"},
    ("PATCH", "/v1/plans/{slug}/tasks"): {"phase": "build", "task": "code", "status": "completed"},
    ("POST", "/v1/handoffs/claim"): {"agent_type": "coder", "plan": PLAN, "lease_seconds": 60},
    ("POST", "/v1/claims/{claim_id}/release"): {"reason": "giving up"},
}

#: Where a free-form object sits in a body (the PUT/PATCH context body is one as a whole).
FREE_FORM: dict[tuple[str, str], tuple[str | int, ...]] = {
    ("POST", "/v1/sessions"): ("context_summary",),
    ("POST", "/v1/sessions/{session_id}/actions"): ("details",),
    ("POST", "/v1/sessions/{session_id}/work-log"): ("data",),
    ("POST", "/v1/sessions/{session_id}/work-log/batch"): ("entries", 0, "data"),
    ("POST", "/v1/sessions/{session_id}/artifacts"): ("metadata",),
    ("PUT", "/v1/sessions/{session_id}/context"): ("k",),
    ("PATCH", "/v1/sessions/{session_id}/context"): ("k",),
    ("POST", "/v1/sessions/{session_id}/handoff"): ("context_for_next",),
}

OPERATOR_OBJECTS: list[Any] = [{"$where": "sleep(1000) || true"}, {"$gt": ""}]
EXPRESSION_STRINGS = ["$status", "$$ROOT", '{"$where": "sleep(1000) || true"}']
HOSTILE_OBJECTS: list[dict[str, Any]] = [
    {"$where": "sleep(1000) || true"},
    {"$set": {"status": "completed"}},
    {"a.b": 1, "c": {"d.e": {"f.g": [1]}}},
    {"x": [{"$inc": {"action_count": 1000}}]},
    {"a": {"$gt": ""}},
    {"work_log.$[]": 1},
    {"$": 1},
    {"": "empty key"},
    {"nul\u0000key": 1},
    {"status": "$status", "root": "$$ROOT", "now": "$$NOW", "list": ["$status", {"x": "$$ROOT"}]},
    {"lit": {"$literal": 1}},
    {"n": 2**64, "m": [-(2**63) - 1]},  # past BSON's int64: the encoder would fail after validation
]
REFUSED = {404, 409, 422}  # a lookup of a name that is not there (404) or a rule (409/422): nothing stored
NOTHING_MATCHED = 204  # a claim whose filters match no waiting handoff (an expression is a name, not a query)
#: Where a string of a body is stored inside a sentence rather than as a field of its own (a release's reason
#: ends its replay session's ``final_summary``), by route: how to find it in the stored documents.
STORED_WITHIN: dict[tuple[str, str], Callable[[str], Callable[[Any], bool]]] = {
    ("POST", "/v1/claims/{claim_id}/release"): lambda text: (
        lambda node: isinstance(node, str) and node.endswith(f": {text}")
    ),
}


# Walking the OpenAPI schema alongside a body ------------------------------------------------------------------


def _resolve(node: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = components[node["$ref"].rsplit("/", 1)[-1]]
    if "oneOf" in node:  # X | None: the non-null branch
        node = next(branch for branch in node["oneOf"] if branch.get("type") != "null")
        return _resolve(node, components)
    return node


def _string_fields(node: dict[str, Any], components: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Patterns (``phases[].tasks[].name``) of the string fields a schema declares; free-form objects aside."""
    node = _resolve(node, components)
    if node.get("type") == "string":
        yield prefix
    elif node.get("type") == "array":
        yield from _string_fields(node["items"], components, prefix + "[]")
    for name, child in node.get("properties", {}).items():
        yield from _string_fields(child, components, f"{prefix}.{name}" if prefix else name)


def _string_leaves(
    node: dict[str, Any], components: dict[str, Any], value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """(pattern, path) of each string of a body that its schema declares as a string field."""
    node = _resolve(node, components)
    pattern = "".join(f".{p}" if isinstance(p, str) else "[]" for p in path).lstrip(".")
    if node.get("type") == "string" and isinstance(value, str):
        yield pattern, path
    elif node.get("type") == "array" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(node["items"], components, item, (*path, index))
    elif isinstance(value, dict):
        for name, child in node.get("properties", {}).items():
            if name in value:
                yield from _string_leaves(child, components, value[name], (*path, name))


def _replaced(body: dict[str, Any], path: tuple[str | int, ...], value: Any, *, number: int = 0) -> dict[str, Any]:
    """``body`` with ``value`` at ``path``; names that must be new (external id, slug) made unique by ``number``."""
    changed = copy.deepcopy(body)
    for unique in ("external_id", "slug"):
        if unique in changed:
            changed[unique] = f"{changed[unique]}-{number}"
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _body_schema(app: Litestar, method: str, template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = _openapi(app)
    body = schema["paths"][template][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    return body, schema["components"]["schemas"]


def _openapi(app: Litestar) -> dict[str, Any]:
    """The app's OpenAPI document, built once per app (building it is not free)."""
    cached: dict[str, Any] | None = getattr(app.state, "hostile_openapi", None)
    if cached is None:
        cached = app.state.hostile_openapi = app.openapi_schema.to_schema()
    return cached


# Fixtures and helpers -------------------------------------------------------------------------------------------


@pytest.fixture
async def plan(client: httpx.AsyncClient, tenant: Tenant) -> str:
    body = BODIES[("POST", "/v1/plans")] | {"slug": PLAN}
    response = await client.post("/v1/plans", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    return PLAN


async def _fresh_session(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.post("/v1/sessions", headers=tenant.headers, json={"agent_type": "target"})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    blob = await client.post(f"/v1/sessions/{session_id}/blobs", headers=tenant.headers, content=b"content")
    assert blob.status_code == 201, blob.text
    FRESH_BLOBS[session_id] = blob.json()["blob_id"]
    return session_id


def _bound(url: str, body: Any) -> Any:
    """``body`` with :data:`BLOB` replaced by the blob of the session in ``url`` (entries must reference one)."""
    if body == BLOB:
        return FRESH_BLOBS[url.split("/")[3]]
    if isinstance(body, dict):
        return {key: _bound(url, value) for key, value in body.items()}
    if isinstance(body, list):
        return [_bound(url, value) for value in body]
    return body


async def _fresh_plan(client: httpx.AsyncClient, tenant: Tenant, number: int) -> str:
    slug = f"target-{number}"
    body = BODIES[("POST", "/v1/plans")] | {"slug": slug}
    assert (await client.post("/v1/plans", headers=tenant.headers, json=body)).status_code == 201
    return slug


async def _fresh_claim(client: httpx.AsyncClient, tenant: Tenant, number: int) -> str:
    """A claim of a handoff of its own (an agent type no other case uses, so the claim takes this one)."""
    agent_type = f"claimed-{number}"
    created = await client.post("/v1/sessions", headers=tenant.headers, json={"agent_type": agent_type})
    session_id = created.json()["session_id"]
    handoff = await client.post(f"/v1/sessions/{session_id}/handoff", headers=tenant.headers, json={"summary": "s"})
    assert handoff.status_code == 200, handoff.text
    claim = await client.post("/v1/handoffs/claim", headers=tenant.headers, json={"agent_type": agent_type})
    assert claim.status_code == 201, claim.text
    claim_id: str = claim.json()["claim_id"]
    return claim_id


async def _target(client: httpx.AsyncClient, tenant: Tenant, template: str, number: int) -> str:
    """The template's path with a fresh session, plan or claim of its own, so what is stored is this case's alone."""
    if "{claim_id}" in template:
        return template.replace("{claim_id}", await _fresh_claim(client, tenant, number))
    if "{session_id}" in template:
        return template.replace("{session_id}", await _fresh_session(client, tenant))
    if "{slug}" in template:
        return template.replace("{slug}", await _fresh_plan(client, tenant, number))
    return template


async def _stored(database: MongoDatabase, tenant: Tenant, response: httpx.Response | None = None) -> list[Any]:
    """The workspace's sessions and plans; with ``response``, only the document that request wrote."""
    query: dict[str, Any] = {"workspace_id": tenant.workspace.workspace_id}
    collections = ("sessions", "plans")
    if response is not None:
        answer = response.json()
        parts = response.request.url.path.split("/")  # /v1/sessions/<id>/... or /v1/plans/<slug>/...
        if isinstance(answer, dict) and "session_id" in answer:
            query["session_id"], collections = answer["session_id"], ("sessions",)
        elif isinstance(answer, dict) and "slug" in answer:
            query["slug"], collections = answer["slug"], ("plans",)
        elif len(parts) > 3:
            key = "session_id" if parts[2] == "sessions" else "slug"
            query[key], collections = parts[3], (parts[2],)
    return [doc for name in collections for doc in await database[name].find(query).to_list(None)]


def _nodes(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


async def _stored_as_data(
    database: MongoDatabase, tenant: Tenant, value: Any, response: httpx.Response | None = None
) -> bool:
    """Whether ``value`` (a string or an object) is a node of a stored document, exactly as sent."""
    return await _stored_as(database, tenant, lambda node: node == value and type(node) is type(value), response)


async def _stored_as(
    database: MongoDatabase, tenant: Tenant, found: Callable[[Any], bool], response: httpx.Response | None = None
) -> bool:
    """Whether a node of a stored document is ``found``."""
    docs = await _stored(database, tenant, response)
    return any(found(node) for doc in docs for node in _nodes(doc))


def _problem(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.request.method, response.request.url, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    assert response.json()["status"] == response.status_code


# Operator-shaped values in every string field ------------------------------------------------------------------


def test_every_string_field_of_every_body_is_covered(app: Litestar) -> None:
    """The cases below reach every string field the schema declares (a new field must be added to BODIES)."""
    for path, item in _openapi(app)["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation or not path.startswith("/v1"):
                continue
            if "application/json" not in operation["requestBody"]["content"]:
                continue  # raw bytes (a blob upload): stored as they come, never read as JSON or as a query
            assert (method.upper(), path) in BODIES, f"no hostile-input case for {method.upper()} {path}"
            node, components = _body_schema(app, method, path)
            declared = set(_string_fields(node, components))
            reached = {pattern for pattern, _ in _string_leaves(node, components, BODIES[(method.upper(), path)])}
            assert declared == reached, f"{method.upper()} {path}: string fields not reached: {declared - reached}"


async def test_operator_objects_in_string_fields_are_refused(
    client: httpx.AsyncClient, app: Litestar, database: MongoDatabase, tenant: Tenant, plan: str
) -> None:
    number = 0
    for (method, template), body in BODIES.items():
        node, components = _body_schema(app, method, template)
        for pattern, path in _string_leaves(node, components, body):
            for hostile in OPERATOR_OBJECTS:
                number += 1
                url = await _target(client, tenant, template, number)
                response = await client.request(
                    method, url, headers=tenant.headers, json=_bound(url, _replaced(body, path, hostile, number=number))
                )
                _problem(response, 422)
                assert not await _stored_as_data(database, tenant, hostile), (method, template, pattern)


async def test_expression_shaped_strings_are_stored_as_plain_strings(
    client: httpx.AsyncClient, app: Litestar, database: MongoDatabase, tenant: Tenant, plan: str
) -> None:
    number, stored = 0, 0
    for (method, template), body in BODIES.items():
        node, components = _body_schema(app, method, template)
        for pattern, path in _string_leaves(node, components, body):
            for text in EXPRESSION_STRINGS:
                number += 1
                url = await _target(client, tenant, template, number)
                response = await client.request(
                    method, url, headers=tenant.headers, json=_bound(url, _replaced(body, path, text, number=number))
                )
                where = (method, template, pattern, text, response.status_code, response.text[:200])
                assert response.status_code in (200, 201, NOTHING_MATCHED, *REFUSED), where
                if response.status_code in (200, 201):
                    stored += 1
                    within = STORED_WITHIN.get((method, template))
                    if within is None:
                        assert await _stored_as_data(database, tenant, text, response), where
                    else:
                        assert await _stored_as(database, tenant, within(text), response), where
    assert stored > 40  # most fields take free text: the check above really ran


async def test_operator_shaped_query_values_are_plain_strings(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _fresh_session(client, tenant)
    everything = (await client.get("/v1/sessions", headers=tenant.headers)).json()["items"]
    cursor_with_operator = "W3swOjF9LCB7IiRndCI6ICIifV0"  # base64 of '[{0:1}, {"$gt": ""}]', not JSON

    for params in (
        {"agent_type": '{"$ne": null}'},
        {"agent_type": "$agent_type"},
        {"external_id": '{"$gt": ""}'},
        {"plan": "$$ROOT"},
    ):
        listed = await client.get("/v1/sessions", headers=tenant.headers, params=params)
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] == [], params
    ignored = await client.get("/v1/sessions", headers=tenant.headers, params={"agent_type[$ne]": "x"})
    assert ignored.json()["items"] == everything  # an unknown parameter, not an operator
    _problem(await client.get("/v1/sessions", headers=tenant.headers, params={"cursor": cursor_with_operator}), 422)
    for session_id in ('{"$gt": ""}', "$where", "$$ROOT", ".."):
        _problem(await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers), 404)


# Hostile keys in every free-form object ------------------------------------------------------------------------


async def test_dollar_and_dotted_keys_are_refused_or_stored_verbatim(
    client: httpx.AsyncClient, database: MongoDatabase, tenant: Tenant, plan: str
) -> None:
    number, outcomes = 0, []
    for (method, template), where in FREE_FORM.items():
        for hostile in HOSTILE_OBJECTS:
            number += 1
            url = await _target(client, tenant, template, number)
            body = _replaced(BODIES[(method, template)], where, hostile, number=number)
            response = await client.request(method, url, headers=tenant.headers, json=_bound(url, body))
            case = (method, template, hostile, response.status_code, response.text[:200])
            outcomes.append(case[:4])
            if response.status_code == 422:
                _problem(response, 422)
                assert not await _stored_as_data(database, tenant, hostile), case
            else:
                assert response.status_code in (200, 201), case
                assert await _stored_as_data(database, tenant, hostile, response), case
    # A session's own counters were never moved by a key that looks like an update operator.
    for doc in await _stored(database, tenant):
        if "work_log" in doc:
            assert doc["action_count"] == len(doc["work_log"]), doc["session_id"]
            assert doc["status"] in ("active", "paused"), doc["session_id"]
    statuses = {status for *_, status in outcomes}
    assert 422 in statuses
    assert statuses & {200, 201}


async def test_top_level_context_keys_that_mongodb_would_read_as_paths_are_422(
    client: httpx.AsyncClient, database: MongoDatabase, tenant: Tenant
) -> None:
    session_id = await _fresh_session(client, tenant)
    for key in ("a.b", "$set", "", "nul\u0000", "$"):
        for method in ("PUT", "PATCH"):
            response = await client.request(
                method, f"/v1/sessions/{session_id}/context", headers=tenant.headers, json={key: 1}
            )
            _problem(response, 422)
    stored = await database["sessions"].find_one({"session_id": session_id})
    assert stored is not None
    assert stored["context_summary"] is None


# Depth, width and length ----------------------------------------------------------------------------------------


def _nested(depth: int, *, array: bool = False) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if array else {"a": value}
    return value


def _nested_text(depth: int, *, array: bool = False) -> str:
    """10,000 levels as text (json.dumps itself would recurse too deep to write it)."""
    opening, closing = ("[", "]") if array else ('{"a":', "}")
    return opening * depth + '"bottom"' + closing * depth


async def test_ten_thousand_levels_of_nesting_are_refused_without_a_crash(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    session_id = await _fresh_session(client, tenant)
    base = f"/v1/sessions/{session_id}"
    headers = {**tenant.headers, "Content-Type": "application/json"}
    for array in (False, True):
        deep = _nested_text(10_000, array=array)
        for method, url, content in (
            ("POST", "/v1/sessions", f'{{"context_summary": {deep}}}'),
            ("POST", f"{base}/work-log", f'{{"message": "m", "data": {deep}}}'),
            ("POST", f"{base}/actions", f'{{"action": "a", "details": {{"x": {deep}}}}}'),
            ("PUT", f"{base}/context", f'{{"k": {deep}}}'),
            ("PATCH", f"{base}/context", deep),
            ("POST", f"{base}/handoff", f'{{"summary": "s", "context_for_next": {{"x": {deep}}}}}'),
            ("POST", "/v1/plans", deep),
        ):
            response = await client.request(method, url, headers=headers, content=content)
            _problem(response, 400, 413, 422)
    # Modest nesting is ordinary data.
    ok = await client.put(f"{base}/context", headers=tenant.headers, json={"k": _nested(20)})
    assert ok.status_code == 200, ok.text
    assert (await client.get("/healthz")).status_code == 200


async def test_huge_arrays_are_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    session_id = await _fresh_session(client, tenant)
    base = f"/v1/sessions/{session_id}"
    many_entries = {"entries": [{"message": "m"}] * 1001}
    wide_data = {"message": "m", "data": {"xs": list(range(50_000))}}  # ~290 KB: under the body limit
    over_the_body_limit = {"summary": "s", "next_steps": ["step"] * 200_000}  # ~1.6 MB

    _problem(await client.post(f"{base}/work-log/batch", headers=tenant.headers, json=many_entries), 422)
    _problem(await client.post(f"{base}/work-log", headers=tenant.headers, json=wide_data), 413)
    _problem(await client.post(f"{base}/handoff", headers=tenant.headers, json=over_the_body_limit), 413)
    _problem(await client.put(f"{base}/context", headers=tenant.headers, json={"k": [0] * 600_000}), 413)
    session = (await client.get(base, headers=tenant.headers)).json()
    assert (session["action_count"], session["status"], session["context_summary"]) == (0, "active", None)


# Oversized and slow bodies ----------------------------------------------------------------------------------------


class Trickle:
    """A request body sent in chunks, with a pause between them, counting what the server pulled."""

    def __init__(self, total: int, *, chunk: int = 64 * KIB, pause: float = 0.0) -> None:
        self.total, self.chunk, self.pause, self.sent = total, chunk, pause, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"message": "'
        while self.sent < self.total:
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += self.chunk
            yield b"x" * self.chunk
        yield b'"}'


async def test_oversized_bodies_are_413_before_they_are_read(client: httpx.AsyncClient, tenant: Tenant) -> None:
    session_id = await _fresh_session(client, tenant)
    url = f"/v1/sessions/{session_id}/work-log"
    headers = {**tenant.headers, "Content-Type": "application/json"}
    declared = json.dumps({"message": "x" * (MIB + 1)})

    _problem(await client.post(url, headers=headers, content=declared), 413)
    streamed = Trickle(8 * MIB)  # no Content-Length: chunked
    _problem(await client.post(url, headers=headers, content=streamed), 413)
    assert streamed.sent <= MIB + 2 * streamed.chunk, f"the server read {streamed.sent} bytes of an oversized body"
    slow = Trickle(4 * MIB, pause=0.01)  # slowloris-style: a trickle that would never end within the limit
    _problem(await client.post(url, headers=headers, content=slow), 413)
    assert slow.sent <= MIB + 2 * slow.chunk
    mcp = await client.post(
        "/mcp", headers={**headers, "Accept": "application/json, text/event-stream"}, content=Trickle(4 * MIB)
    )
    assert mcp.status_code == 413
    assert (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).json()["action_count"] == 0


class Stall:
    """A request body that sends its start, then nothing for ``seconds``, then its end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"message": "'
        await asyncio.sleep(self.seconds)
        yield b'late"}'


async def test_a_stalled_or_trickling_body_is_408_and_a_prompt_one_is_read(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """The whole body must arrive within the timeout: a stall, or a slowloris trickle under the size limit whose
    every pause is shorter than the timeout, is refused with 408; a body that arrives in time, in chunks, is read."""
    impatient = settings.model_copy(update={"request_body_timeout_seconds": 1.0})
    async with in_process(create_app(impatient, database=database)) as client:
        session_id = await _fresh_session(client, tenant)
        url = f"/v1/sessions/{session_id}/work-log"
        headers = {**tenant.headers, "Content-Type": "application/json"}

        started = time.monotonic()
        stalled = await client.post(url, headers=headers, content=Stall(30))
        waited = time.monotonic() - started
        trickle = await client.post(url, headers=headers, content=Trickle(KIB, chunk=64, pause=0.25))
        mcp = await client.post(
            "/mcp", headers={**headers, "Accept": "application/json, text/event-stream"}, content=Stall(30)
        )
        prompt = await client.post(url, headers=headers, content=Trickle(8 * KIB, chunk=KIB, pause=0.01))

        assert waited >= 1.0  # refused at the deadline, not before
        for refused in (stalled, trickle, mcp):
            _problem(refused, 408)
            assert "did not arrive within 1 s" in refused.json()["detail"]
        assert prompt.status_code == 201, prompt.text
        assert prompt.json()["message"] == "x" * 8 * KIB
        assert (await client.get(f"/v1/sessions/{session_id}", headers=tenant.headers)).json()["action_count"] == 1


async def test_uvicorn_answers_a_stalled_body_408_and_closes_the_connection(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """Over a real socket: the headers promise 100 bytes, 10 arrive, then nothing; the connection does not hang."""
    impatient = settings.model_copy(update={"request_body_timeout_seconds": 0.3})
    async with serve_app(create_app(impatient, database=database)) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            "POST /v1/sessions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {tenant.secret}\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b'{"agent_t')
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(), timeout=10)  # read() returns once the server closes
        finally:
            writer.close()
            await writer.wait_closed()

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/problem+json" in answer
    assert b"connection: close" in answer.lower()


async def test_a_log_past_16_mib_still_takes_a_body_sized_context_handoff_and_summary(
    client: httpx.AsyncClient, database: MongoDatabase, tenant: Tenant
) -> None:
    """The paged log keeps the session document small however long the log grows: 18 MB of entries later, notes
    and a context of a whole body each still fit (before the paged log, such a session refused them as full)."""
    session_id = await _fresh_session(client, tenant)
    base = f"/v1/sessions/{session_id}"
    batch = {"entries": [{"message": "m", "data": {"blob": "x" * 60_000}}] * 15}  # ~0.9 MB a request
    for _ in range(20):
        assert (await client.post(f"{base}/work-log/batch", headers=tenant.headers, json=batch)).status_code == 201

    for method, path, body in (
        ("PUT", "context", {"k": "y" * 1_000_000}),
        ("POST", "handoff", {"summary": "s", "context_for_next": {"k": "z" * 1_000_000}}),
        ("PATCH", "context", {"k2": "w" * 1_000_000}),
        ("POST", "complete", {"summary": "q" * 1_000_000}),
    ):
        response = await client.request(method, f"{base}/{path}", headers=tenant.headers, json=body)
        assert response.status_code == 200, (method, path, response.text[:300])
    session = (await client.get(base, headers=tenant.headers)).json()
    assert (session["status"], session["action_count"]) == ("completed", 300)
    assert await database["log_pages"].count_documents({"session_id": session_id}) > 0
