"""Workspace quotas through the REST API, as a client meets them: a create, an append, a batch and a blob upload
past a quota answer 409 naming the setting, store nothing, and another workspace is not affected."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.api import Api, problem
from tests.factories import Tenant

MAX_BYTES = 4_000


@pytest.fixture(scope="module")
def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
    settings = Settings(
        mongodb_url=mongod.url,
        database=database.name,
        data_dir=Path("/nonexistent"),
        workspace_max_sessions=3,
        workspace_max_bytes=MAX_BYTES,
        workspace_usage_cache_seconds=0,
    )
    return create_app(settings, database=database)


async def test_writes_past_a_workspace_quota_are_409_and_store_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    api = Api(client, tenant)
    sid = (await api.create())["session_id"]
    await api.post(sid, "work-log", {"message": "x" * 1_000}, 201)

    refused = problem(await api.call("POST", f"/{sid}/work-log", {"message": "y" * 3_500}), 409)
    assert "HANDOFF_WORKSPACE_MAX_BYTES" in refused["detail"]
    batch = {"entries": [{"message": "z" * 900} for _ in range(4)]}
    refused = problem(await api.call("POST", f"/{sid}/work-log/batch", batch), 409)
    assert "HANDOFF_WORKSPACE_MAX_BYTES" in refused["detail"]
    blob = await client.post(f"/v1/sessions/{sid}/blobs", content=b"b" * 3_500, headers=tenant.headers)
    assert "HANDOFF_WORKSPACE_MAX_BYTES" in problem(blob, 409)["detail"]
    assert (await api.get(sid))["action_count"] == 1  # nothing of the refused writes was stored

    await api.create()
    await api.create()
    assert "HANDOFF_WORKSPACE_MAX_SESSIONS" in problem(await api.call("POST", "", {}), 409)["detail"]
    assert "HANDOFF_WORKSPACE_MAX_SESSIONS" in problem(await api.call("POST", f"/{sid}/replay", {}), 409)["detail"]

    other = Api(client, other_tenant)  # another workspace has its own quota
    other_sid = (await other.create())["session_id"]
    await other.post(other_sid, "work-log", {"message": "x" * 1_000}, 201)
