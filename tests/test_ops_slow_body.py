"""The request deadline starts again once the body has arrived: a client that takes its time sending a body (within
``HANDOFF_REQUEST_BODY_TIMEOUT_SECONDS``) does not leave the database work that follows without time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.api import ok
from tests.factories import Tenant
from tests.inprocess import in_process

DEADLINE_SECONDS = 1.0


async def test_a_body_slower_than_the_deadline_is_stored(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    settings = Settings(
        mongodb_url=mongod.url,
        database=database.name,
        data_dir=Path("/nonexistent"),
        request_timeout_seconds=DEADLINE_SECONDS,
    )
    async with in_process(create_app(settings, database=database)) as http:
        sid = ok(await http.post("/v1/sessions", json={}, headers=tenant.headers), 201)["session_id"]

        async def trickle() -> AsyncIterator[bytes]:  # the whole body takes 1.6 s, past the 1 s deadline
            for part in (b'{"message": "a slow', b' body", "id": "slow-1"}'):
                yield part
                await asyncio.sleep(0.8 * DEADLINE_SECONDS)

        headers = {**tenant.headers, "content-type": "application/json"}
        stored = ok(await http.post(f"/v1/sessions/{sid}/work-log", content=trickle(), headers=headers), 201)
        assert stored["id"] == "slow-1"
