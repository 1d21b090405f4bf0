"""The service's one error tree and the one place that turns errors into RFC 9457 problem details.

Domain code raises values with a status; it never builds HTTP responses. The tree::

    HandoffError                     500  something the service did not expect
    ├── ClientDisconnected           400  the client went away while sending its body (nobody reads the answer)
    ├── Unauthorized                 401  no key, an unknown, revoked or expired key
    ├── NotFound                     404  absent, or in another workspace (indistinguishable on purpose)
    ├── RequestTimeout               408  the request body did not arrive in time
    ├── Gone                         410  an event stream's Last-Event-ID is too old (or not one) to resume from
    ├── Conflict                     409  the resource's state forbids the operation
    │   ├── SessionEnded             409  completed/failed sessions accept nothing more
    │   ├── SessionFull              409  the document would pass MongoDB's 16 MiB limit
    │   └── QuotaExceeded            409  the workspace is at a quota (stored bytes, sessions); the detail names it
    ├── TooLarge                     413  a body or a field over its configured limit
    ├── RangeNotSatisfiable          416  a Range that no byte of the blob satisfies (with Content-Range)
    ├── Invalid                      422  well-formed but invalid input (optionally with field errors)
    ├── RateLimited                  429  the key is over HANDOFF_RATE_LIMIT (Retry-After, RateLimit-* headers),
    │                                     or holds HANDOFF_MAX_STREAMS_PER_KEY event streams already
    └── Unavailable                  503  no primary, no server, a timeout: retry later

PyMongo's connection-level errors, and its timeouts (the request deadline of ``handoff.ops.deadline`` running
out), are translated to ``Unavailable`` here too, so a failover or a frozen database is a 503 with
``Retry-After`` and never a 500; each is counted by its class in ``handoff_mongodb_errors_total``. Litestar's
own HTTP exceptions (malformed JSON, unknown route, wrong method, an oversized body, validation) go through the
same renderer so every error has one shape.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from handoff import metrics

logger = logging.getLogger("handoff.errors")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field of a request, as reported in a problem's ``errors`` list."""

    field: str
    message: str


class HandoffError(Exception):
    """Base of every error the domain raises; carries the HTTP status it maps to."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    #: Response headers that belong to this kind of error.
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def response_headers(self) -> dict[str, str]:
        """The headers of this error's response: the kind's own, plus any this instance adds."""
        return dict(self.headers)


class ClientDisconnected(HandoffError):
    """The client closed the connection before its request body had arrived.

    No one reads the answer; it exists so that the request ends as the client's doing (a 4xx, not logged as a
    failure of the service) once whatever the request had begun to store has been removed.
    """

    status_code = 400
    title = "Client disconnected"


class Unauthorized(HandoffError):
    """The request carries no valid API key."""

    status_code = 401
    title = "Unauthorized"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="handoff"'}


class NotFound(HandoffError):
    """The resource does not exist in the caller's workspace."""

    status_code = 404
    title = "Not found"


class RequestTimeout(HandoffError):
    """The client did not send its request body in time (it stalled, or trickles)."""

    status_code = 408
    title = "Request timeout"
    #: The rest of the body may still arrive: the connection cannot carry another request, so it is closed.
    headers: ClassVar[Mapping[str, str]] = {"Connection": "close"}


class Gone(HandoffError):
    """What the client asked to continue from no longer exists (an event stream's resume point past the oplog)."""

    status_code = 410
    title = "Gone"


class Conflict(HandoffError):
    """The resource's current state forbids the operation."""

    status_code = 409
    title = "Conflict"


class SessionEnded(Conflict):
    """The session is completed or failed; replay continues it."""

    title = "Session has ended"


class SessionFull(Conflict):
    """The session document has no room left under MongoDB's document size limit."""

    title = "Session is full"


class QuotaExceeded(Conflict):
    """The workspace holds as much as its quota allows; the detail names the quota (its setting)."""

    title = "Workspace quota exceeded"


class TooLarge(HandoffError):
    """A body or a field is over its configured limit."""

    status_code = 413
    title = "Content too large"


class RangeNotSatisfiable(HandoffError):
    """A ``Range`` no byte of the resource satisfies; the answer says how long the resource is (RFC 9110 15.5.17)."""

    status_code = 416
    title = "Range not satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail)
        self.size = size

    def response_headers(self) -> dict[str, str]:
        return {**super().response_headers(), "Content-Range": f"bytes */{self.size}"}


class Invalid(HandoffError):
    """The input is well-formed but breaks a rule."""

    status_code = 422
    title = "Invalid input"


class RateLimited(HandoffError):
    """The API key made more requests than its rate limit allows; retry after the time its headers say."""

    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, headers: Mapping[str, str]) -> None:
        super().__init__(detail)
        self._headers = dict(headers)

    def response_headers(self) -> dict[str, str]:
        return {**super().response_headers(), **self._headers}


class Unavailable(HandoffError):
    """The database cannot serve the request right now; the client should retry."""

    status_code = 503
    title = "Service unavailable"
    headers: ClassVar[Mapping[str, str]] = {"Retry-After": str(RETRY_AFTER_SECONDS)}


#: PyMongo errors that mean "the database is not reachable or has no primary right now". A
#: ``WriteConcernError`` may or may not have applied: the client's retry with the same id settles it.
UNAVAILABLE_ERRORS: tuple[type[PyMongoError], ...] = (
    # AutoReconnect, NotPrimaryError, ServerSelectionTimeoutError, NetworkTimeout, WaitQueueTimeoutError
    ConnectionFailure,
    ExecutionTimeout,
    WriteConcernError,
)


#: Server error codes that mean "busy now, retry later" without being a connection error:
#: TemporarilyUnavailable (365), returned when the storage engine's cache is under too much pressure to take the
#: write. The write was not applied, so the retry is safe.
UNAVAILABLE_SERVER_CODES = frozenset({365})


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """Render one RFC 9457 problem-details response."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"https://handoff.dev/problems/{status}",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _has_body(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


def _validation_errors(exc: ValidationException, request: Request[Any, Any, Any]) -> list[FieldError]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    found: list[FieldError] = []
    for item in extra:
        if isinstance(item, dict):
            field = str(item.get("key") or item.get("source") or "body")
            message = str(item.get("message", "invalid"))
            if field == "data":  # Litestar's name for the whole body; a missing one reads "'data'"
                field = "body"
                message = message if _has_body(request) else "a JSON body is required"
            found.append(FieldError(field=field, message=message))
    return found or [FieldError(field="body", message=exc.detail)]


def handle_exception(  # noqa: PLR0911 - one branch per kind of error, each a return
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """The one exception handler: every error leaves the service as problem+json."""
    if isinstance(exc, HandoffError):
        if exc.status_code >= 500 and not isinstance(exc, Unavailable):
            return _internal_error(request, exc)
        return problem_response(
            exc.status_code, exc.detail, title=exc.title, errors=exc.errors, headers=exc.response_headers() or None
        )
    if isinstance(exc, ValidationException):
        return problem_response(
            422, "The request is not valid: see errors.", title="Invalid input", errors=_validation_errors(exc, request)
        )
    if isinstance(exc, HTTPException):
        if exc.status_code >= 500:
            return _internal_error(request, exc)
        return problem_response(exc.status_code, exc.detail, headers=exc.headers)
    if isinstance(exc, PyMongoError):
        metrics.mongodb_error(type(exc).__name__)
    if is_unavailable(exc):
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            "The database is unavailable or electing a primary; retry the request (appends are idempotent by id).",
            title=Unavailable.title,
            headers=dict(Unavailable.headers),
        )
    return _internal_error(request, exc)


def is_unavailable(exc: Exception) -> bool:
    """The database cannot serve now: unreachable, no primary, busy, or out of the request's time."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    if isinstance(exc, OperationFailure) and exc.code in UNAVAILABLE_SERVER_CODES:
        return True
    return isinstance(exc, PyMongoError) and exc.timeout  # a client-side operation timeout, whatever its class


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    logger.error("request %s failed: %s %s", request_id, request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        f"An unexpected error occurred; it was logged with request id {request_id}.",
        headers={"X-Request-Id": request_id},
    )


__all__ = [
    "PROBLEM_JSON",
    "ClientDisconnected",
    "Conflict",
    "FieldError",
    "HandoffError",
    "Invalid",
    "NotFound",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "RateLimited",
    "RequestTimeout",
    "SessionEnded",
    "SessionFull",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "handle_exception",
    "is_unavailable",
    "problem_response",
]
