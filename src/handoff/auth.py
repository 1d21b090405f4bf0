"""The API-key guard: every ``/v1`` route runs behind it.

It resolves ``Authorization: Bearer <key>`` to a :class:`Principal` and leaves it on the connection's state,
where the ``principal`` dependency picks it up. Lookups are cached for at most
``Settings.api_key_cache_seconds`` (5 s by default), so a revocation takes effect within that time while the
hot path of an agent appending dozens of entries a minute costs no extra query. When an entry expires under
load, the requests that miss together share one lookup instead of each making its own. Hits and misses are
counted in ``handoff_api_key_cache_total``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from handoff import metrics
from handoff.errors import Unauthorized
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal

_CACHE_LIMIT = 10_000


class KeyCache:
    """A small time-bounded map from a key's hash to the principal it resolved to."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        deadline, principal = entry
        if time.monotonic() >= deadline:
            del self._entries[key_hash]
            return None
        return principal

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl_seconds <= 0:
            return
        if len(self._entries) >= _CACHE_LIMIT:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl_seconds, principal)

    async def resolve(self, key_hash: str, lookup: Callable[[], Awaitable[Principal]]) -> Principal:
        """The cached principal, else the result of ``lookup``, run once for all the requests missing together."""
        principal = self.get(key_hash)
        if principal is not None:
            metrics.key_cache("hit")
            return principal
        metrics.key_cache("miss")  # joining another request's pending lookup is a miss too: no cached answer
        if self.ttl_seconds <= 0:
            return await lookup()  # no cache: every request sees the key as it is now
        pending = self._lookups.get(key_hash)
        if pending is None:
            pending = self._lookups[key_hash] = asyncio.ensure_future(lookup())
            pending.add_done_callback(lambda done: self._finished(key_hash, done))
        principal = await asyncio.shield(pending)  # one waiter cancelled does not cancel the others' lookup
        self.put(key_hash, principal)
        return principal

    def _finished(self, key_hash: str, lookup: asyncio.Future[Principal]) -> None:
        self._lookups.pop(key_hash, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: a failed lookup whose waiters all left is not an unhandled error


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The token of an ``Authorization: Bearer`` header, or 401."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a valid API key is required")
    return token.strip()


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Admit requests with a valid key and record who made them."""
    token = bearer_token(connection)
    cache: KeyCache = connection.app.state.key_cache
    connection.state.principal = await cache.resolve(workspaces.hash_key(token), lambda: workspaces.authenticate(token))


def provide_principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Dependency: the caller that the guard admitted."""
    principal: Principal = request.state.principal
    return principal


CurrentPrincipal = NamedDependency[Principal]
"""How a handler asks for the caller: ``principal: CurrentPrincipal``."""
