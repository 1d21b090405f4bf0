"""Liveness and readiness probes (no auth), and the OpenAPI document next to them."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from pymongo.errors import PyMongoError

from handoff import health
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoClient, MongoDatabase, create_client
from handoff.errors import PROBLEM_JSON
from handoff.localdb import start_mongod


@asynccontextmanager
async def in_process(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` (lifespan included) and call it in-process; enter and leave it in the same task."""
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _connected(client: MongoClient, seconds: float = 60) -> None:
    """Ping until the server answers (each try bounded by the client's server selection timeout)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await client.admin.command("ping")
            return
        except PyMongoError:
            if time.monotonic() > deadline:
                raise


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503
    assert body["title"] == "Service unavailable"
    assert body["detail"]
    assert "Traceback" not in response.text


async def test_healthz_is_ok_without_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_the_mongodb_version(client: httpx.AsyncClient, database: MongoDatabase) -> None:
    expected = (await database.command("buildInfo"))["version"]

    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "mongodb": {"version": expected}}
    assert re.match(r"^\d+\.\d+", expected)


@pytest.fixture
def quick_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe gives up after 0.3 s instead of 2 s, to keep the suite fast."""
    monkeypatch.setattr(health, "READINESS_TIMEOUT_SECONDS", 0.3)


@pytest.mark.usefixtures("collect_pymongo_leaked_socket")
async def test_readyz_is_503_when_the_database_is_stopped(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_mongod(tmp_path / "throwaway")  # blocking, on purpose: it may install signal handlers
    running = True
    client = create_client(server.url, settings.model_copy(update={"server_selection_timeout_ms": 2_000}))
    try:
        async with in_process(create_app(settings, database=client["readyz"])) as http:
            # The client finds the new server and opens a connection first, under no deadline of the probe's: on a
            # loaded host, discovering a mongod just started took most of the probe's 2 s, and the 200 this
            # test starts from was then a 503.
            await _connected(client)
            assert (await http.get("/readyz")).status_code == 200

            server.stop()
            running = False
            monkeypatch.setattr(health, "READINESS_TIMEOUT_SECONDS", 0.3)

            _assert_unavailable(await http.get("/readyz"))
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await client.close()
        if running:
            server.stop()


@pytest.mark.usefixtures("quick_readiness", "collect_pymongo_leaked_socket")
async def test_readyz_is_503_when_no_server_listens(settings: Settings) -> None:
    url = f"mongodb://127.0.0.1:{_free_port()}/?directConnection=true"
    client = create_client(url, settings.model_copy(update={"server_selection_timeout_ms": 200}))
    try:
        async with in_process(create_app(settings, database=client["readyz"])) as http:
            _assert_unavailable(await http.get("/readyz"))
    finally:
        await client.close()


async def test_openapi_document_is_served_without_a_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "handoff"
    assert {"/healthz", "/readyz", "/v1/sessions"} <= set(document["paths"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_interactive_api_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
