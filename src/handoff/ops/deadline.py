"""Every request's database work runs under one deadline, so a database that stops answering costs a client at most
``HANDOFF_REQUEST_TIMEOUT_SECONDS`` (20 s by default) and then a 503 with ``Retry-After``, never a hang.

The deadline is PyMongo's client-side operation timeout, :func:`pymongo.timeout`, entered around the rest of
the request: every operation inside (server selection, checking out a connection, the command, a retried write,
the ``w=majority`` wait) gets only the time left, and the driver raises a timeout error when it runs out, which
:mod:`handoff.errors` answers with 503. Without it each operation had its own limits (server selection 15 s, no
socket timeout), so a write to a frozen primary answered only after ~40 s. The deadline sits in a context
variable, so tasks the request starts (the key cache's shared lookup) inherit it.

The default is longer than a replica-set election (about 10-12 s with the server's defaults), so a request
rides out a failover instead of failing in the middle of it; keep it that way when lowering it.

Long streams must not be cut by it: a route that streams for longer than a request (server-sent events, a blob
up- or download, an export) opts out with ``opt={NO_DEADLINE: True}`` on its handler, its controller or its
router; its database calls then carry their own limits, or :func:`pymongo.timeout` blocks of their own.
"""

from __future__ import annotations

import pymongo
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

#: The ``opt`` key a route handler sets (to ``True``) to run without the request deadline.
NO_DEADLINE = "no_deadline"


class DeadlineMiddleware(ASGIMiddleware):
    """Run the request under ``pymongo.timeout(seconds)``, except on routes whose ``opt`` has :data:`NO_DEADLINE`."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = NO_DEADLINE

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        with pymongo.timeout(self.seconds):
            await next_app(scope, receive, send)
