"""Blobs through both clients: uploads from bytes, a path and a file object, downloads into a path and a file,
the listing, deletes and errors; the blocking client over a real socket streams without holding the blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from handoff.app import create_app
from handoff.client import AsyncHandoffClient, HandoffClient, Invalid, NotFound
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.factories import Tenant
from tests.test_client import BASE_URL, FAST, running
from tests.test_client_sync import serve_app

MIB = 1024 * 1024


@pytest.fixture
async def handoff(app: Litestar, tenant: Tenant) -> AsyncIterator[AsyncHandoffClient]:
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncHandoffClient(BASE_URL, tenant.secret, transport=transport, **FAST) as client:
            yield client


async def test_a_blob_goes_in_from_bytes_a_path_or_a_file_and_comes_back(
    handoff: AsyncHandoffClient, tmp_path: Path
) -> None:
    sid = (await handoff.create_session()).session_id
    content = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and 4 bytes: several chunks on both sides
    source = tmp_path / "in.bin"
    source.write_bytes(content)

    from_bytes = await handoff.upload_blob(sid, content, content_type="image/png")
    from_path = await handoff.upload_blob(sid, source)
    with source.open("rb") as file:
        from_file = await handoff.upload_blob(sid, file)
    empty = await handoff.upload_blob(sid, b"")

    digest = hashlib.sha256(content).hexdigest()
    assert {b.sha256 for b in (from_bytes, from_path, from_file)} == {digest}
    assert {b.size for b in (from_bytes, from_path, from_file)} == {len(content)}
    assert (from_bytes.content_type, from_path.content_type) == ("image/png", "application/octet-stream")
    assert empty.size == 0
    into = io.BytesIO()
    assert await handoff.download_blob(sid, from_file.blob_id, to=into) == len(content)
    assert into.getvalue() == content
    target = tmp_path / "out.bin"
    assert await handoff.download_blob(sid, from_path.blob_id, to=target) == len(content)
    assert target.read_bytes() == content
    assert await handoff.download_blob(sid, empty.blob_id, to=io.BytesIO()) == 0
    listed = await handoff.list_blobs(sid)
    assert [b.blob_id for b in listed.items] == [b.blob_id for b in (from_bytes, from_path, from_file, empty)]
    artifact = await handoff.record_artifact(sid, "shot.png", action="created", blob_id=from_bytes.blob_id)
    assert artifact.blob_id == from_bytes.blob_id


async def test_log_work_and_log_action_reference_a_blob_of_the_session(handoff: AsyncHandoffClient) -> None:
    sid = (await handoff.create_session()).session_id
    blob = await handoff.upload_blob(sid, b"checkpoint state")

    entry = await handoff.log_work(sid, "state saved", type="checkpoint", blob_id=blob.blob_id)
    action = await handoff.log_action(sid, "screenshot", blob_id=blob.blob_id)
    plain = await handoff.log_work(sid, "no content")

    assert (entry.blob_id, action.blob_id, plain.blob_id) == (blob.blob_id, blob.blob_id, None)
    stored = await handoff.get_work_log_entry(sid, entry.id)
    assert stored.blob_id == blob.blob_id
    with pytest.raises(Invalid):  # not a blob of this session: 422, nothing stored
        await handoff.log_action(sid, "elsewhere", blob_id="blob_" + "0" * 32)


async def test_a_deleted_blob_is_not_found_and_a_second_delete_is_fine(handoff: AsyncHandoffClient) -> None:
    sid = (await handoff.create_session()).session_id
    blob = await handoff.upload_blob(sid, b"bytes")

    await handoff.delete_blob(sid, blob.blob_id)

    with pytest.raises(NotFound):
        await handoff.download_blob(sid, blob.blob_id, to=io.BytesIO())
    with pytest.raises(NotFound):
        await handoff.delete_blob(sid, blob.blob_id)  # not retried: the 404 is the answer
    assert (await handoff.list_blobs(sid)).total == 0


async def test_the_blocking_client_streams_a_file_both_ways_over_a_socket(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant, tmp_path: Path
) -> None:
    size = 24 * MIB
    source, target = tmp_path / "big.bin", tmp_path / "back.bin"
    with source.open("wb") as out:
        for n in range(size // MIB):
            out.write(n.to_bytes(8, "little") * (MIB // 8))
    settings = Settings(mongodb_url=mongod.url, database=database.name, max_session_bytes=0)

    def script(url: str) -> tuple[str, int, int]:
        with HandoffClient(url, tenant.secret) as handoff:
            sid = handoff.create_session().session_id
            tracemalloc.start()
            try:
                blob = handoff.upload_blob(sid, source)
                written = handoff.download_blob(sid, blob.blob_id, to=target)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return blob.sha256, written, peak

    async with serve_app(create_app(settings, database=database)) as url:
        sha256, written, peak = await asyncio.to_thread(script, url)

    assert sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert written == size
    assert target.read_bytes() == source.read_bytes()
    # tracemalloc sees every thread of the process, the service's included: both together stay far below the
    # 24 MiB blob (about 8.5 MiB measured: a few chunks on each side plus the app's own allocations).
    assert peak < 12 * MIB, peak


async def test_the_blocking_client_logs_work_and_actions_with_a_blob(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    settings = Settings(mongodb_url=mongod.url, database=database.name)

    def script(url: str) -> tuple[str, str | None, str | None]:
        with HandoffClient(url, tenant.secret) as handoff:
            sid = handoff.create_session().session_id
            blob = handoff.upload_blob(sid, b"tool output")
            entry = handoff.log_work(sid, "ran the tests", blob_id=blob.blob_id)
            action = handoff.log_action(sid, "pytest", blob_id=blob.blob_id)
            return blob.blob_id, entry.blob_id, action.blob_id

    async with serve_app(create_app(settings, database=database)) as url:
        blob_id, entry_blob, action_blob = await asyncio.to_thread(script, url)

    assert entry_blob == action_blob == blob_id
