"""The API-key cache under concurrency: requests that miss together share one lookup."""

from __future__ import annotations

import asyncio

import pytest

from handoff.auth import KeyCache
from handoff.errors import Unauthorized
from handoff.workspaces.schemas import Principal

PRINCIPAL = Principal(workspace_id="ws_1", api_key_id="key_1")


class Lookup:
    """A key lookup that waits until released and counts its calls."""

    def __init__(self, *, fails: bool = False) -> None:
        self.calls = 0
        self.fails = fails
        self.release = asyncio.Event()

    async def __call__(self) -> Principal:
        self.calls += 1
        await self.release.wait()
        if self.fails:
            raise Unauthorized("a valid API key is required")
        return PRINCIPAL


async def _resolve_together(cache: KeyCache, lookup: Lookup, requests: int) -> list[Principal | BaseException]:
    waiting = [asyncio.create_task(cache.resolve("hash", lookup)) for _ in range(requests)]
    await asyncio.sleep(0)
    lookup.release.set()
    return await asyncio.gather(*waiting, return_exceptions=True)


async def test_requests_missing_together_share_one_lookup() -> None:
    cache, lookup = KeyCache(5), Lookup()

    assert await _resolve_together(cache, lookup, 32) == [PRINCIPAL] * 32
    assert lookup.calls == 1
    assert await cache.resolve("hash", lookup) == PRINCIPAL
    assert lookup.calls == 1  # cached now


async def test_a_failed_lookup_fails_every_waiter_and_is_not_cached() -> None:
    cache, lookup = KeyCache(5), Lookup(fails=True)

    answers = await _resolve_together(cache, lookup, 8)

    assert all(isinstance(answer, Unauthorized) for answer in answers)
    assert lookup.calls == 1
    with pytest.raises(Unauthorized):
        await cache.resolve("hash", lookup)
    assert lookup.calls == 2


async def test_a_cancelled_request_does_not_cancel_the_shared_lookup() -> None:
    cache, lookup = KeyCache(5), Lookup()
    first = asyncio.create_task(cache.resolve("hash", lookup))
    second = asyncio.create_task(cache.resolve("hash", lookup))
    await asyncio.sleep(0)

    first.cancel()
    lookup.release.set()

    assert await second == PRINCIPAL
    assert lookup.calls == 1


async def test_without_a_cache_every_request_looks_the_key_up() -> None:
    cache, lookup = KeyCache(0), Lookup()

    assert await _resolve_together(cache, lookup, 4) == [PRINCIPAL] * 4
    assert lookup.calls == 4
