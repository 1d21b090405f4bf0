"""A request body that does not arrive in time is answered 408 instead of holding its connection and task.

uvicorn bounds neither slow headers nor a slow body. Headers it reads before the app sees the request (a proxy
in front must bound those); the body the app pulls chunk by chunk through ``receive``, so the app bounds the time
the whole body may take: a body that stops arriving and a slowloris trickle (a few bytes now and then, under the
size limit) both end in a 408 once the deadline passes. A body of up to 1 MiB that takes longer than the default
30 s is not a client this service needs to wait for. Once the body is complete, ``receive`` is passed through
untouched: from then on it only reports the client's disconnect, which a streamed answer (the MCP endpoint's)
may legitimately wait for at length.

A route whose body is streamed to storage instead of read whole (a blob upload, up to hundreds of MiB) says so in
its ``opt`` (:data:`STREAMED_BODY`): its body may take longer than the deadline as long as it keeps arriving. Each
byte received extends the deadline by ``1 / streamed_bytes_per_second`` seconds, and no single wait for the next
piece may pass ``seconds``, so a stalled upload and a trickle both still end in a 408, while a 256 MiB upload over
a slow link is never cut.
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from handoff.errors import RequestTimeout

#: The ``opt`` key of a route handler whose body is streamed to storage: its deadline grows with what arrives.
STREAMED_BODY = "streamed_body"


class BodyTimeoutMiddleware(ASGIMiddleware):
    """Refuse a request whose body has not fully arrived ``seconds`` after the request began, with a 408 problem.

    On a :data:`STREAMED_BODY` route (with ``streamed_bytes_per_second`` given), the deadline moves on by the time
    the bytes received are worth at that rate, and each wait for the next piece is bounded by ``seconds``.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, seconds: float, *, streamed_bytes_per_second: int | None = None) -> None:
        self.seconds = seconds
        self.streamed_bytes_per_second = streamed_bytes_per_second

    def _rate_for(self, scope: Scope) -> int | None:
        handler = scope.get("route_handler")
        streamed = handler is not None and bool(handler.opt.get(STREAMED_BODY))
        return self.streamed_bytes_per_second if streamed else None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        rate = self._rate_for(scope)
        body_complete = False

        async def receive_within_deadline() -> ReceiveMessage:
            nonlocal body_complete, deadline
            if body_complete:
                return await receive()
            wait_until = deadline if rate is None else min(deadline, loop.time() + self.seconds)
            try:
                async with asyncio.timeout_at(wait_until):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(self._late(rate)) from None
            body_complete = message["type"] != "http.request" or not message.get("more_body", False)
            if rate is not None and message["type"] == "http.request":
                deadline += len(message.get("body", b"")) / rate
            return message

        await next_app(scope, receive_within_deadline, send)

    def _late(self, rate: int | None) -> str:
        if rate is None:
            return f"the request body did not arrive within {self.seconds:g} s"
        return (
            f"the request body stopped arriving for {self.seconds:g} s, "
            f"or arrived slower than {rate:,} bytes a second on average"
        )
