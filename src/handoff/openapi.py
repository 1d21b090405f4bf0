"""OpenAPI declarations shared by the controllers: the problem-details body and which statuses a route returns.

Declaring every status a route really answers keeps the schema honest, which is what schemathesis checks.
"""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from handoff.errors import PROBLEM_JSON
from handoff.schemas import OutputModel

_DESCRIPTIONS = {
    400: "Malformed JSON",
    401: "Missing, unknown, revoked or expired API key",
    404: "Not found in this workspace",
    409: "The resource's state forbids the operation",
    413: "Body or field too large",
    422: "Invalid input",
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
    """The error responses of a route: always 401, 422 and 503, plus ``statuses``; ``body`` adds 400 and 413."""
    codes = {401, 422, 503, *statuses}
    if body:
        codes |= {400, 413}
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS[code],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in sorted(codes)
    }
