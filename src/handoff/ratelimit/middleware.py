"""Apply the per-key rate limit to every request that presents a bearer key, before it reaches the auth guard.

Keys are counted by the token itself (a digest of it), so a refused request costs no database lookup, and a
flood of requests with one bad token is held back like any other key. Requests without a key (health, schema)
are not counted. Every counted response carries the fields of the IETF draft
``draft-ietf-httpapi-ratelimit-headers-06`` (``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset``,
``RateLimit-Policy``); a refused one is a ``429`` problem with ``Retry-After`` as well.

The middleware only adds headers and may refuse: it composes with any other middleware in any order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from handoff.auth import bearer_token
from handoff.config import Settings
from handoff.errors import RateLimited, Unauthorized
from handoff.ratelimit.table import Decision, RatePolicy, SharedRateTable, new_table_file


def policy_header(policy: RatePolicy) -> str:
    """``RateLimit-Policy``: the sustained rate per 1-second window, with the burst as an extension parameter."""
    return f"{policy.rate:g};w=1;burst={policy.burst}"


def decision_headers(decision: Decision, policy: RatePolicy) -> dict[str, str]:
    """The draft's fields for one decision; integers of seconds, rounded up so a client never comes back early."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
        "RateLimit-Policy": policy_header(policy),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return headers


class RateLimitMiddleware(ASGIMiddleware):
    """Count each keyed request in the shared table; refuse with ``429`` past the key's rate."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
        try:
            token = bearer_token(connection)
        except Unauthorized:
            await next_app(scope, receive, send)  # no key: nothing to count (the guard answers 401 where needed)
            return
        decision = self.limiter.table.hit(token)
        headers = decision_headers(decision, self.limiter.policy)
        if not decision.allowed:
            raise RateLimited(
                f"this API key is over its rate limit ({self.limiter.policy.rate:g} requests a second, bursts of "
                f"{self.limiter.policy.burst}); retry after {headers['Retry-After']} s",
                headers=headers,
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                response_headers = MutableScopeHeaders(message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await next_app(scope, receive, send_with_headers)


class RateLimiter:
    """The policy and the table it is counted in; opened by the app's lifespan, used by the middleware."""

    def __init__(self, policy: RatePolicy, table_path: Path | None = None) -> None:
        self.policy = policy
        self._table_path = table_path
        self._table: SharedRateTable | None = None
        self._owned = False

    @property
    def table(self) -> SharedRateTable:
        if self._table is None:
            raise RuntimeError("the rate limiter is used before the app's lifespan opened it")
        return self._table

    def open(self) -> None:
        """Map the shared table (the one ``handoff serve`` made for its workers), or a private one."""
        if self._table_path is None:
            self._table, self._owned = SharedRateTable(new_table_file(), self.policy), True
        else:
            self._table = SharedRateTable(self._table_path, self.policy)

    def close(self) -> None:
        """Unmap the table; a private one is removed."""
        if self._table is None:
            return
        self._table.close()
        if self._owned:
            self._table.path.unlink(missing_ok=True)
        self._table = None


def limiter_for(settings: Settings) -> RateLimiter | None:
    """The limiter ``HANDOFF_RATE_LIMIT`` asks for, or None when rate limiting is off."""
    if settings.rate_limit <= 0:
        return None
    policy = RatePolicy(rate=settings.rate_limit, burst=settings.rate_limit_policy_burst)
    return RateLimiter(policy, settings.rate_limit_table)
