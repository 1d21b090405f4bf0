"""The blobs REST contract (api.md: Blobs) through HTTP against the real MongoDB: uploads, downloads, ranges,
headers, limits, the session byte cap, deletes and tenancy, and what GridFS holds afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gridfs.asynchronous import AsyncGridFSBucket
from litestar import Litestar

from handoff.app import create_app
from handoff.blobs import service
from handoff.blobs.storage import CHUNK_SIZE
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import PROBLEM_JSON, Invalid
from handoff.localdb import MongodProcess
from handoff.sessions.limits import stored_size
from tests.factories import Tenant
from tests.inprocess import in_process
from tests.test_ops_metrics import scrape, value

KIB = 1024
MIB = 1024 * KIB


# Helpers -----------------------------------------------------------------------------------------------------


def pattern(size: int, seed: int = 7) -> bytes:
    """``size`` bytes that differ from chunk to chunk (so a misplaced chunk shows), deterministic."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
    out = bytearray()
    n = 0
    while len(out) < size:
        out += bytes([n % 251]) + block
        n += 1
    return bytes(out[:size])


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def pieces(data: bytes, size: int = 64 * KIB) -> AsyncIterator[bytes]:
    """A body sent chunked (no Content-Length), ``size`` bytes at a time."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class CountingBody:
    """A chunked body that counts how much of it the server pulled."""

    def __init__(self, total: int, piece: int = 64 * KIB) -> None:
        self.total, self.piece, self.pulled = total, piece, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += self.piece
            yield b"x" * self.piece


async def stored_counts(database: MongoDatabase) -> tuple[int, int]:
    """(files, chunks) in the GridFS bucket."""
    return await database["fs.files"].count_documents({}), await database["fs.chunks"].count_documents({})


class Blobs:
    """One tenant's calls under ``/v1/sessions``."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client, self.tenant = client, tenant

    async def session(self) -> str:
        response = await self.client.post("/v1/sessions", headers=self.tenant.headers, json={})
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    async def upload(
        self, session_id: str, content: Any, content_type: str | None = None, **headers: str
    ) -> httpx.Response:
        sent = {**self.tenant.headers, **headers}
        if content_type is not None:
            sent["content-type"] = content_type
        return await self.client.post(f"/v1/sessions/{session_id}/blobs", content=content, headers=sent)

    async def stored(self, session_id: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        response = await self.upload(session_id, data, content_type)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def get(self, session_id: str, blob_id: str, **headers: str) -> httpx.Response:
        return await self.client.get(
            f"/v1/sessions/{session_id}/blobs/{blob_id}", headers={**self.tenant.headers, **headers}
        )

    async def head(self, session_id: str, blob_id: str, **headers: str) -> httpx.Response:
        return await self.client.head(
            f"/v1/sessions/{session_id}/blobs/{blob_id}", headers={**self.tenant.headers, **headers}
        )

    async def delete(self, session_id: str, blob_id: str) -> httpx.Response:
        return await self.client.delete(f"/v1/sessions/{session_id}/blobs/{blob_id}", headers=self.tenant.headers)

    async def listing(self, session_id: str, **params: int) -> httpx.Response:
        return await self.client.get(f"/v1/sessions/{session_id}/blobs", headers=self.tenant.headers, params=params)


def tuned(mongod: MongodProcess, database: MongoDatabase, **overrides: Any) -> Settings:
    return Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"), **overrides)


@asynccontextmanager
async def client_with(settings: Settings, database: MongoDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(settings, database=database)) as http:
        yield http


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    return create_app(tuned(mongod, database), database=database)


@pytest.fixture
def blobs(client: httpx.AsyncClient, tenant: Tenant) -> Blobs:
    return Blobs(client, tenant)


# Round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * MIB + 17], ids=lambda n: f"{n}B")
async def test_a_blob_comes_back_byte_for_byte_with_its_hash_and_headers(
    blobs: Blobs, database: MongoDatabase, size: int
) -> None:
    data = pattern(size)
    sid = await blobs.session()

    created = await blobs.stored(sid, data, "application/x-tar")
    fetched = await blobs.get(sid, created["blob_id"])

    digest = hashlib.sha256(data).hexdigest()
    assert set(created) == {"blob_id", "size", "sha256", "content_type", "created_at"}
    assert created["blob_id"].startswith("blob_")
    assert (created["size"], created["sha256"], created["content_type"]) == (size, digest, "application/x-tar")
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-length"] == str(size)
    assert fetched.headers["etag"] == f'"{digest}"'
    assert fetched.headers["content-type"] == "application/x-tar"
    assert fetched.headers["accept-ranges"] == "bytes"
    # GridFS's own layout, chunks of its default size: a plain AsyncGridFSBucket reads the blob back.
    file = await database["fs.files"].find_one({"metadata.blob_id": created["blob_id"]})
    assert file is not None
    assert file["chunkSize"] == 255 * KIB
    assert await database["fs.chunks"].count_documents({"files_id": file["_id"]}) == math.ceil(size / CHUNK_SIZE)
    stream = await AsyncGridFSBucket(database).open_download_stream(file["_id"])
    assert await stream.read() == data


async def test_the_upload_answers_201_with_a_location_and_is_listed(blobs: Blobs) -> None:
    sid = await blobs.session()

    response = await blobs.upload(sid, b"hello")

    assert response.status_code == 201
    blob = response.json()
    assert response.headers["location"] == f"/v1/sessions/{sid}/blobs/{blob['blob_id']}"
    assert (await blobs.listing(sid)).json() == {"items": [blob], "total": 1}


async def test_a_blob_written_by_gridfs_itself_is_served(blobs: Blobs, database: MongoDatabase, tenant: Tenant) -> None:
    """The other direction of the layout check: a file the bucket wrote (with the same metadata) reads back."""
    sid = await blobs.session()
    data = pattern(CHUNK_SIZE * 2 + 5)
    metadata = {
        "workspace_id": tenant.workspace.workspace_id,
        "session_id": sid,
        "blob_id": "blob_" + "ab" * 16,
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/octet-stream",
    }
    await AsyncGridFSBucket(database).upload_from_stream(metadata["blob_id"], data, metadata=metadata)

    assert (await blobs.get(sid, metadata["blob_id"])).content == data
    assert (await blobs.get(sid, metadata["blob_id"], range="bytes=261100-261200")).content == data[261100:261201]


async def test_a_body_over_the_app_body_limit_is_a_blob_like_any_other(blobs: Blobs) -> None:
    sid = await blobs.session()
    data = pattern(3 * MIB)  # the app refuses JSON bodies over 1 MiB

    created = await blobs.stored(sid, data)

    assert (await blobs.get(sid, created["blob_id"])).content == data


async def test_a_chunked_upload_without_content_length_is_stored(blobs: Blobs) -> None:
    sid = await blobs.session()
    data = pattern(CHUNK_SIZE * 3 + 1000)

    created = await blobs.stored(sid, pieces(data, 10_000))

    assert created["size"] == len(data)
    assert created["sha256"] == hashlib.sha256(data).hexdigest()
    assert (await blobs.get(sid, created["blob_id"])).content == data


# Content types and safety ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "disposition"),
    [
        (None, "attachment"),
        ("text/html", "attachment"),
        ("text/html; charset=utf-8", "attachment"),
        ("image/svg+xml", "attachment"),
        ("application/javascript", "attachment"),
        ("application/pdf", "attachment"),
        ("image/png", "inline"),
        ("IMAGE/JPEG", "inline"),
        ("text/plain; charset=utf-8", "inline"),
    ],
)
async def test_only_safe_types_are_served_inline_and_nothing_is_sniffed(
    blobs: Blobs, content_type: str | None, disposition: str
) -> None:
    sid = await blobs.session()
    created = await blobs.stored(sid, b"<script>alert(1)</script>", content_type)

    fetched = await blobs.get(sid, created["blob_id"])

    stored_type = content_type or "application/octet-stream"
    assert created["content_type"] == stored_type
    assert fetched.headers["content-type"] == stored_type  # as given, nothing appended
    assert fetched.headers["x-content-type-options"] == "nosniff"
    assert fetched.headers["content-disposition"] == f'{disposition}; filename="{created["blob_id"]}"'
    assert "sandbox" in fetched.headers["content-security-policy"]


@pytest.mark.parametrize("content_type", ["not a type", "text/", "/plain", "text/plain\x7f", "a/" + "b" * 300])
async def test_a_content_type_that_is_not_a_media_type_is_422(
    blobs: Blobs, database: MongoDatabase, content_type: str
) -> None:
    sid = await blobs.session()

    response = await blobs.upload(sid, b"data", content_type)

    assert problem(response, 422)["errors"][0]["field"] == "content_type"
    assert await stored_counts(database) == (0, 0)


# Ranges ------------------------------------------------------------------------------------------------------

SIZE = 3 * CHUNK_SIZE + 1234
RANGES = {
    "first": ("bytes=0-99", 0, 99),
    "first byte": ("bytes=0-0", 0, 0),
    "last": ("bytes=-100", SIZE - 100, SIZE - 1),
    "suffix longer than the blob": ("bytes=-99999999", 0, SIZE - 1),
    "middle across chunks": (f"bytes={CHUNK_SIZE - 10}-{2 * CHUNK_SIZE + 10}", CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 10),
    "one whole chunk": (f"bytes={CHUNK_SIZE}-{2 * CHUNK_SIZE - 1}", CHUNK_SIZE, 2 * CHUNK_SIZE - 1),
    "open-ended": (f"bytes={SIZE - 5000}-", SIZE - 5000, SIZE - 1),
    "past the end, cut to it": (f"bytes=100-{SIZE * 2}", 100, SIZE - 1),
    "last byte": (f"bytes={SIZE - 1}-", SIZE - 1, SIZE - 1),
}


@pytest.fixture
async def ranged(blobs: Blobs) -> tuple[str, str, bytes]:
    data = pattern(SIZE)
    sid = await blobs.session()
    return sid, (await blobs.stored(sid, data))["blob_id"], data


@pytest.mark.parametrize("case", RANGES.keys())
async def test_a_range_answers_206_with_exactly_those_bytes(
    blobs: Blobs, ranged: tuple[str, str, bytes], case: str
) -> None:
    sid, blob_id, data = ranged
    header, first, last = RANGES[case]

    fetched = await blobs.get(sid, blob_id, range=header)
    headed = await blobs.head(sid, blob_id, range=header)

    assert fetched.status_code == 206
    assert fetched.content == data[first : last + 1]
    assert fetched.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert fetched.headers["content-length"] == str(last - first + 1)
    assert fetched.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headed.status_code == 206
    assert headed.content == b""
    assert {k: v for k, v in headed.headers.items() if k not in {"date", "x-request-id"}} == {
        k: v for k, v in fetched.headers.items() if k not in {"date", "x-request-id"}
    }


@pytest.mark.parametrize(
    "header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0", "bytes=9-3", "bytes=abc", "bytes=-"]
)
async def test_an_unsatisfiable_range_is_416_with_the_size(
    blobs: Blobs, ranged: tuple[str, str, bytes], header: str
) -> None:
    sid, blob_id, _ = ranged

    fetched = await blobs.get(sid, blob_id, range=header)
    headed = await blobs.head(sid, blob_id, range=header)

    problem(fetched, 416)
    assert fetched.headers["content-range"] == f"bytes */{SIZE}"
    assert headed.status_code == 416
    assert headed.headers["content-range"] == f"bytes */{SIZE}"


async def test_any_range_of_an_empty_blob_is_416(blobs: Blobs) -> None:
    sid = await blobs.session()
    blob_id = (await blobs.stored(sid, b""))["blob_id"]

    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        response = await blobs.get(sid, blob_id, range=header)
        problem(response, 416)
        assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize("header", ["items=0-10", "bytes=0-1,5-6", "bytes 0-10"])
async def test_a_range_of_another_unit_or_several_ranges_gets_the_whole_blob(
    blobs: Blobs, ranged: tuple[str, str, bytes], header: str
) -> None:
    sid, blob_id, data = ranged

    fetched = await blobs.get(sid, blob_id, range=header)

    assert fetched.status_code == 200
    assert fetched.content == data
    assert "content-range" not in fetched.headers


async def test_head_answers_the_get_headers_without_the_bytes(blobs: Blobs, ranged: tuple[str, str, bytes]) -> None:
    sid, blob_id, data = ranged

    headed = await blobs.head(sid, blob_id)

    assert headed.status_code == 200
    assert headed.content == b""
    assert headed.headers["content-length"] == str(len(data))
    assert headed.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headed.headers["x-content-type-options"] == "nosniff"


# Limits ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def small_blobs(mongod: MongodProcess, database: MongoDatabase, tenant: Tenant) -> AsyncIterator[Blobs]:
    """Blobs of at most 1 MiB."""
    async with client_with(tuned(mongod, database, max_blob_bytes=MIB), database) as http:
        yield Blobs(http, tenant)


async def test_a_declared_length_over_the_blob_limit_is_413_before_the_body_is_read(
    small_blobs: Blobs, database: MongoDatabase
) -> None:
    sid = await small_blobs.session()
    sent = CountingBody(2 * MIB)

    response = await small_blobs.upload(sid, sent, **{"content-length": str(2 * MIB)})

    assert "HANDOFF_MAX_BLOB_BYTES" in problem(response, 413)["detail"]
    assert sent.pulled <= 64 * KIB
    assert await stored_counts(database) == (0, 0)


async def test_a_chunked_body_over_the_blob_limit_is_413_once_past_it_and_leaves_nothing(
    small_blobs: Blobs, database: MongoDatabase
) -> None:
    sid = await small_blobs.session()
    sent = CountingBody(8 * MIB)

    response = await small_blobs.upload(sid, sent)

    problem(response, 413)
    assert sent.pulled <= MIB + 64 * KIB  # refused at the first piece past 1 MiB, not after all 8
    assert await stored_counts(database) == (0, 0)
    session = await database["sessions"].find_one({"session_id": sid})
    assert session is not None
    assert session["payload_bytes"] == 0


async def test_a_blob_of_exactly_the_limit_is_stored(small_blobs: Blobs) -> None:
    sid = await small_blobs.session()

    assert (await small_blobs.stored(sid, pieces(pattern(MIB))))["size"] == MIB


async def test_only_open_sessions_take_blobs(blobs: Blobs, client: httpx.AsyncClient, tenant: Tenant) -> None:
    sid = await blobs.session()
    paused = await client.post(f"/v1/sessions/{sid}/pause", headers=tenant.headers)
    assert paused.status_code == 200
    assert (await blobs.upload(sid, b"while paused")).status_code == 201
    await client.post(f"/v1/sessions/{sid}/complete", headers=tenant.headers)

    response = await blobs.upload(sid, b"after the end")

    detail = problem(response, 409)["detail"]
    assert "ended" in detail
    assert f"POST /v1/sessions/{sid}/replay" in detail


async def test_an_upload_to_an_absent_session_is_404_and_stores_nothing(blobs: Blobs, database: MongoDatabase) -> None:
    response = await blobs.upload("sess_00000000-0000-4000-8000-000000000000", pattern(CHUNK_SIZE * 2))

    problem(response, 404)
    assert await stored_counts(database) == (0, 0)


# The session byte cap ----------------------------------------------------------------------------------------


@pytest.fixture
async def capped(mongod: MongodProcess, database: MongoDatabase, tenant: Tenant) -> AsyncIterator[Blobs]:
    """Sessions of at most 1 MiB of entries, artifacts and blobs."""
    async with client_with(tuned(mongod, database, max_session_bytes=MIB), database) as http:
        yield Blobs(http, tenant)


async def _session_doc(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    found = await database["sessions"].find_one({"session_id": session_id})
    assert found is not None
    return found


async def test_blobs_count_in_the_session_bytes_with_its_entries(capped: Blobs, database: MongoDatabase) -> None:
    sid = await capped.session()
    logged = await capped.client.post(
        f"/v1/sessions/{sid}/work-log", headers=capped.tenant.headers, json={"message": "wrote the file", "id": "e1"}
    )
    assert logged.status_code == 201
    entry_bytes = (await _session_doc(database, sid))["payload_bytes"]

    await capped.stored(sid, pattern(300 * KIB))

    doc = await _session_doc(database, sid)
    assert entry_bytes == stored_size(doc["work_log"][0]) == doc["stored_bytes"]["work_log"]
    assert doc["payload_bytes"] == entry_bytes + 300 * KIB
    assert doc["stored_bytes"]["blobs"] == 300 * KIB


async def test_a_declared_blob_that_does_not_fit_the_session_is_409_before_it_is_read(
    capped: Blobs, database: MongoDatabase
) -> None:
    sid = await capped.session()
    await capped.stored(sid, pattern(700 * KIB))
    sent = CountingBody(400 * KIB)

    response = await capped.upload(sid, sent, **{"content-length": str(400 * KIB)})

    detail = problem(response, 409)["detail"]
    assert "full" in detail
    assert "cap" in detail
    assert sent.pulled <= 64 * KIB
    assert await stored_counts(database) == (1, math.ceil(700 * KIB / CHUNK_SIZE))


async def test_a_chunked_blob_that_does_not_fit_the_session_is_409_and_leaves_nothing(
    capped: Blobs, database: MongoDatabase
) -> None:
    sid = await capped.session()
    await capped.stored(sid, pattern(700 * KIB))

    response = await capped.upload(sid, CountingBody(4 * MIB))

    assert "full" in problem(response, 409)["detail"]
    assert await stored_counts(database) == (1, math.ceil(700 * KIB / CHUNK_SIZE))
    assert (await _session_doc(database, sid))["payload_bytes"] == 700 * KIB


async def test_deleting_a_blob_gives_its_bytes_back_to_the_session(capped: Blobs, database: MongoDatabase) -> None:
    sid = await capped.session()
    first = await capped.stored(sid, pattern(700 * KIB))
    assert (await capped.upload(sid, pattern(400 * KIB))).status_code == 409

    assert (await capped.delete(sid, first["blob_id"])).status_code == 204

    assert (await _session_doc(database, sid))["payload_bytes"] == 0
    assert (await capped.upload(sid, pattern(400 * KIB))).status_code == 201
    assert (await _session_doc(database, sid))["stored_bytes"]["blobs"] == 400 * KIB


async def test_racing_declared_uploads_take_the_room_first_come_and_never_pass_the_cap(
    capped: Blobs, database: MongoDatabase
) -> None:
    """Each reserves its Content-Length before a byte is read: those that fit are stored, the rest 409 at once."""
    sid = await capped.session()

    answers = await asyncio.gather(*(capped.upload(sid, pattern(300 * KIB, seed=i)) for i in range(6)))

    stored = [a for a in answers if a.status_code == 201]
    assert len(stored) == 3
    assert all(a.status_code == 409 for a in answers if a.status_code != 201)
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 900 * KIB
    assert await stored_counts(database) == (3, 3 * math.ceil(300 * KIB / CHUNK_SIZE))


async def test_racing_chunked_uploads_never_pass_the_cap_and_give_back_what_they_reserved(
    capped: Blobs, database: MongoDatabase
) -> None:
    """Bodies of unknown length reserve as they arrive: together they may fill the room before any is whole, so
    fewer than three may be stored, but never more, and a refused one leaves neither bytes nor a reservation."""
    sid = await capped.session()

    answers = await asyncio.gather(*(capped.upload(sid, pieces(pattern(300 * KIB, seed=i))) for i in range(6)))

    stored = [a for a in answers if a.status_code == 201]
    assert 1 <= len(stored) <= 3
    assert all(a.status_code == 409 for a in answers if a.status_code != 201)
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == len(stored) * 300 * KIB
    assert await stored_counts(database) == (len(stored), len(stored) * math.ceil(300 * KIB / CHUNK_SIZE))


class PausedBody:
    """A chunked body that stops after ``before`` bytes until ``go`` is set, then sends ``after`` more."""

    def __init__(self, before: int, after: int, piece: int = 64 * KIB) -> None:
        self.before, self.after, self.piece = before, after, piece
        self.paused, self.go = asyncio.Event(), asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.before // self.piece):
            yield b"p" * self.piece
        self.paused.set()
        await self.go.wait()
        for _ in range(self.after // self.piece):
            yield b"q" * self.piece


async def _while_paused(body: PausedBody, upload: Any, then: Any) -> tuple[httpx.Response, httpx.Response]:
    """Start ``upload`` (of ``body``), run ``then`` once the body has paused, let the body finish."""
    first = asyncio.create_task(upload)
    await asyncio.wait_for(body.paused.wait(), 30)
    await asyncio.sleep(0.05)  # the server has read what was sent before the pause
    second = await then
    body.go.set()
    return await first, second


async def test_an_upload_in_progress_holds_its_room_against_a_later_one(capped: Blobs, database: MongoDatabase) -> None:
    """The bytes of a body still arriving are the session's already: a later upload that would not fit with
    them is refused at once, and the first one, finishing, is stored (not the other way round)."""
    sid = await capped.session()
    body = PausedBody(before=512 * KIB, after=128 * KIB)

    first, second = await _while_paused(body, capped.upload(sid, body), capped.upload(sid, pattern(600 * KIB)))

    assert "full" in problem(second, 409)["detail"]
    assert first.status_code == 201, first.text
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 640 * KIB


async def test_an_upload_in_progress_holds_its_bytes_in_the_workspace_quota(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    settings = tuned(mongod, database, max_session_bytes=0, workspace_max_bytes=MIB)
    async with client_with(settings, database) as http:
        quota = Blobs(http, tenant)
        sid, other = await quota.session(), await quota.session()
        body = PausedBody(before=512 * KIB, after=128 * KIB)

        first, second = await _while_paused(body, quota.upload(sid, body), quota.upload(other, pattern(600 * KIB)))

    assert "HANDOFF_WORKSPACE_MAX_BYTES" in problem(second, 409)["detail"]
    assert first.status_code == 201, first.text


async def test_a_refused_upload_gives_its_reservation_back(capped: Blobs, database: MongoDatabase) -> None:
    sid = await capped.session()

    too_big = await capped.upload(sid, CountingBody(2 * MIB))

    assert too_big.status_code == 409
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"].get("blobs", 0) == 0
    assert await stored_counts(database) == (0, 0)


# Listing and deleting ----------------------------------------------------------------------------------------


async def test_the_listing_pages_oldest_first_with_the_total(blobs: Blobs) -> None:
    sid = await blobs.session()
    made = [await blobs.stored(sid, pattern(10, seed=i)) for i in range(5)]

    first = (await blobs.listing(sid, limit=2)).json()
    rest = (await blobs.listing(sid, offset=2, limit=10)).json()
    beyond = (await blobs.listing(sid, offset=5)).json()

    assert first == {"items": made[:2], "total": 5}
    assert rest == {"items": made[2:], "total": 5}
    assert beyond == {"items": [], "total": 5}


async def test_a_session_without_blobs_lists_none_and_an_absent_one_is_404(blobs: Blobs) -> None:
    sid = await blobs.session()

    assert (await blobs.listing(sid)).json() == {"items": [], "total": 0}
    problem(await blobs.listing("sess_absent"), 404)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}])
async def test_listing_bounds_are_422(blobs: Blobs, params: dict[str, int]) -> None:
    sid = await blobs.session()

    problem(await blobs.listing(sid, **params), 422)


async def test_a_deleted_blob_is_gone_from_every_route_and_from_gridfs(blobs: Blobs, database: MongoDatabase) -> None:
    sid = await blobs.session()
    kept = await blobs.stored(sid, pattern(CHUNK_SIZE + 1, seed=1))
    gone = await blobs.stored(sid, pattern(CHUNK_SIZE * 2, seed=2))

    response = await blobs.delete(sid, gone["blob_id"])

    assert response.status_code == 204
    problem(await blobs.get(sid, gone["blob_id"]), 404)
    assert (await blobs.head(sid, gone["blob_id"])).status_code == 404
    problem(await blobs.delete(sid, gone["blob_id"]), 404)
    assert (await blobs.listing(sid)).json() == {"items": [kept], "total": 1}
    assert await stored_counts(database) == (1, 2)


async def test_an_ended_session_can_still_delete_its_blobs(
    blobs: Blobs, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sid = await blobs.session()
    blob = await blobs.stored(sid, b"personal data")
    await client.post(f"/v1/sessions/{sid}/fail", headers=tenant.headers)

    assert (await blobs.delete(sid, blob["blob_id"])).status_code == 204


async def test_racing_deletes_of_one_blob_uncount_it_once(blobs: Blobs, database: MongoDatabase) -> None:
    sid = await blobs.session()
    blob = await blobs.stored(sid, pattern(5000))

    answers = await asyncio.gather(*(blobs.delete(sid, blob["blob_id"]) for _ in range(4)))

    assert sorted(a.status_code for a in answers) == [204, 404, 404, 404]
    assert (await _session_doc(database, sid))["payload_bytes"] == 0


# Tenancy -----------------------------------------------------------------------------------------------------


async def test_another_workspace_gets_404_on_every_blob_route(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: MongoDatabase
) -> None:
    owner, intruder = Blobs(client, tenant), Blobs(client, other_tenant)
    sid = await owner.session()
    blob = await owner.stored(sid, b"secret bytes")
    before = await stored_counts(database)

    answers = [
        await intruder.upload(sid, b"planted"),
        await intruder.listing(sid),
        await intruder.get(sid, blob["blob_id"]),
        await intruder.get(sid, blob["blob_id"], range="bytes=0-1"),
        await intruder.delete(sid, blob["blob_id"]),
    ]
    headed = await intruder.head(sid, blob["blob_id"])

    for answer in answers:
        assert "secret" not in problem(answer, 404)["detail"]
    assert headed.status_code == 404
    assert await stored_counts(database) == before
    assert (await owner.get(sid, blob["blob_id"])).content == b"secret bytes"
    # The same blob id under the intruder's own session is no way in either.
    own = await intruder.session()
    problem(await intruder.get(own, blob["blob_id"]), 404)


# Domain functions the sessions code calls --------------------------------------------------------------------


async def test_check_blob_refs_accepts_the_session_blobs_only(
    blobs: Blobs, tenant: Tenant, other_tenant: Tenant
) -> None:
    sid = await blobs.session()
    other_sid = await blobs.session()
    mine = (await blobs.stored(sid, b"a"))["blob_id"]
    elsewhere = (await blobs.stored(other_sid, b"b"))["blob_id"]
    workspace = tenant.workspace.workspace_id

    await service.check_blob_refs(workspace, sid, [mine, None, mine])
    await service.check_blob_refs(workspace, sid, [])
    for refused in ([elsewhere], [mine, "blob_" + "0" * 32]):
        with pytest.raises(Invalid) as caught:
            await service.check_blob_refs(workspace, sid, refused)
        assert {error.field for error in caught.value.errors} == {"blob_id"}
    with pytest.raises(Invalid):
        await service.check_blob_refs(other_tenant.workspace.workspace_id, sid, [mine])


async def test_deleting_a_session_blobs_removes_them_and_nothing_else(
    blobs: Blobs, tenant: Tenant, database: MongoDatabase
) -> None:
    doomed, kept = await blobs.session(), await blobs.session()
    for i in range(3):
        await blobs.stored(doomed, pattern(CHUNK_SIZE + i, seed=i))
    survivor = await blobs.stored(kept, pattern(10))

    removed = await service.delete_session_blobs(tenant.workspace.workspace_id, doomed)

    assert removed == 3
    assert await stored_counts(database) == (1, 1)
    assert (await blobs.get(kept, survivor["blob_id"])).content == pattern(10)


def test_pattern_differs_from_chunk_to_chunk() -> None:
    """The helper itself: a chunk put in the wrong place would not compare equal."""
    data = pattern(3 * CHUNK_SIZE)
    chunks: Iterator[bytes] = (data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE))
    assert len(set(chunks)) == 3


async def test_blob_bytes_in_and_out_are_counted_in_the_metrics(blobs: Blobs, client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    sid = await blobs.session()
    data = pattern(CHUNK_SIZE * 2 + 5)
    stored = await blobs.stored(sid, data)
    assert (await blobs.get(sid, stored["blob_id"])).content == data
    assert (await blobs.get(sid, stored["blob_id"], range="bytes=0-9")).status_code == 206
    await blobs.client.post(f"/v1/sessions/{sid}/complete", headers=blobs.tenant.headers, json={})
    assert (await blobs.upload(sid, data)).status_code == 409  # refused: counts nothing
    after = await scrape(client)

    def moved(direction: str) -> float:
        return value(after, "handoff_blob_bytes_total", direction=direction) - value(
            before, "handoff_blob_bytes_total", direction=direction
        )

    assert moved("in") == len(data)
    assert moved("out") == len(data) + 10
