"""``export --blobs`` and ``import --blobs`` (``handoff.bulk.blobs``) against the real MongoDB.

Blobs are made through the HTTP API; the export writes them and their manifest; the import brings back what is
missing under the same ids, checks each sha256, refuses what has no session, and leaves every session's blob bytes
equal to what GridFS holds, however often it runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from handoff.blobs.storage import ChunkWriter
from handoff.bulk import blobs as bulk_blobs
from handoff.config import Settings
from handoff.db import MongoDatabase
from tests.factories import Tenant


async def _session_with_blobs(client: httpx.AsyncClient, tenant: Tenant, *contents: bytes) -> tuple[str, list[str]]:
    created = await client.post("/v1/sessions", headers=tenant.headers, json={})
    sid = str(created.json()["session_id"])
    ids = []
    for content in contents:
        response = await client.post(
            f"/v1/sessions/{sid}/blobs", headers={**tenant.headers, "content-type": "image/png"}, content=content
        )
        assert response.status_code == 201, response.text
        ids.append(str(response.json()["blob_id"]))
    return sid, ids


async def _blob_bytes(database: MongoDatabase, sid: str) -> tuple[int, int]:
    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    return doc["payload_bytes"], doc["stored_bytes"]["blobs"]


async def test_exported_blobs_come_back_with_their_ids_types_and_counts(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: several chunks
    sid, (first, second, empty) = await _session_with_blobs(client, tenant, big, b"small", b"")
    before = await _blob_bytes(database, sid)
    slug = tenant.workspace.slug

    assert await bulk_blobs.export_blobs(tmp_path, workspace=slug) == 3
    manifest = [json.loads(line) for line in (tmp_path / bulk_blobs.MANIFEST).read_text().splitlines()]
    assert [(m["blob_id"], m["size"], m["content_type"]) for m in manifest] == [
        (first, len(big), "image/png"),
        (second, 5, "image/png"),
        (empty, 0, "image/png"),
    ]
    for blob_id in (first, second):  # the move: the blobs are gone on this side
        assert (await client.delete(f"/v1/sessions/{sid}/blobs/{blob_id}", headers=tenant.headers)).status_code == 204

    done = await bulk_blobs.import_blobs(tmp_path, workspace=slug, settings=settings)
    again = await bulk_blobs.import_blobs(tmp_path, workspace=slug, settings=settings)

    assert (done.imported, done.present, done.rejected) == (2, 1, [])
    assert (again.imported, again.present, again.rejected) == (0, 3, [])
    got = await client.get(f"/v1/sessions/{sid}/blobs/{first}", headers=tenant.headers)
    assert got.content == big
    assert got.headers["content-type"] == "image/png"
    assert await _blob_bytes(database, sid) == before


async def test_a_blob_without_its_session_or_with_other_bytes_is_rejected(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase, settings: Settings, tmp_path: Path
) -> None:
    sid, (blob_id,) = await _session_with_blobs(client, tenant, b"original")
    await bulk_blobs.export_blobs(tmp_path, workspace=tenant.workspace.slug)
    assert (await client.delete(f"/v1/sessions/{sid}/blobs/{blob_id}", headers=tenant.headers)).status_code == 204
    (tmp_path / sid / blob_id).write_bytes(b"tampered")
    manifest = tmp_path / bulk_blobs.MANIFEST
    line: dict[str, Any] = json.loads(manifest.read_text())
    orphan = {**line, "session_id": "sess_gone", "blob_id": "blob_" + "1" * 32}
    escape = {**line, "session_id": "..", "blob_id": "blob_" + "2" * 32}
    manifest.write_text("\n".join(json.dumps(x) for x in (line, orphan, escape, {"no": "fields"})) + "\n")

    done = await bulk_blobs.import_blobs(tmp_path, workspace=tenant.workspace.slug, settings=settings)

    assert done.imported == 0
    assert len(done.rejected) == 4
    assert "sha256" in done.rejected[0]
    assert "sess_gone" in done.rejected[1]
    assert await database["fs.files"].count_documents({}) == 0
    assert await database["fs.chunks"].count_documents({}) == 0
    assert (await _blob_bytes(database, sid))[1] == 0


async def test_a_run_killed_while_writing_a_blob_leaves_nothing_once_run_again(
    *,
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: MongoDatabase,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: chunks written before the kill
    sid, (blob_id,) = await _session_with_blobs(client, tenant, big)
    slug = tenant.workspace.slug
    assert await bulk_blobs.export_blobs(tmp_path, workspace=slug) == 1
    assert (await client.delete(f"/v1/sessions/{sid}/blobs/{blob_id}", headers=tenant.headers)).status_code == 204

    async def killed(file: IO[bytes]) -> AsyncIterator[bytes]:
        yield file.read(1024 * 1024)
        raise KeyboardInterrupt  # not an error the writer cleans up after: the process ends here

    monkeypatch.setattr(bulk_blobs, "_chunks", killed)
    monkeypatch.setattr(ChunkWriter, "abort", lambda self: asyncio.sleep(0))  # a killed process runs no cleanup
    with pytest.raises(KeyboardInterrupt):
        await bulk_blobs.import_blobs(tmp_path, workspace=slug, settings=settings)
    monkeypatch.undo()
    assert await _orphan_chunks(database) > 0

    done = await bulk_blobs.import_blobs(tmp_path, workspace=slug, settings=settings)

    assert (done.imported, done.rejected) == (1, [])
    assert await _orphan_chunks(database) == 0
    got = await client.get(f"/v1/sessions/{sid}/blobs/{blob_id}", headers=tenant.headers)
    assert got.content == big


async def _orphan_chunks(database: MongoDatabase) -> int:
    """GridFS chunks whose file has no files document."""
    files = await database["fs.files"].distinct("_id")
    return await database["fs.chunks"].count_documents({"files_id": {"$nin": files}})
