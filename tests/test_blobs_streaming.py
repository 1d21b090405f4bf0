"""Blobs streamed over a real socket (uvicorn on a loopback port, the real database): a 100 MiB blob in and out
with the process's memory flat, a client that disconnects mid-upload, and the body deadline of a long upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.factories import Tenant
from tests.inprocess import in_process
from tests.test_client_sync import serve_app

KIB = 1024
MIB = 1024 * KIB
BIG = 100 * MIB
#: What the test process may allocate at its peak while 100 MiB go through it both ways (client and server).
FLAT = 16 * MIB
WAIT_SECONDS = 20


def uncapped(mongod: MongodProcess, database: MongoDatabase, **overrides: Any) -> Settings:
    """Settings whose sessions have no byte cap (``HANDOFF_MAX_SESSION_BYTES=0``)."""
    return Settings(
        mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"), max_session_bytes=0, **overrides
    )


async def generated(total: int, piece: int, digest: Any) -> AsyncIterator[bytes]:
    """``total`` bytes, ``piece`` at a time, made as they are sent (one piece held at a time), hashed in ``digest``."""
    block = bytes(range(256)) * (piece // 256)
    for n in range(total // piece):
        data = n.to_bytes(8, "little") + block[8:]
        digest.update(data)
        yield data


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) until ``check`` holds: the server cleans up after a client it can no longer answer."""
    for _ in range(WAIT_SECONDS * 20):
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} did not happen within {WAIT_SECONDS} s")


async def _session(http: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await http.post("/v1/sessions", headers=tenant.headers, json={})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def test_100_mib_go_in_and_out_with_the_memory_flat(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    async with (
        serve_app(create_app(uncapped(mongod, database), database=database)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        sid = await _session(http, tenant)
        sent = hashlib.sha256()
        tracemalloc.start()
        try:
            uploaded = await http.post(
                f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=generated(BIG, MIB, sent)
            )
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            received = hashlib.sha256()
            size = 0
            async with http.stream(
                "GET", f"/v1/sessions/{sid}/blobs/{uploaded.json()['blob_id']}", headers=tenant.headers
            ) as download:
                async for data in download.aiter_bytes():
                    received.update(data)
                    size += len(data)
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["size"] == BIG
    assert uploaded.json()["sha256"] == sent.hexdigest()
    assert download.status_code == 200
    assert download.headers["content-length"] == str(BIG)
    assert (size, received.hexdigest()) == (BIG, sent.hexdigest())
    assert upload_peak < FLAT, f"uploading 100 MiB allocated {upload_peak / MIB:.1f} MiB at its peak"
    assert download_peak < FLAT, f"downloading 100 MiB allocated {download_peak / MIB:.1f} MiB at its peak"


async def test_a_client_that_disconnects_mid_upload_leaves_nothing_behind(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    settings = Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"))
    async with serve_app(create_app(settings, database=database)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            sid = await _session(http, tenant)
        host, port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        try:
            head = (
                f"POST /v1/sessions/{sid}/blobs HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {tenant.headers['Authorization']}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {8 * MIB}\r\n\r\n"
            )
            writer.write(head.encode())
            writer.write(b"\x01" * (2 * MIB))  # a quarter of what it announced
            await writer.drain()

            async def chunks_written() -> bool:
                return await database["fs.chunks"].count_documents({}) > 0

            await eventually(chunks_written, "the upload's first chunks reaching GridFS")
        finally:
            writer.close()
            await writer.wait_closed()

        async def nothing_left() -> bool:
            files = await database["fs.files"].count_documents({})
            return files == 0 and await database["fs.chunks"].count_documents({}) == 0

        await eventually(nothing_left, "the removal of the abandoned upload's chunks")

    session = await database["sessions"].find_one({"session_id": sid})
    assert session is not None
    assert session["payload_bytes"] == 0


# The body deadline of a streamed upload ----------------------------------------------------------------------


@pytest.fixture
async def slow_client(mongod: MongodProcess, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """Bodies get 1 s; an upload 1 more second for each KiB it has sent."""
    settings = Settings(
        mongodb_url=mongod.url,
        database=database.name,
        data_dir=Path("/nonexistent"),
        request_body_timeout_seconds=1.0,
        blob_upload_min_bytes_per_second=KIB,
    )
    async with in_process(create_app(settings, database=database)) as http:
        yield http


async def paced(pieces: int, size: int, pause: float, *, stall_after: int | None = None) -> AsyncIterator[bytes]:
    for n in range(pieces):
        if n == stall_after:
            await asyncio.sleep(3.0)  # three times the 1 s any one wait may take
        yield b"z" * size
        await asyncio.sleep(pause)


async def test_an_upload_that_keeps_arriving_outlasts_the_body_deadline(
    slow_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sid = await _session(slow_client, tenant)

    response = await slow_client.post(
        f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=paced(40, KIB, 0.05)
    )  # about 2 s of body, twice the deadline of any other request

    assert response.status_code == 201, response.text
    assert response.json()["size"] == 40 * KIB


async def test_an_upload_that_stalls_is_408_and_leaves_nothing(
    slow_client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    sid = await _session(slow_client, tenant)

    response = await slow_client.post(
        f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=paced(400, KIB, 0, stall_after=300)
    )

    assert response.status_code == 408, response.text
    assert "stopped arriving" in response.json()["detail"]
    assert await database["fs.chunks"].count_documents({}) == 0
    assert await database["fs.files"].count_documents({}) == 0


async def test_an_upload_that_trickles_is_408(slow_client: httpx.AsyncClient, tenant: Tenant) -> None:
    """A few bytes now and then, each wait under a second: what they earn at 1 KiB/s never keeps up."""
    sid = await _session(slow_client, tenant)

    response = await slow_client.post(f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=paced(100, 8, 0.25))

    assert response.status_code == 408, response.text


async def test_other_routes_keep_the_whole_body_deadline(slow_client: httpx.AsyncClient, tenant: Tenant) -> None:
    async def json_body() -> AsyncIterator[bytes]:
        yield b'{"agent_type": "'
        async for piece in paced(40, 1, 0.05):
            yield piece
        yield b'"}'

    response = await slow_client.post(
        "/v1/sessions", headers={**tenant.headers, "content-type": "application/json"}, content=json_body()
    )

    assert response.status_code == 408, response.text
