"""Blobs streamed over a real socket (uvicorn on a loopback port, the real database): a 100 MiB blob in and out
with the process's memory flat, a client that disconnects mid-upload, and the body deadline of a long upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId

from handoff.app import create_app
from handoff.blobs import service, storage
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


# A download cut off ------------------------------------------------------------------------------------------


async def _open_cursors(database: MongoDatabase, file_id: ObjectId) -> int:
    """The server's idle cursors on one blob's chunks: a download of it waiting to send its next reply."""
    found = await database.client.admin.aggregate(
        [
            {"$currentOp": {"idleCursors": True, "allUsers": True}},
            {
                "$match": {
                    "type": "idleCursor",
                    "ns": f"{database.name}.fs.chunks",
                    "cursor.originatingCommand.filter.files_id": file_id,
                }
            },
        ]
    )
    return len(await found.to_list())


@contextlib.asynccontextmanager
async def stalled_download(url: str, tenant: Tenant, database: MongoDatabase) -> AsyncIterator[ObjectId]:
    """A 32 MiB blob's download whose client reads 1 MiB and then no more, so the service waits on the socket with
    its cursor open (it is, before the block runs); the client's socket closes when the block ends. Yields the
    blob's GridFS file id."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        sid = await _session(http, tenant)
        uploaded = await http.post(
            f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=generated(32 * MIB, MIB, hashlib.sha256())
        )
        assert uploaded.status_code == 201, uploaded.text
    files = await database["fs.files"].find_one({"metadata.blob_id": uploaded.json()["blob_id"]})
    assert files is not None
    file_id = files["_id"]
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)  # so the service soon waits on this client
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(
            f"GET /v1/sessions/{sid}/blobs/{uploaded.json()['blob_id']} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {tenant.headers['Authorization']}\r\n\r\n".encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(MIB)

        async def cursor_open() -> bool:
            return await _open_cursors(database, file_id) > 0

        await eventually(cursor_open, "the download's cursor waiting between replies")
        yield file_id
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.contextmanager
def garbage_collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _no_cursor_left(database: MongoDatabase, file_id: ObjectId) -> bool:
    return await _open_cursors(database, file_id) == 0


async def test_a_client_that_disconnects_mid_download_leaves_no_cursor_open(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    async with serve_app(create_app(uncapped(mongod, database), database=database)) as url:
        async with stalled_download(url, tenant, database) as file_id:
            pass  # the client goes away half-way

        await eventually(partial(_no_cursor_left, database, file_id), "the closing of the abandoned download's cursor")


async def test_a_download_cancelled_by_the_shutdown_leaves_no_cursor_open(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    """The graceful shutdown's timeout cancels a download waiting on a client that stopped reading: the response's
    task is cancelled in ``send``, outside the generator that holds the cursor. The garbage collector is off: it
    would close the cursor some time after collecting the generator, and the service must not wait for it."""
    app = create_app(uncapped(mongod, database), database=database)
    with garbage_collector_off():
        async with contextlib.AsyncExitStack() as client:
            async with serve_app(app, shutdown_timeout=0.2) as url:
                file_id = await client.enter_async_context(stalled_download(url, tenant, database))
            # The service has stopped; its client is still connected, still not reading.

            await eventually(
                partial(_no_cursor_left, database, file_id), "the closing of the cancelled download's cursor"
            )


async def test_a_read_cancelled_on_every_turn_of_the_loop_closes_its_cursor(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    """What a download goes through once its client has gone: anyio's cancel scope cancels the response's task
    again on every turn of the loop until it ends, the first time while the next reply is on its way."""
    sid = await _session(client, tenant)
    uploaded = await client.post(f"/v1/sessions/{sid}/blobs", headers=tenant.headers, content=b"\x07" * (4 * MIB))
    stored = await service.get_blob(tenant.workspace.workspace_id, sid, uploaded.json()["blob_id"])
    reading = storage.read(stored, 0, stored.size - 1)
    for _ in range(storage.CHUNKS_PER_READ):  # the first reply
        await anext(reading)
    following = asyncio.ensure_future(anext(reading))
    await asyncio.sleep(0)  # it waits for the second reply, which is on its way

    while not following.done():
        following.cancel()
        await asyncio.sleep(0)

    assert following.cancelled()
    await eventually(partial(_no_cursor_left, database, stored.file_id), "the closing of the read's cursor")


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
