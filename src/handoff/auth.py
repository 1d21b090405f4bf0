"""The API-key guard: every ``/v1`` route runs behind it.

It resolves ``Authorization: Bearer <key>`` to a :class:`Principal` and leaves it on the connection's state,
where the ``principal`` dependency picks it up. Lookups are cached for at most
``Settings.api_key_cache_seconds`` (5 s by default), so a revocation takes effect within that time while the
hot path of an agent appending dozens of entries a minute costs no extra query. When an entry expires under
load, the requests that miss together share one lookup instead of each making its own. Hits and misses are
counted in ``handoff_api_key_cache_total``. The dashboard (``handoff.ui``) resolves its browser sessions through
the same cache, by the key's hash, so a revoked key signs the browser out within the same window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from handoff import metrics
from handoff.cache import TtlCache
from handoff.errors import Unauthorized
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal


class KeyCache(TtlCache[str, Principal]):
    """The principals that keys' hashes resolved to, each trusted for the configured time (see the module)."""

    async def resolve(self, key: str, lookup: Callable[[], Awaitable[Principal]]) -> Principal:
        """The cached principal or one lookup shared by the requests missing together, counted as a hit or miss
        (joining another request's pending lookup is a miss: no cached answer)."""
        metrics.key_cache("hit" if self.get(key) is not None else "miss")
        return await super().resolve(key, lookup)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The token of an ``Authorization: Bearer`` header, or 401."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a valid API key is required")
    return token.strip()


async def resolve_key(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Principal:
    """The principal a presented key opens, through the key cache; 401 for every kind of bad key."""
    cache: KeyCache = connection.app.state.key_cache
    return await cache.resolve(workspaces.hash_key(token), lambda: workspaces.authenticate(token))


async def resolve_key_hash(connection: ASGIConnection[Any, Any, Any, Any], key_hash: str) -> Principal:
    """The same, from the key's hash (the dashboard keeps only that): one cache entry per key, shared with /v1."""
    cache: KeyCache = connection.app.state.key_cache
    return await cache.resolve(key_hash, lambda: workspaces.authenticate_hash(key_hash))


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Admit requests with a valid key and record who made them."""
    connection.state.principal = await resolve_key(connection, bearer_token(connection))


def provide_principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Dependency: the caller that the guard admitted."""
    principal: Principal = request.state.principal
    return principal


CurrentPrincipal = NamedDependency[Principal]
"""How a handler asks for the caller: ``principal: CurrentPrincipal``."""
