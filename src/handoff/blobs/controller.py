"""The blobs REST routes: parse, call one service function, shape the answer.

The upload reads the raw body through ``request.stream()``, piece by piece as it arrives: the app's 1 MiB body
limit is lifted for it (``request_max_body_size=None``: the service applies ``HANDOFF_MAX_BLOB_BYTES``) and the
body-timeout middleware gives it a deadline that grows with what arrives (``timeouts.STREAMED_BODY``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, delete, get, head, post
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.exceptions import InternalServerException
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from handoff.auth import CurrentPrincipal
from handoff.blobs import service
from handoff.blobs.schemas import BlobPage, BlobRead
from handoff.config import Settings
from handoff.errors import ClientDisconnected
from handoff.openapi import BinaryBodyOperation, binary, problems
from handoff.ops import NO_DEADLINE
from handoff.streaming import ClosingStream
from handoff.timeouts import STREAMED_BODY

SESSION_BLOBS = "/{session_id:str}/blobs"
ONE_BLOB = SESSION_BLOBS + "/{blob_id:str}"

RangeHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Range",
        required=False,
        description="`bytes=first-last`, `bytes=first-` or `bytes=-suffix`: answers 206 with that part.",
    ),
]


def _settings(request: Request[Any, Any, State]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _body(request: Request[Any, Any, State]) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that goes away mid-body ends it as :class:`ClientDisconnected`."""
    try:
        async for piece in request.stream():
            if piece:
                yield piece
    except InternalServerException as exc:
        # What Litestar's stream() raises on the client's http.disconnect (and for a body read twice, which this
        # route never does): the client's doing, not a failure of the service.
        raise ClientDisconnected("the client went away before the blob had arrived") from exc


class BlobController(Controller):
    """A session's blobs: binary content (files, screenshots, tool outputs, checkpoints) stored in GridFS."""

    path = "/sessions"
    tags = ["blobs"]

    @post(
        SESSION_BLOBS,
        status_code=HTTP_201_CREATED,
        request_max_body_size=None,
        opt={STREAMED_BODY: True, NO_DEADLINE: True},  # a long upload is paced by its body timeout
        operation_class=BinaryBodyOperation,
        responses=problems(404, 409, body=True),
    )
    async def upload_blob(
        self, request: Request[Any, Any, State], principal: CurrentPrincipal, session_id: FromPath[str]
    ) -> Response[BlobRead]:
        """Store the request body as a blob of the session, streamed (any Content-Type; up to the blob limit)."""
        blob = await service.upload_blob(
            principal.workspace_id,
            session_id,
            _body(request),
            content_type=request.headers.get("content-type"),
            declared_size=request.content_length,
            settings=_settings(request),
        )
        location = f"/v1/sessions/{quote(session_id, safe='')}/blobs/{blob.blob_id}"
        return Response(blob, status_code=HTTP_201_CREATED, headers={"Location": location})

    @get(SESSION_BLOBS, responses=problems(404))
    async def list_blobs(
        self,
        principal: CurrentPrincipal,
        session_id: FromPath[str],
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> BlobPage:
        """A page of the session's blobs, oldest first."""
        items, total = await service.list_blobs(principal.workspace_id, session_id, offset=offset, limit=limit)
        return BlobPage(items=items, total=total)

    @get(
        ONE_BLOB,
        media_type="application/octet-stream",
        opt={NO_DEADLINE: True},  # streams for as long as the client reads
        responses={
            200: binary("The blob's bytes, with the Content-Type it was uploaded with"),
            206: binary("The part of the blob the Range names, with Content-Range"),
            **problems(404, 416),
        },
    )
    async def download_blob(
        self, principal: CurrentPrincipal, session_id: FromPath[str], blob_id: FromPath[str], range: RangeHeader = None
    ) -> Stream:
        """The blob's bytes, streamed (Range gives 206), with its ETag (the sha256)."""
        found = await service.download(principal.workspace_id, session_id, blob_id, range_header=range)
        return ClosingStream(found.body(), status_code=found.status, headers=found.headers)

    @head(
        ONE_BLOB,
        media_type="application/octet-stream",
        responses={
            200: binary("The headers of the blob, without its bytes"),
            206: binary("The headers of that part of the blob"),
            **problems(404, 416),
        },
    )
    async def blob_headers(
        self, principal: CurrentPrincipal, session_id: FromPath[str], blob_id: FromPath[str], range: RangeHeader = None
    ) -> Response[None]:
        """The headers a GET of the blob would answer, without its bytes."""
        found = await service.download(principal.workspace_id, session_id, blob_id, range_header=range)
        # ``media_type`` only lets Litestar render the empty content (as JSON's null, sent as no body at all); the
        # Content-Type sent is the blob's, from ``headers``.
        return Response(None, status_code=found.status, headers=found.headers, media_type=MediaType.JSON)

    @delete(ONE_BLOB, status_code=HTTP_204_NO_CONTENT, responses=problems(404))
    async def delete_blob(self, principal: CurrentPrincipal, session_id: FromPath[str], blob_id: FromPath[str]) -> None:
        """Delete the blob; its bytes leave the session's count (entries that name it keep the id)."""
        await service.delete_blob(principal.workspace_id, session_id, blob_id)
