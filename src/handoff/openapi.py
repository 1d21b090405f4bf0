"""OpenAPI declarations shared by the controllers: the problem-details body and which statuses a route returns.

Declaring every status a route really answers keeps the schema honest, which is what schemathesis checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from handoff.errors import PROBLEM_JSON
from handoff.schemas import OutputModel

#: Litestar's description of a success response (HTTPStatus(200).description).
SUCCESS = "Request fulfilled, document follows"

_DESCRIPTIONS = {
    400: "Malformed JSON",
    401: "Missing, unknown, revoked or expired API key",
    404: "Not found in this workspace",
    408: "The request body did not arrive in time",
    409: "The resource's state forbids the operation",
    410: "Last-Event-ID can no longer be resumed from: re-read and subscribe afresh",
    413: "Body or field too large",
    416: "No byte of the blob is in the requested Range",
    422: "Invalid input",
    429: "Too many requests, or too many event streams for this key",
    503: "Database unavailable; retry after the Retry-After seconds",
}


class FieldErrorBody(OutputModel):
    """One invalid field."""

    field: str
    message: str


class ProblemDetails(OutputModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorBody] | None = None


def problems(*statuses: int, body: bool = False) -> dict[int, ResponseSpec]:
    """The error responses of a route: always 401, 422 and 503, plus ``statuses``; ``body`` adds 400, 408 and 413."""
    codes = {401, 422, 503, *statuses}
    if body:
        codes |= {400, 408, 413}
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS[code],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in sorted(codes)
    }


def retried(model: type[Any], description: str) -> dict[int, ResponseSpec]:
    """The ``200`` of a retry-safe create: a repeated id, external id or Idempotency-Key answers what is stored.

    Without it the schema would promise only ``201``, and a client (or schemathesis) retrying would see an
    undocumented status.
    """
    return {200: ResponseSpec(data_container=model, description=description, generate_examples=False)}


def shaped_as(model: type[OutputModel]) -> dict[int, ResponseSpec]:
    """The ``200`` of a route that answers the JSON-ready data of ``model`` rather than the model itself (the
    contexts, ``sessions/context_answers.py``): its schema is still the model's."""
    return {200: ResponseSpec(data_container=model, description=SUCCESS, generate_examples=False)}


def no_content(description: str) -> dict[int, ResponseSpec]:
    """A ``204`` that a route answers besides its usual status (a pop of an empty log)."""
    return {204: ResponseSpec(data_container=None, description=description, generate_examples=False)}


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose JSON body may be left out (session creation, ``/complete``, ``/fail``, ``/replay``).

    Litestar marks every request body required, even ``JSONBody[X | None] = None``; the route accepts no body,
    so the schema must say so, or a conforming client would be told to send one.
    """

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


OCTET_STREAM = "application/octet-stream"
#: The schema of a body of raw bytes.
BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


def binary(description: str) -> ResponseSpec:
    """A response of raw bytes (a blob's content; the schema names one type, the answer carries the stored one)."""
    return ResponseSpec(data_container=bytes, description=description, media_type=OCTET_STREAM, generate_examples=False)


EVENT_STREAM = "text/event-stream"


@dataclass
class ServerSentEventMessage:
    """One message of a ``text/event-stream`` body as a reader parses it (``data`` is the event's JSON as text)."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None


def event_stream(description: str) -> ResponseSpec:
    """A ``200`` of server-sent events: the schema is the one of each message (what SSE readers and OpenAPI
    3.2's ``itemSchema`` describe), not of the body as a whole."""
    return ResponseSpec(
        data_container=ServerSentEventMessage,
        description=description,
        media_type=EVENT_STREAM,
        generate_examples=False,
    )


@dataclass
class BinaryBodyOperation(Operation):
    """An operation whose body is raw bytes of any type, streamed by the handler rather than parsed (blob uploads).

    Litestar documents a body only for a ``data`` parameter, which would have it read the body whole; the route
    reads ``request.stream()`` instead, so its body is declared here. An empty body is a blob of 0 bytes.
    """

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={OCTET_STREAM: OpenAPIMediaType(schema=BINARY)},
            description="The bytes, of any Content-Type (stored as given; application/octet-stream when absent).",
            required=False,
        )
