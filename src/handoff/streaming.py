"""A streamed response that closes its async generator however the response ends: sent, cut off or cancelled.

Litestar's ``Stream`` (2.x) iterates its generator in a task that the client's ``http.disconnect`` or the server's
shutdown cancels, and never calls the generator's ``aclose()`` (litestar-org/litestar#3607; the fix proposed in
#4394 was not merged). Where the cancellation finds that task inside the generator (awaiting its next chunk), the
generator's ``finally`` runs; where it finds it in ``send`` (the body waiting on a client that stopped reading, until
the graceful-shutdown timeout cancels it), the generator stays suspended at its ``yield`` until the garbage
collector finalises it, and what it holds (a blob download's cursor on the server and its prefetch task) stays open
meanwhile. :class:`ClosingStream` closes the generator the moment the body is over, whichever way it ended.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING

from litestar.enums import MediaType
from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send, TypeEncodersMap
from litestar.utils.helpers import get_enum_string_value

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.datastructures import Cookie
    from litestar.response.base import ASGIResponse


class ClosingStreamingResponse(ASGIStreamingResponse):
    """Litestar's streaming response, whose body closes the generator it streamed when it ends."""

    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        try:
            await super().send_body(send, receive)
        finally:
            # The task group inside ``send_body`` has waited for its streaming task, so the generator is not running
            # and ``aclose`` may be called; shielded, so a second cancellation cannot leave it half-closed.
            if isinstance(self.iterator, AsyncGenerator):
                await asyncio.shield(self.iterator.aclose())


class ClosingStream(Stream):
    """A ``Stream`` of an async generator whose ``finally`` is sure to run as soon as the response is over."""

    __slots__ = ("generator",)

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        media_type: MediaType | str | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, media_type=media_type)
        self.generator = content

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request,  # type: ignore[type-arg]
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        # What ``Stream.to_asgi_response`` does, with the closing response in place of Litestar's own (``app`` is
        # deprecated and always None from Litestar; ``type_encoders`` do not apply to a stream of bytes).
        return ClosingStreamingResponse(
            background=self.background or background,
            content_length=0,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers={**headers, **self.headers} if headers is not None else self.headers,
            is_head_response=is_head_response,
            iterator=self.generator,
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.JSON),
            status_code=self.status_code or status_code,
        )
