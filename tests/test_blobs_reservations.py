"""An upload's reserved bytes and written chunks when nothing is left to settle or release them: its worker killed
mid-upload.

The reservation lapses after ``HANDOFF_BLOB_RESERVATION_LEASE_SECONDS`` without word from its upload, and the next
write the cap would stop (an upload, an append) reclaims it and goes ahead, or the retention pass does by itself;
either way the GridFS chunks the dead upload wrote (which have no files document) go with it. A live upload,
renewing its reservation, keeps it and its chunks; one whose reservation was reclaimed anyway is refused without
giving back bytes twice. The lease is passed by moving ``handoff.clock``.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from handoff import clock
from handoff.blobs.reservation import RESERVATIONS
from handoff.blobs.storage import CHUNK_SIZE
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.factories import Tenant
from tests.serving import serve
from tests.test_blobs_api import (
    KIB,
    MIB,
    Blobs,
    PausedBody,
    _session_doc,
    _while_paused,
    client_with,
    pattern,
    problem,
    tuned,
)
from tests.test_blobs_streaming import eventually

LEASE = 60.0
#: The session cap of :func:`roomy` and of the killed workers' service.
CAPPED = 64 * MIB
_real_now = clock.now


class Clock:
    """``handoff.clock.now``, moved on by hand."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return _real_now() + self.offset

    def pass_the_lease(self) -> None:
        self.offset += timedelta(seconds=LEASE + 1)


@pytest.fixture
def moved(monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned = Clock()
    monkeypatch.setattr(clock, "now", pinned.now)
    return pinned


@pytest.fixture
async def capped(mongod: MongodProcess, database: MongoDatabase, tenant: Tenant) -> AsyncIterator[Blobs]:
    """Sessions of at most 1 MiB, reservations lapsing after a minute without word."""
    settings = tuned(mongod, database, max_session_bytes=MIB, blob_reservation_lease_seconds=LEASE)
    async with client_with(settings, database) as http:
        yield Blobs(http, tenant)


async def _reservations(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await _session_doc(database, session_id)).get(RESERVATIONS, {})
    return found


async def _chunks(database: MongoDatabase, file_id: ObjectId) -> int:
    return await database["fs.chunks"].count_documents({"files_id": file_id})


async def _killed_mid_upload(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant, session_id: str, *, declared: int, sent: int
) -> list[ObjectId]:
    """Start an upload of ``declared`` bytes to a worker of ``handoff serve`` (sessions capped as in-process ones
    are: at most 64 MiB), send ``sent`` of them, and kill the worker once the upload's reservation is in the session
    and, if ``sent`` fills a write (4 chunks), its first chunks are in GridFS; the GridFS files it left chunks of."""
    with serve(mongod.url, database.name, max_session_bytes=CAPPED) as served:
        host, port = served.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as upload:
            upload.sendall(
                f"POST /v1/sessions/{session_id}/blobs HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {tenant.headers['Authorization']}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n".encode()
                + b"k" * sent
            )

            async def arrived() -> bool:
                if not await _reservations(database, session_id):
                    return False
                return sent < 4 * CHUNK_SIZE or await database["fs.chunks"].count_documents({}) >= 4

            await eventually(arrived, "the upload's reservation and first chunks")
            served.process.kill()  # mid-upload: nothing is left to settle or release the reservation
            served.process.wait()
    found: list[ObjectId] = await database["fs.chunks"].distinct("files_id")
    return found


async def test_the_reservation_of_an_upload_whose_worker_was_killed_lapses_after_a_lease(
    mongod: MongodProcess, database: MongoDatabase, capped: Blobs, moved: Clock
) -> None:
    sid = await capped.session()
    await _killed_mid_upload(mongod, database, capped.tenant, sid, declared=900 * KIB, sent=100 * KIB)
    assert (await _session_doc(database, sid))["payload_bytes"] == 900 * KIB

    refused = await capped.upload(sid, pattern(600 * KIB))
    moved.pass_the_lease()
    stored = await capped.upload(sid, pattern(600 * KIB))

    assert "full" in problem(refused, 409)["detail"]
    assert stored.status_code == 201, stored.text
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 600 * KIB
    assert doc[RESERVATIONS] == {}


@pytest.fixture
async def roomy(mongod: MongodProcess, database: MongoDatabase, tenant: Tenant) -> AsyncIterator[Blobs]:
    """Sessions of at most :data:`CAPPED` bytes, reservations lapsing after a minute without word, and the retention
    pass (which reclaims lapsed reservations everywhere) every tenth of a second."""
    settings = tuned(
        mongod,
        database,
        max_session_bytes=CAPPED,
        blob_reservation_lease_seconds=LEASE,
        retention_interval_seconds=0.1,
    )
    async with client_with(settings, database) as http:
        yield Blobs(http, tenant)


async def test_the_chunks_of_a_killed_upload_go_by_themselves_and_a_live_uploads_stay(
    mongod: MongodProcess, database: MongoDatabase, roomy: Blobs, moved: Clock
) -> None:
    """A worker killed mid-body leaves chunks without a files document; a lease later the retention pass takes
    them (and the bytes they held) out, while another upload to the same session, alive and renewing, keeps every
    chunk it wrote and is stored whole when its body goes on."""
    sid = await roomy.session()
    dead = await _killed_mid_upload(mongod, database, roomy.tenant, sid, declared=8 * MIB, sent=2 * MIB)
    assert len(dead) == 1
    assert await _chunks(database, dead[0]) >= 4
    moved.pass_the_lease()  # the killed upload gave its last word a lease ago; the live one starts on this clock
    body = PausedBody(before=2 * MIB, after=MIB)
    live = asyncio.create_task(roomy.upload(sid, body))
    await asyncio.wait_for(body.paused.wait(), 30)

    async def live_file() -> ObjectId | None:
        return next((found for found in await database["fs.chunks"].distinct("files_id") if found != dead[0]), None)

    async def live_written() -> bool:
        writing = await live_file()
        return writing is not None and await _chunks(database, writing) == 2 * MIB // CHUNK_SIZE

    await eventually(live_written, "the live upload's full chunks reaching GridFS")

    async def dead_gone() -> bool:
        return await _chunks(database, dead[0]) == 0

    await eventually(dead_gone, "the retention pass's removal of the killed upload's chunks")
    writing = await live_file()
    assert writing is not None
    written = await _chunks(database, writing)
    during = await _session_doc(database, sid)
    held = list(during[RESERVATIONS].values())
    body.go.set()
    response = await live

    assert response.status_code == 201, response.text
    sent = b"p" * (2 * MIB) + b"q" * MIB
    assert response.json()["size"] == len(sent)
    assert response.json()["sha256"] == hashlib.sha256(sent).hexdigest()
    assert written == 2 * MIB // CHUNK_SIZE  # every full chunk of what had arrived, none taken
    assert [reservation["file_id"] for reservation in held] == [writing]
    assert during["payload_bytes"] == held[0]["bytes"]  # the killed upload's bytes given back, the live one's kept
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == len(sent)
    assert doc[RESERVATIONS] == {}
    assert (
        await database["fs.chunks"].count_documents({})
        == await _chunks(database, writing)
        == -(-len(sent) // CHUNK_SIZE)
    )
    assert (await roomy.get(sid, response.json()["blob_id"])).content == sent


async def test_an_upload_the_cap_stops_takes_a_killed_uploads_chunks_with_its_reservation(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant, moved: Clock
) -> None:
    """Without waiting for the retention pass (every 300 s here): the reclaim of a write the cap stopped."""
    settings = tuned(mongod, database, max_session_bytes=4 * MIB, blob_reservation_lease_seconds=LEASE)
    async with client_with(settings, database) as http:
        blobs = Blobs(http, tenant)
        sid = await blobs.session()
        [dead] = await _killed_mid_upload(mongod, database, tenant, sid, declared=3 * MIB, sent=2 * MIB)
        refused = await blobs.upload(sid, pattern(2 * MIB))
        kept_within_the_lease = await _chunks(database, dead)
        moved.pass_the_lease()
        stored = await blobs.upload(sid, pattern(2 * MIB))

    assert "full" in problem(refused, 409)["detail"]
    assert kept_within_the_lease >= 4
    assert stored.status_code == 201, stored.text
    assert await _chunks(database, dead) == 0
    assert await database["fs.chunks"].count_documents({}) == -(-2 * MIB // CHUNK_SIZE)
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 2 * MIB
    assert doc[RESERVATIONS] == {}


async def test_deleting_a_session_takes_the_chunks_of_a_killed_upload_at_once(
    mongod: MongodProcess, database: MongoDatabase, roomy: Blobs
) -> None:
    sid = await roomy.session()
    [dead] = await _killed_mid_upload(mongod, database, roomy.tenant, sid, declared=8 * MIB, sent=2 * MIB)
    written = await _chunks(database, dead)

    deleted = await roomy.client.delete(f"/v1/sessions/{sid}", headers=roomy.tenant.headers)

    assert deleted.status_code == 204, deleted.text
    assert written >= 4
    assert await database["fs.chunks"].count_documents({}) == 0


async def _abandon_reservation(database: MongoDatabase, session_id: str, size: int) -> None:
    """What a worker killed mid-upload leaves in its session: bytes counted under a reservation nobody renews."""
    await database["sessions"].update_one(
        {"session_id": session_id},
        {
            "$inc": {"payload_bytes": size, "stored_bytes.blobs": size, f"{RESERVATIONS}.abandoned.bytes": size},
            "$set": {f"{RESERVATIONS}.abandoned.renewed_at": clock.now()},
        },
    )


async def test_an_append_the_cap_stops_reclaims_a_lapsed_reservation(
    capped: Blobs, database: MongoDatabase, moved: Clock
) -> None:
    sid = await capped.session()
    await _abandon_reservation(database, sid, MIB - 100)
    entry = {"message": "wrote the migration", "data": {"files": ["a.sql"] * 20}}

    refused = await capped.client.post(f"/v1/sessions/{sid}/work-log", headers=capped.tenant.headers, json=entry)
    moved.pass_the_lease()
    logged = await capped.client.post(f"/v1/sessions/{sid}/work-log", headers=capped.tenant.headers, json=entry)

    assert "full" in problem(refused, 409)["detail"]
    assert logged.status_code == 201, logged.text
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["work_log"]
    assert doc["stored_bytes"]["blobs"] == 0
    assert doc[RESERVATIONS] == {}


async def test_a_live_upload_renews_its_reservation_and_keeps_it(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant, moved: Clock
) -> None:
    """The shortest lease (3 s, renewed every second): while the body waits, the clock passes a lease, and the
    renewal that follows keeps the reservation from lapsing when a later upload finds the session full."""
    settings = tuned(mongod, database, max_session_bytes=MIB, blob_reservation_lease_seconds=3)
    async with client_with(settings, database) as http:
        quick = Blobs(http, tenant)
        sid = await quick.session()
        body = PausedBody(before=512 * KIB, after=128 * KIB)

        async def renewed_then_refused() -> Any:
            moved.offset += timedelta(seconds=10)
            moved_at = moved.now()

            async def renewed() -> bool:
                held = list((await _reservations(database, sid)).values())
                return bool(held) and clock.as_utc(held[0]["renewed_at"]) >= moved_at

            await eventually(renewed, "the renewal of the paused upload's reservation")
            return await quick.upload(sid, pattern(600 * KIB))

        first, second = await _while_paused(body, quick.upload(sid, body), renewed_then_refused())

    assert "full" in problem(second, 409)["detail"]
    assert first.status_code == 201, first.text
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 640 * KIB
    assert doc[RESERVATIONS] == {}


async def test_an_upload_whose_reservation_was_reclaimed_is_refused_and_gives_nothing_back_twice(
    capped: Blobs, database: MongoDatabase, moved: Clock
) -> None:
    """The clock passes a whole lease while the body waits (as if the worker's loop had stalled that long): a later
    upload reclaims the reservation; the first, finishing, is 409 and the session counts the later one alone."""
    sid = await capped.session()
    body = PausedBody(before=512 * KIB, after=128 * KIB)

    async def after_the_lease() -> Any:
        moved.pass_the_lease()
        return await capped.upload(sid, pattern(600 * KIB))

    first, second = await _while_paused(body, capped.upload(sid, body), after_the_lease())

    assert second.status_code == 201, second.text
    assert "reclaimed" in problem(first, 409)["detail"]
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 600 * KIB
    assert doc[RESERVATIONS] == {}
    assert await database["fs.files"].count_documents({}) == 1
    assert await database["fs.chunks"].count_documents({}) == -(-600 * KIB // CHUNK_SIZE)  # the second's alone
