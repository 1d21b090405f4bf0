"""A request body that does not arrive in time is answered 408 instead of holding its connection and task.

uvicorn bounds neither slow headers nor a slow body. Headers it reads before the app sees the request (a proxy
in front must bound those); the body the app pulls chunk by chunk through ``receive``, so the app bounds the time
the whole body may take: a body that stops arriving and a slowloris trickle (a few bytes now and then, under the
size limit) both end in a 408 once the deadline passes. A body of up to 1 MiB that takes longer than the default
30 s is not a client this service needs to wait for. Once the body is complete, ``receive`` is passed through
untouched: from then on it only reports the client's disconnect, which a streamed answer (the MCP endpoint's)
may legitimately wait for at length.
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from handoff.errors import RequestTimeout


class BodyTimeoutMiddleware(ASGIMiddleware):
    """Refuse a request whose body has not fully arrived ``seconds`` after the request began, with a 408 problem."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_complete = False

        async def receive_within_deadline() -> ReceiveMessage:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.seconds:g} s") from None
            body_complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await next_app(scope, receive_within_deadline, send)
