"""Rate limits per API key: the shared bucket table on a pinned clock, and the 429 through the app.

The table tests drive :class:`SharedRateTable` with a clock the test moves, so every figure is exact. The HTTP
tests use a rate so low (one request per 1,000 s) that nothing refills while they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.ratelimit.table import PROBES, SLOT, RatePolicy, SharedRateTable, key_digest, new_table_file
from tests.factories import Tenant
from tests.inprocess import in_process


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table_path() -> Iterator[Path]:
    path = new_table_file()
    yield path
    path.unlink(missing_ok=True)


def _table(path: Path, clock: Clock, *, rate: float = 2.0, burst: int = 3) -> SharedRateTable:
    return SharedRateTable(path, RatePolicy(rate=rate, burst=burst), clock=clock)


def test_a_full_bucket_admits_the_burst_then_refuses_until_one_interval_passes(table_path: Path) -> None:
    clock = Clock()
    table = _table(table_path, clock)
    try:
        first, second, third, fourth = (table.hit("hk_a") for _ in range(4))

        assert [d.allowed for d in (first, second, third, fourth)] == [True, True, True, False]
        assert [d.remaining for d in (first, second, third, fourth)] == [2, 1, 0, 0]
        assert [d.limit for d in (first, fourth)] == [3, 3]
        assert third.reset_after == pytest.approx(1.5)  # three intervals of 0.5 s until the bucket is full
        assert fourth.retry_after == pytest.approx(0.5)

        clock.now += 0.5
        assert table.hit("hk_a").allowed
        assert not table.hit("hk_a").allowed
        clock.now += 10  # long idle: the bucket is full again, not fuller
        assert [table.hit("hk_a").allowed for _ in range(4)] == [True, True, True, False]
    finally:
        table.close()


def test_keys_have_buckets_of_their_own(table_path: Path) -> None:
    clock = Clock()
    table = _table(table_path, clock, burst=1)
    try:
        assert table.hit("hk_a").allowed
        assert not table.hit("hk_a").allowed
        assert table.hit("hk_b").allowed
    finally:
        table.close()


def test_two_mappings_of_one_file_count_together(table_path: Path) -> None:
    clock = Clock()
    one, other = _table(table_path, clock), _table(table_path, clock)
    try:
        assert [one.hit("hk_a").allowed, other.hit("hk_a").allowed, one.hit("hk_a").allowed] == [True, True, True]
        refused = other.hit("hk_a")
        assert not refused.allowed
        assert refused.retry_after == pytest.approx(0.5)
    finally:
        one.close()
        other.close()


def test_a_refused_request_does_not_use_up_the_bucket(table_path: Path) -> None:
    clock = Clock()
    table = _table(table_path, clock, burst=1)
    try:
        assert table.hit("hk_a").allowed
        for _ in range(5):
            assert not table.hit("hk_a").allowed
        clock.now += 0.5
        assert table.hit("hk_a").allowed
    finally:
        table.close()


def test_a_slot_whose_bucket_is_full_again_serves_another_key(table_path: Path) -> None:
    """Slots are never cleaned: a key idle long enough is indistinguishable from a fresh one, so its slot is free."""
    clock = Clock()
    table = _table(table_path, clock, burst=1)
    try:
        digest = key_digest("hk_a")
        window = int.from_bytes(digest[:8], "little") % (len(table._map) // SLOT.size - PROBES + 1)
        for i in range(PROBES):  # every slot of hk_a's window taken by another key with a live bucket
            SLOT.pack_into(table._map, (window + i) * SLOT.size, bytes([i + 1]) * 16, clock.now + 100)
        assert table.hit("hk_a").allowed  # no slot: admitted without being counted
        assert table.hit("hk_a").allowed

        clock.now += 200  # the other keys' buckets are full again: their slots are free
        assert table.hit("hk_a").allowed
        assert not table.hit("hk_a").allowed  # counted now
    finally:
        table.close()


# Through the app ----------------------------------------------------------------------------------------------


@pytest.fixture
def limited_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit": 0.001, "rate_limit_burst": 3})


async def test_over_the_limit_a_key_gets_429_with_retry_after_and_the_draft_headers(
    limited_settings: Settings, database: MongoDatabase, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with in_process(create_app(limited_settings, database=database)) as http:
        admitted = [await http.get("/v1/sessions", headers=tenant.headers) for _ in range(3)]
        refused = await http.post("/v1/sessions", json={}, headers=tenant.headers)
        other = await http.get("/v1/sessions", headers=other_tenant.headers)

    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert [r.headers["RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
    for response in admitted:
        assert response.headers["RateLimit-Limit"] == "3"
        assert response.headers["RateLimit-Policy"] == "0.001;w=1;burst=3"
        assert "Retry-After" not in response.headers
    assert admitted[-1].headers["RateLimit-Reset"] == "3000"  # three requests of 1,000 s each to earn back

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "1000"
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "3000"
    assert refused.headers["RateLimit-Policy"] == "0.001;w=1;burst=3"
    body = refused.json()
    assert body["status"] == 429
    assert body["title"] == "Too many requests"
    assert body["detail"] == (
        "this API key is over its rate limit (0.001 requests a second, bursts of 3); retry after 1000 s"
    )

    assert other.status_code == 200  # another key, another bucket
    assert other.headers["RateLimit-Remaining"] == "2"


async def test_a_refused_request_writes_nothing(
    limited_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    settings = limited_settings.model_copy(update={"rate_limit_burst": 1})
    async with in_process(create_app(settings, database=database)) as http:
        created = await http.post("/v1/sessions", json={}, headers=tenant.headers)
        refused = await http.post("/v1/sessions", json={}, headers=tenant.headers)

    assert (created.status_code, refused.status_code) == (201, 429)
    assert await database["sessions"].count_documents({}) == 1


async def test_requests_without_a_key_are_not_counted(
    limited_settings: Settings, database: MongoDatabase, tenant: Tenant
) -> None:
    async with in_process(create_app(limited_settings, database=database)) as http:
        health = [await http.get("/healthz") for _ in range(5)]
        anonymous = await http.get("/v1/sessions")
        keyed = await http.get("/v1/sessions", headers=tenant.headers)

    assert [r.status_code for r in health] == [200] * 5
    assert all("RateLimit-Limit" not in r.headers for r in (*health, anonymous))
    assert anonymous.status_code == 401
    assert keyed.headers["RateLimit-Remaining"] == "2"


async def test_without_a_rate_limit_nothing_is_counted_or_announced(client: httpx.AsyncClient, tenant: Tenant) -> None:
    responses = [await client.get("/v1/sessions", headers=tenant.headers) for _ in range(5)]

    assert [r.status_code for r in responses] == [200] * 5
    assert all("RateLimit-Limit" not in r.headers for r in responses)


def test_the_default_burst_is_one_second_of_requests() -> None:
    assert Settings(rate_limit=0.5).rate_limit_policy_burst == 1
    assert Settings(rate_limit=20).rate_limit_policy_burst == 20
    assert Settings(rate_limit=2.5).rate_limit_policy_burst == 3
    assert Settings(rate_limit=20, rate_limit_burst=50).rate_limit_policy_burst == 50
