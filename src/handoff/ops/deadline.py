"""Every request's database work runs under one deadline, so a database that stops answering costs a client at most
``HANDOFF_REQUEST_TIMEOUT_SECONDS`` (20 s by default) and then a 503 with ``Retry-After``, never a hang.

The deadline is PyMongo's client-side operation timeout, :func:`pymongo.timeout`, entered around the rest of
the request: every operation inside (server selection, checking out a connection, the command, a retried write,
the ``w=majority`` wait) gets only the time left, and the driver raises a timeout error when it runs out, which
:mod:`handoff.errors` answers with 503. Without it each operation had its own limits (server selection 15 s, no
socket timeout), so a write to a frozen primary answered only after ~40 s. The deadline sits in a context
variable, so tasks the request starts (the key cache's shared lookup) inherit it.

The deadline starts when the request arrives and again when its body has fully arrived, so a client that takes
its time sending a body (up to ``HANDOFF_REQUEST_BODY_TIMEOUT_SECONDS``) does not eat the time of the database
work that follows.

The default is longer than a replica-set election (about 10-12 s with the server's defaults), so a request
rides out a failover instead of failing in the middle of it; keep it that way when lowering it.

Long streams must not be cut by it: a route that streams for longer than a request (server-sent events, a blob
up- or download, an export) opts out with ``opt={NO_DEADLINE: True}`` on its handler, its controller or its
router; its database calls then carry their own limits, or :func:`pymongo.timeout` blocks of their own.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pymongo
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

#: The ``opt`` key a route handler sets (to ``True``) to run without the request deadline.
NO_DEADLINE = "no_deadline"


class DeadlineMiddleware(ASGIMiddleware):
    """Run the request under ``pymongo.timeout(seconds)``, except on routes whose ``opt`` has :data:`NO_DEADLINE`."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = NO_DEADLINE

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        deadline = _Restartable(self.seconds)
        body_done = False

        async def receive_and_restart() -> ReceiveMessage:
            """Start the deadline again once the body has arrived: the time a client takes to send it (bounded by
            HANDOFF_REQUEST_BODY_TIMEOUT_SECONDS) is not taken from the database work that follows."""
            nonlocal body_done
            message = await receive()
            if not body_done and message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
                deadline.restart()
            return message

        with deadline:
            await next_app(scope, receive_and_restart, send)


class _Restartable:
    """``pymongo.timeout(seconds)`` that can begin again: the running one is left and a new one entered, in the
    request's own context (``receive`` is awaited by the handler, in the request's task)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._current: AbstractContextManager[Any] | None = None

    def __enter__(self) -> None:
        self._current = pymongo.timeout(self.seconds)
        self._current.__enter__()

    def restart(self) -> None:
        self.__exit__(None, None, None)
        self.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._current is not None:
            self._current.__exit__(None, None, None)
            self._current = None
