"""Retention against the real server: which sessions a prune deletes, in batches, and the background task.

Sessions are made through the domain functions and ended; their ``ended_at`` is then moved into the past with one
update (the test's way of letting days go by).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from handoff import clock
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.retention import lease
from handoff.retention import service as retention
from handoff.retention.worker import LEASE, run_pass
from handoff.sessions import service as sessions
from handoff.sessions.models import Session, SessionStatus
from handoff.sessions.schemas import SessionCreate, WorkLogCreate
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal
from tests.factories import Tenant
from tests.inprocess import in_process

WAIT_SECONDS = 30  # the background test's bound on waiting for the task, never a timing assertion


async def _session(
    database: MongoDatabase,
    tenant: Tenant,
    settings: Settings,
    *,
    status: SessionStatus,
    ended_days_ago: float | None = None,
) -> str:
    principal = Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id)
    session_id = (await sessions.create_session(principal, SessionCreate(), settings=settings)).session.session_id
    await sessions.log_work(principal.workspace_id, session_id, WorkLogCreate(message="work"), settings=settings)
    if status is SessionStatus.PAUSED:
        await sessions.pause(principal.workspace_id, session_id)
    elif status is not SessionStatus.ACTIVE:
        await sessions.end(principal.workspace_id, session_id, status=status, summary=None)
    if ended_days_ago is not None:
        past = clock.now() - timedelta(days=ended_days_ago)
        moved = {"ended_at": past, "started_at": past - timedelta(hours=1)}
        if status in (SessionStatus.ACTIVE, SessionStatus.PAUSED):  # an old open session: no ended_at at all
            moved = {"started_at": past, "last_active_at": past}
        await database["sessions"].update_one({"session_id": session_id}, {"$set": moved})
    return session_id


async def _remaining(database: MongoDatabase, tenant: Tenant) -> set[str]:
    cursor = database["sessions"].find({"workspace_id": tenant.workspace.workspace_id}, {"session_id": 1})
    return {doc["session_id"] async for doc in cursor}


@pytest.fixture
async def aged(
    database: MongoDatabase, settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> dict[str, set[str]]:
    """Five sessions that ended 40-60 days ago, and the ones that must stay."""
    old = {
        await _session(database, tenant, settings, status=status, ended_days_ago=days)
        for status, days in [
            (SessionStatus.COMPLETED, 40),
            (SessionStatus.COMPLETED, 45),
            (SessionStatus.FAILED, 50),
            (SessionStatus.COMPLETED, 55),
            (SessionStatus.FAILED, 60),
        ]
    }
    young = {
        await _session(database, tenant, settings, status=SessionStatus.COMPLETED, ended_days_ago=10),
        await _session(database, tenant, settings, status=SessionStatus.FAILED, ended_days_ago=29),
    }
    open_ = {
        await _session(database, tenant, settings, status=SessionStatus.ACTIVE, ended_days_ago=90),
        await _session(database, tenant, settings, status=SessionStatus.PAUSED, ended_days_ago=90),
    }
    elsewhere = {await _session(database, other_tenant, settings, status=SessionStatus.COMPLETED, ended_days_ago=90)}
    return {"old": old, "young": young, "open": open_, "elsewhere": elsewhere}


async def test_prune_deletes_only_ended_sessions_past_the_date_in_batches(
    database: MongoDatabase, tenant: Tenant, other_tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    result = await retention.prune(
        tenant.workspace.workspace_id, ended_before=clock.now() - timedelta(days=30), batch_size=2
    )

    assert (result.found, result.deleted) == (5, 5)
    assert result.batches == [2, 2, 1]
    assert await _remaining(database, tenant) == aged["young"] | aged["open"]
    assert await _remaining(database, other_tenant) == aged["elsewhere"]


async def test_a_pruned_session_takes_its_sealed_pages_with_it(
    database: MongoDatabase, settings: Settings, tenant: Tenant
) -> None:
    """A large session has most of its log on sealed pages: deleting it through the domain removes them too."""
    paged = settings.model_copy(update={"page_entries": 4})
    principal = Principal(workspace_id=tenant.workspace.workspace_id, api_key_id=tenant.key_id)

    async def large(ended_days_ago: int) -> str:
        session_id = (await sessions.create_session(principal, SessionCreate(), settings=paged)).session.session_id
        for i in range(24):
            await sessions.log_work(
                principal.workspace_id, session_id, WorkLogCreate(message=f"step {i}"), settings=paged
            )
        await sessions.end(principal.workspace_id, session_id, status=SessionStatus.COMPLETED, summary=None)
        past = clock.now() - timedelta(days=ended_days_ago)
        await database["sessions"].update_one({"session_id": session_id}, {"$set": {"ended_at": past}})
        return session_id

    pruned, kept = await large(40), await large(5)

    async def pages(session_id: str) -> int:
        return await database["log_pages"].count_documents(
            {"workspace_id": principal.workspace_id, "session_id": session_id}
        )

    assert await pages(pruned) > 0  # the log did seal pages
    assert await pages(kept) > 0
    kept_pages = await pages(kept)

    result = await retention.prune(principal.workspace_id, ended_before=clock.now() - timedelta(days=30), batch_size=10)

    assert result.deleted == 1
    assert await pages(pruned) == 0
    assert await pages(kept) == kept_pages
    assert await _remaining(database, tenant) == {kept}


async def test_a_dry_run_counts_and_deletes_nothing(
    database: MongoDatabase, tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    result = await retention.prune(
        tenant.workspace.workspace_id, ended_before=clock.now() - timedelta(days=30), batch_size=2, dry_run=True
    )

    assert (result.found, result.deleted, result.batches) == (5, 0, [])
    assert await _remaining(database, tenant) == set().union(*(aged[k] for k in ("old", "young", "open")))


async def test_prune_reports_each_batch(tenant: Tenant, aged: dict[str, set[str]]) -> None:
    seen: list[int] = []

    await retention.prune(
        tenant.workspace.workspace_id,
        ended_before=clock.now() - timedelta(days=30),
        batch_size=3,
        after_batch=seen.append,
    )

    assert seen == [3, 5]


async def test_a_pass_does_nothing_while_no_workspace_sets_a_retention(
    database: MongoDatabase, settings: Settings, tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    before = await _remaining(database, tenant)

    assert await run_pass(settings, lease.new_owner()) == 0
    assert await _remaining(database, tenant) == before


async def test_a_pass_applies_each_workspace_retention(
    database: MongoDatabase, settings: Settings, tenant: Tenant, other_tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    await workspaces.set_retention(tenant.workspace.slug, ended_after_days=30)
    owner = lease.new_owner()

    assert await run_pass(settings.model_copy(update={"retention_batch_size": 2}), owner) == 5
    assert await _remaining(database, tenant) == aged["young"] | aged["open"]
    assert await _remaining(database, other_tenant) == aged["elsewhere"]  # no retention set there

    await workspaces.set_retention(tenant.workspace.slug, ended_after_days=5)
    assert await run_pass(settings, owner) == 2  # the same holder's next pass (it still holds the lease)
    assert await _remaining(database, tenant) == aged["open"]


async def test_only_the_lease_holder_does_the_work(
    database: MongoDatabase, settings: Settings, tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    await workspaces.set_retention(tenant.workspace.slug, ended_after_days=30)
    holder, other = lease.new_owner(), lease.new_owner()
    assert await lease.acquire(LEASE, holder, now=clock.now(), seconds=60)

    assert await run_pass(settings, other) == 0
    assert len(await _remaining(database, tenant)) == 9

    await lease.release(LEASE, holder)
    assert await run_pass(settings, other) == 5


async def test_a_lease_goes_to_one_owner_until_it_expires(database: MongoDatabase) -> None:
    owners = [lease.new_owner() for _ in range(5)]
    now = clock.now()

    won = await asyncio.gather(*(lease.acquire("job", owner, now=now, seconds=60) for owner in owners))

    assert sum(won) == 1
    winner = owners[won.index(True)]
    assert await lease.acquire("job", winner, now=now, seconds=60)  # the holder renews
    later = now + timedelta(seconds=61)
    assert await lease.acquire("job", owners[won.index(False)], now=later, seconds=60)  # expired: taken over
    assert not await lease.acquire("job", winner, now=later, seconds=60)


async def test_a_pass_that_lost_its_lease_stops_between_batches_and_the_loop_goes_on(
    database: MongoDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    thief = lease.new_owner()
    batches: list[int] = []
    passes = 0

    async def run_pass(owner: str) -> None:
        nonlocal passes
        passes += 1
        for batch in range(3):
            await lease.keep("job", owner, seconds=60, pause=0)
            batches.append(batch)
            if passes == 1:  # the lease runs out and another process takes it over during the first pass
                await database["leases"].update_one({"_id": "job"}, {"$set": {"owner": thief}})

    logger = logging.getLogger("test.lease")
    with caplog.at_level(logging.INFO, logger="test.lease"):
        async with lease.periodically("job", 0.02, run_pass, label="job pass", logger=logger):
            deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
            while passes < 3:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)

    assert batches == [0]  # the first pass stopped at its next renewal; the later ones at their first
    assert [r.levelno for r in caplog.records if r.name == "test.lease"].count(logging.WARNING) == 0
    assert any("another process took over the lease" in r.getMessage() for r in caplog.records)
    lease_now = await database["leases"].find_one({"_id": "job"})
    assert lease_now is not None
    assert lease_now["owner"] == thief  # the holder's release at shutdown left the thief's lease alone


async def test_the_service_deletes_expired_sessions_in_the_background(
    database: MongoDatabase, settings: Settings, tenant: Tenant, aged: dict[str, set[str]]
) -> None:
    await workspaces.set_retention(tenant.workspace.slug, ended_after_days=30)
    background = settings.model_copy(update={"retention_interval_seconds": 0.05, "retention_batch_size": 2})

    async with in_process(create_app(background, database=database)) as http:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while await _remaining(database, tenant) != aged["young"] | aged["open"]:
            assert asyncio.get_running_loop().time() < deadline, await _remaining(database, tenant)
            await asyncio.sleep(0.05)
        answered = await http.get("/v1/sessions", headers=tenant.headers)

    assert answered.status_code == 200
    assert len(answered.json()["items"]) == 4
    assert await database["leases"].count_documents({}) == 0  # released at shutdown


async def test_set_retention_stores_and_clears_it(database: MongoDatabase, tenant: Tenant) -> None:
    stored = await workspaces.set_retention(tenant.workspace.slug, ended_after_days=7)
    assert stored.retention_ended_after_days == 7

    cleared = await workspaces.set_retention(tenant.workspace.slug, ended_after_days=None)
    assert cleared.retention_ended_after_days is None
    assert (await database["workspaces"].find_one({"slug": tenant.workspace.slug}))[
        "retention_ended_after_days"
    ] is None


def test_the_cutoff_is_that_many_days_before_now() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=clock.now().tzinfo)
    assert retention.cutoff(30, now=now) == datetime(2026, 11, 7, 12, 0, tzinfo=now.tzinfo)


async def test_the_expired_sessions_are_found_through_an_index_without_reading_others(tenant: Tenant) -> None:
    query = retention.expired_query(tenant.workspace.workspace_id, datetime(2026, 1, 1, tzinfo=UTC))
    plan = await Session.get_pymongo_collection().find(query).sort("ended_at", 1).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "ended_by_status" in winning
    assert "COLLSCAN" not in winning
