"""A small time-bounded cache whose misses share one lookup: what the key guard and the quota checks use.

Values are trusted for ``ttl_seconds``; when an entry expires under load, the requests that miss together wait
for one lookup instead of each making its own, and one waiter that is cancelled does not cancel the others'.
With ``ttl_seconds`` 0 nothing is cached and every call looks up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_LIMIT = 10_000


class TtlCache(Generic[K, V]):
    """A map from keys to values each trusted for ``ttl_seconds``, of at most ``limit`` entries."""

    def __init__(self, ttl_seconds: float, *, limit: int = DEFAULT_LIMIT) -> None:
        self.ttl_seconds = ttl_seconds
        self.limit = limit
        self._entries: dict[K, tuple[float, V]] = {}
        self._lookups: dict[K, asyncio.Future[V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if time.monotonic() >= deadline:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_seconds <= 0:
            return
        if len(self._entries) >= self.limit:
            self._entries.clear()  # simpler than LRU, and only a flood of distinct keys gets here
        self._entries[key] = (time.monotonic() + self.ttl_seconds, value)

    async def resolve(self, key: K, lookup: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else the result of ``lookup``, run once for all the callers missing together."""
        value = self.get(key)
        if value is not None:
            return value
        if self.ttl_seconds <= 0:
            return await lookup()  # no cache: every caller sees the value as it is now
        pending = self._lookups.get(key)
        if pending is None:
            pending = self._lookups[key] = asyncio.ensure_future(lookup())
            pending.add_done_callback(lambda done: self._finished(key, done))
        value = await asyncio.shield(pending)  # one waiter cancelled does not cancel the others' lookup
        self.put(key, value)
        return value

    def _finished(self, key: K, lookup: asyncio.Future[V]) -> None:
        self._lookups.pop(key, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: a failed lookup whose waiters all left is not an unhandled error
