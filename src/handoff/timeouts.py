"""A request body that stops arriving is answered 408 instead of holding its connection and task forever.

uvicorn bounds neither slow headers nor a stalled body. Headers it reads before the app sees the request (a
proxy in front must bound those); the body the app pulls chunk by chunk through ``receive``, so the app can bound
the wait for each chunk. Once the body is complete, ``receive`` is passed through untouched: from then on it only
reports the client's disconnect, which a streamed answer (the MCP endpoint's) may legitimately wait for at length.
"""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from handoff.errors import RequestTimeout


class BodyTimeoutMiddleware(ASGIMiddleware):
    """Refuse a request whose body sends nothing for ``seconds`` with a 408 problem."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        body_complete = False

        async def receive_within_deadline() -> ReceiveMessage:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"the request body stalled: nothing arrived for {self.seconds:g} s") from None
            body_complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await next_app(scope, receive_within_deadline, send)
