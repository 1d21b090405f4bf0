"""An upload's reserved bytes when nothing is left to settle or release them: its worker killed mid-upload.

The reservation lapses after ``HANDOFF_BLOB_RESERVATION_LEASE_SECONDS`` without word from its upload, and the next
write the cap would stop (an upload, an append) reclaims it and goes ahead; a live upload, renewing its
reservation, keeps it; one whose reservation was reclaimed anyway is refused without giving back bytes twice.
The lease is passed by moving ``handoff.clock``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from handoff import clock
from handoff.blobs.reservation import RESERVATIONS
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


async def test_the_reservation_of_an_upload_whose_worker_was_killed_lapses_after_a_lease(
    mongod: MongodProcess, database: MongoDatabase, capped: Blobs, moved: Clock
) -> None:
    sid = await capped.session()
    with serve(mongod.url, database.name, max_session_bytes=MIB) as served:
        host, port = served.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as upload:
            upload.sendall(
                f"POST /v1/sessions/{sid}/blobs HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {capped.tenant.headers['Authorization']}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {900 * KIB}\r\n\r\n".encode()
                + b"k" * (100 * KIB)
            )

            async def reserved() -> bool:
                return bool(await _reservations(database, sid))

            await eventually(reserved, "the upload's reservation")
            served.process.kill()  # mid-upload: nothing is left to settle or release the reservation
            served.process.wait()
    assert (await _session_doc(database, sid))["payload_bytes"] == 900 * KIB

    refused = await capped.upload(sid, pattern(600 * KIB))
    moved.pass_the_lease()
    stored = await capped.upload(sid, pattern(600 * KIB))

    assert "full" in problem(refused, 409)["detail"]
    assert stored.status_code == 201, stored.text
    doc = await _session_doc(database, sid)
    assert doc["payload_bytes"] == doc["stored_bytes"]["blobs"] == 600 * KIB
    assert doc[RESERVATIONS] == {}


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
