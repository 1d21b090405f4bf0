"""Workspace quotas against the real server: sessions and entries made through the domain functions.

The checks are called here as the session code calls them (see ``handoff.quotas``); usage comes from the stored
``payload_bytes`` of real sessions. ``workspace_usage_cache_seconds=0`` makes every check read the usage, so the
figures are exact; the cache's bounded overshoot has a test of its own.
"""

from __future__ import annotations

import pytest

from handoff.analytics import service as analytics
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.errors import Conflict, QuotaExceeded
from handoff.quotas import check_can_create, check_can_write, usage_pipeline, workspace_usage
from handoff.sessions import service as sessions
from handoff.sessions.schemas import SessionCreate, WorkLogCreate
from handoff.workspaces.schemas import Principal
from tests.factories import Tenant


def _principal(tenant: Tenant) -> Principal:
    return Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id)


async def _session_with_entries(tenant: Tenant, settings: Settings, entries: int) -> str:
    created = await sessions.create_session(_principal(tenant), SessionCreate(), settings=settings)
    session_id = created.session.session_id
    for i in range(entries):
        await sessions.log_work(
            tenant.workspace.workspace_id, session_id, WorkLogCreate(message=f"step {i}"), settings=settings
        )
    return session_id


@pytest.fixture
def exact(settings: Settings) -> Settings:
    return settings.model_copy(update={"workspace_usage_cache_seconds": 0})


async def test_usage_is_the_sum_of_the_workspace_sessions_payload_bytes(
    exact: Settings, database: MongoDatabase, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _session_with_entries(tenant, exact, 3)
    await _session_with_entries(tenant, exact, 1)
    await _session_with_entries(other_tenant, exact, 5)
    stored = [
        doc["payload_bytes"] async for doc in database["sessions"].find({"workspace_id": tenant.workspace.workspace_id})
    ]

    usage = await workspace_usage(tenant.workspace.workspace_id)

    assert usage.sessions == 2
    assert usage.stored_bytes == sum(stored) > 0


async def test_quotas_are_off_by_default(settings: Settings, tenant: Tenant) -> None:
    await _session_with_entries(tenant, settings, 2)

    await check_can_write(tenant.workspace.workspace_id, adds_bytes=10**15, settings=settings)
    await check_can_create(tenant.workspace.workspace_id, adds_bytes=10**15, settings=settings)


async def test_a_write_past_the_byte_quota_is_refused_with_a_409_naming_it(
    exact: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _session_with_entries(tenant, exact, 4)
    await _session_with_entries(other_tenant, exact, 40)  # another workspace's bytes do not count
    used = (await workspace_usage(tenant.workspace.workspace_id)).stored_bytes
    quota = exact.model_copy(update={"workspace_max_bytes": used + 100})

    await check_can_write(tenant.workspace.workspace_id, adds_bytes=100, settings=quota)  # exactly at the quota
    with pytest.raises(QuotaExceeded) as refused:
        await check_can_write(tenant.workspace.workspace_id, adds_bytes=101, settings=quota)

    assert isinstance(refused.value, Conflict)
    assert refused.value.status_code == 409
    assert "HANDOFF_WORKSPACE_MAX_BYTES" in refused.value.detail
    assert f"{used:,} of {used + 100:,} bytes" in refused.value.detail
    await check_can_write(
        other_tenant.workspace.workspace_id,
        adds_bytes=101,
        settings=quota.model_copy(update={"workspace_max_bytes": 10**9}),
    )


async def test_a_session_past_the_session_quota_is_refused_with_a_409_naming_it(
    exact: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    quota = exact.model_copy(update={"workspace_max_sessions": 2})
    await _session_with_entries(tenant, quota, 0)
    await check_can_create(tenant.workspace.workspace_id, settings=quota)
    await _session_with_entries(tenant, quota, 0)

    with pytest.raises(QuotaExceeded) as refused:
        await check_can_create(tenant.workspace.workspace_id, settings=quota)

    assert refused.value.status_code == 409
    assert "HANDOFF_WORKSPACE_MAX_SESSIONS" in refused.value.detail
    assert "2 of 2 sessions" in refused.value.detail
    await check_can_create(other_tenant.workspace.workspace_id, settings=quota)


async def test_deleting_sessions_frees_the_quota(exact: Settings, tenant: Tenant) -> None:
    quota = exact.model_copy(update={"workspace_max_sessions": 1})
    session_id = await _session_with_entries(tenant, quota, 2)
    with pytest.raises(QuotaExceeded):
        await check_can_create(tenant.workspace.workspace_id, settings=quota)

    await sessions.delete_session(tenant.workspace.workspace_id, session_id)

    await check_can_create(tenant.workspace.workspace_id, settings=quota)


async def test_a_replay_seed_counts_against_the_byte_quota_on_create(exact: Settings, tenant: Tenant) -> None:
    await _session_with_entries(tenant, exact, 1)
    used = (await workspace_usage(tenant.workspace.workspace_id)).stored_bytes
    quota = exact.model_copy(update={"workspace_max_bytes": used + 10})

    with pytest.raises(QuotaExceeded, match="HANDOFF_WORKSPACE_MAX_BYTES"):
        await check_can_create(tenant.workspace.workspace_id, adds_bytes=11, settings=quota)


async def test_the_cached_usage_counts_what_this_worker_admits_and_sees_others_after_it_expires(
    settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    """The bounded overshoot: within a cache period only another worker's writes go unseen."""
    workspace_id = tenant.workspace.workspace_id
    await _session_with_entries(tenant, settings, 1)
    used = (await workspace_usage(workspace_id)).stored_bytes
    cached = settings.model_copy(update={"workspace_max_bytes": used + 1_000, "workspace_usage_cache_seconds": 60})

    await check_can_write(workspace_id, adds_bytes=600, settings=cached)  # reads and caches the usage
    with pytest.raises(QuotaExceeded):  # this worker's own admitted 600 bytes count at once
        await check_can_write(workspace_id, adds_bytes=600, settings=cached)

    # Another worker's write: stored, but not in this worker's figure until it refreshes.
    await database["sessions"].update_one({"workspace_id": workspace_id}, {"$inc": {"payload_bytes": 390}})
    await check_can_write(workspace_id, adds_bytes=400, settings=cached)  # the overshoot: 390 bytes unseen
    exact = cached.model_copy(update={"workspace_usage_cache_seconds": 0})
    await check_can_write(workspace_id, adds_bytes=610, settings=exact)  # a fresh read: used + 390 stored
    with pytest.raises(QuotaExceeded):
        await check_can_write(workspace_id, adds_bytes=611, settings=exact)


async def test_the_usage_aggregation_is_answered_from_an_index_alone(exact: Settings, tenant: Tenant) -> None:
    for _ in range(3):
        await _session_with_entries(tenant, exact, 1)

    verdict = await analytics.explain(usage_pipeline(tenant.workspace.workspace_id))

    # Covered by the index "usage": no session document (with its open page of entries) is read.
    assert verdict.covered, verdict
    assert verdict.indexes == ["usage"]
