"""Every error leaves the service as RFC 9457 problem details, never as a traceback.

The first half drives the one handler through a tiny Litestar app of its own that raises each kind of error;
the second half checks the real app's wiring (malformed JSON, unknown route, wrong method, body limit,
validation, an unexpected failure, the database going away).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from pydantic import BaseModel
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WriteConcernError,
)

from handoff import auth
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import (
    PROBLEM_JSON,
    Conflict,
    FieldError,
    HandoffError,
    Invalid,
    NotFound,
    SessionEnded,
    SessionFull,
    TooLarge,
    Unauthorized,
    Unavailable,
    handle_exception,
)
from tests.factories import Tenant
from tests.inprocess import in_process

SECRET_INTERNALS = "password=hunter2 at /srv/handoff/secret.py line 42"

_to_raise: list[Exception] = []


@get("/raise")
async def raise_configured() -> None:
    raise _to_raise[0]


class Thing(BaseModel):
    name: str
    size: int


@post("/things")
async def create_thing(data: JSONBody[Thing]) -> dict[str, Any]:
    return data.model_dump()


@pytest.fixture
async def tiny() -> AsyncIterator[httpx.AsyncClient]:
    """An app with only the error handler of the service, and routes that raise what a test asks for."""
    app = Litestar(
        route_handlers=[raise_configured, create_thing],
        exception_handlers={Exception: handle_exception},
        request_max_body_size=1024,
        debug=False,
    )
    async with in_process(app) as client:
        yield client
    _to_raise.clear()


async def _raise(client: httpx.AsyncClient, exc: Exception) -> Any:
    _to_raise[:] = [exc]
    return await client.get("/raise")


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is problem+json with the RFC 9457 members, consistent with its status."""
    assert response.status_code == status
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert "Traceback" not in response.text
    return body


# The handler, through a tiny app ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "title"),
    [
        (Unauthorized("a valid API key is required"), 401, "Unauthorized"),
        (NotFound("no session 'sess_1'"), 404, "Not found"),
        (Conflict("the plan slug is taken"), 409, "Conflict"),
        (SessionEnded("the session has ended; POST .../replay continues it"), 409, "Session has ended"),
        (SessionFull("the session is full; POST .../replay continues it"), 409, "Session is full"),
        (TooLarge("details is over 65536 bytes"), 413, "Content too large"),
        (Invalid("unknown plan 'nope'"), 422, "Invalid input"),
    ],
)
async def test_domain_error_becomes_problem_with_its_status_title_and_detail(
    tiny: httpx.AsyncClient, exc: HandoffError, status: int, title: str
) -> None:
    response = await _raise(tiny, exc)

    body = _assert_problem(response, status)
    assert body == {"type": body["type"], "title": title, "status": status, "detail": exc.detail}
    assert body["type"].endswith(f"/{status}")
    assert "retry-after" not in response.headers


async def test_invalid_with_field_errors_lists_them(tiny: httpx.AsyncClient) -> None:
    exc = Invalid(
        "context keys are invalid",
        errors=[FieldError("context.$where", "may not start with '$'"), FieldError("context.", "may not be empty")],
    )

    response = await _raise(tiny, exc)

    body = _assert_problem(response, 422)
    assert body["errors"] == [
        {"field": "context.$where", "message": "may not start with '$'"},
        {"field": "context.", "message": "may not be empty"},
    ]


async def test_unavailable_is_503_with_retry_after(tiny: httpx.AsyncClient) -> None:
    response = await _raise(tiny, Unavailable("no primary"))

    body = _assert_problem(response, 503)
    assert body["title"] == "Service unavailable"
    assert body["detail"] == "no primary"
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    "exc",
    [
        ServerSelectionTimeoutError("No servers found yet, Timeout: 30s"),
        AutoReconnect("connection closed"),
        NotPrimaryError("not primary"),
        NetworkTimeout("timed out"),
        ConnectionFailure("connection refused"),
        ExecutionTimeout("operation exceeded time limit"),
        WaitQueueTimeoutError("pool exhausted"),
        WriteConcernError("waiting for replication timed out", 64, {}),
        OperationFailure("cache is under pressure", code=365),  # TemporarilyUnavailable
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_database_unavailable_errors_are_503_with_retry_after(tiny: httpx.AsyncClient, exc: Exception) -> None:
    response = await _raise(tiny, exc)

    body = _assert_problem(response, 503)
    assert "retry" in body["detail"].lower()
    assert int(response.headers["retry-after"]) > 0
    assert str(exc) not in response.text


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(SECRET_INTERNALS),
        KeyError(SECRET_INTERNALS),
        HandoffError(SECRET_INTERNALS),
        OperationFailure(SECRET_INTERNALS, 2),
        DuplicateKeyError(SECRET_INTERNALS, 11000),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_unexpected_error_is_500_without_internals_and_logged_with_request_id(
    tiny: httpx.AsyncClient, exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="handoff.errors"):
        response = await _raise(tiny, exc)

    body = _assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "secret.py" not in response.text
    assert type(exc).__name__ not in response.text
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert request_id in body["detail"]
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[1] is exc


async def test_two_failures_get_different_request_ids(tiny: httpx.AsyncClient) -> None:
    first = await _raise(tiny, RuntimeError("boom"))
    second = await _raise(tiny, RuntimeError("boom"))

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_litestar_validation_error_is_422_with_field_errors(tiny: httpx.AsyncClient) -> None:
    response = await tiny.post("/things", json={"name": "x", "size": "big"})

    body = _assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["size"]
    assert all(isinstance(error["message"], str) and error["message"] for error in body["errors"])


async def test_litestar_http_errors_keep_their_status_as_problems(tiny: httpx.AsyncClient) -> None:
    _assert_problem(await tiny.get("/nowhere"), 404)
    _assert_problem(await tiny.delete("/things"), 405)
    _assert_problem(await tiny.post("/things", content=b"{", headers={"content-type": "application/json"}), 400)
    _assert_problem(await tiny.post("/things", json={"name": "x" * 2000, "size": 1}), 413)


# The real app's wiring ----------------------------------------------------------------------------------------


@pytest.fixture
async def small_body_client(settings: Settings, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with a 1 KiB body limit."""
    app = create_app(settings.model_copy(update={"max_body_bytes": 1024}), database=database)
    async with in_process(app) as client:
        yield client


async def test_malformed_json_is_400_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/sessions",
        content=b'{"agent_type": "claude",',
        headers={**tenant.headers, "content-type": "application/json"},
    )

    body = _assert_problem(response, 400)
    assert "errors" not in body


async def test_invalid_utf8_inside_a_json_string_is_400_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "content-type": "application/json"}

    for path in ("/v1/sessions", "/v1/plans"):
        response = await client.post(
            path, content=b'{"agent_type": "\xff", "slug": "s", "title": "t"}', headers=headers
        )
        assert "UTF-8" in _assert_problem(response, 400)["detail"], path


async def test_a_missing_required_body_is_422_saying_so(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for content in (None, b""):
        response = await client.post("/v1/plans", content=content, headers=tenant.headers)
        body = _assert_problem(response, 422)
        assert body["errors"] == [{"field": "body", "message": "a JSON body is required"}]


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    _assert_problem(await client.get("/no/such/route"), 404)
    _assert_problem(await client.get("/v1/no-such-thing", headers=tenant.headers), 404)


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.delete("/healthz")
    _assert_problem(response, 405)
    assert "GET" in response.headers["allow"]
    _assert_problem(await client.put("/v1/sessions", json={}, headers=tenant.headers), 405)


class CountingBody:
    """A request body sent in 512-byte chunks, counting how many the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.total = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total):
            self.pulled += 1
            yield b" " * 512  # JSON whitespace: the body stays well-formed however far it is read


async def test_body_over_the_limit_is_413_problem(small_body_client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"agent_type": "claude", "context_summary": {"notes": "x" * 2000}}

    response = await small_body_client.post("/v1/sessions", json=body, headers=tenant.headers)

    body = _assert_problem(response, 413)
    assert "errors" not in body


async def test_body_declared_over_the_limit_is_refused_before_it_is_read(
    small_body_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sent = CountingBody(chunks=64)

    response = await small_body_client.post(
        "/v1/sessions",
        content=sent,
        headers={**tenant.headers, "content-type": "application/json", "content-length": str(64 * 512)},
    )

    _assert_problem(response, 413)
    assert sent.pulled <= 1


async def test_streamed_body_over_the_limit_is_refused_once_past_the_limit(
    small_body_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sent = CountingBody(chunks=64)

    response = await small_body_client.post(
        "/v1/sessions", content=sent, headers={**tenant.headers, "content-type": "application/json"}
    )

    _assert_problem(response, 413)
    assert sent.pulled <= 4  # 1 KiB limit, 512-byte chunks: refused at the third, not after all 64


async def test_body_under_the_limit_is_accepted(small_body_client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await small_body_client.post("/v1/sessions", json={"agent_type": "claude"}, headers=tenant.headers)

    assert response.status_code == 201


async def test_validation_failure_is_422_problem_with_field_errors(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/sessions", json={"context_summary": "not an object", "agent_type": "claude"}, headers=tenant.headers
    )

    body = _assert_problem(response, 422)
    assert body["errors"]
    assert all(set(error) == {"field", "message"} for error in body["errors"])
    assert any("context_summary" in error["field"] for error in body["errors"])


async def test_invalid_query_parameter_is_422_problem(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/v1/sessions", params={"limit": "0"}, headers=tenant.headers)

    body = _assert_problem(response, 422)
    assert any("limit" in error["field"] for error in body["errors"])


async def test_unexpected_exception_is_500_problem_without_traceback(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_: str) -> None:
        raise RuntimeError(SECRET_INTERNALS)

    monkeypatch.setattr(auth.workspaces, "authenticate", broken)

    response = await client.get("/v1/sessions", headers=tenant.headers)

    body = _assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["x-request-id"] in body["detail"]


@pytest.mark.parametrize(
    "exc",
    [ServerSelectionTimeoutError("No servers found yet"), AutoReconnect("connection reset by peer")],
    ids=lambda exc: type(exc).__name__,
)
async def test_database_unreachable_is_503_problem_with_retry_after(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    async def unreachable(_: str) -> None:
        raise exc

    monkeypatch.setattr(auth.workspaces, "authenticate", unreachable)

    response = await client.get("/v1/sessions", headers=tenant.headers)

    _assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
