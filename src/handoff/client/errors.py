"""What the client raises: one exception per problem status, each carrying the problem's fields.

The service answers every error as RFC 9457 problem details; the client turns them back into values::

    HandoffClientError           any other status (a 500, an unexpected answer)
    ├── Unauthorized       401   no key, an unknown, revoked or expired key
    ├── NotFound           404   absent, or in another workspace
    ├── Conflict           409   the session has ended, is full, or the plan slug is taken
    ├── Gone               410   an event stream cannot resume from that Last-Event-ID: re-read, subscribe afresh
    ├── TooLarge           413   a body or a field over its limit
    ├── Invalid            400, 422   malformed or invalid input (``errors`` names the fields)
    ├── RateLimited        429   too many requests, or too many event streams for the key (``retry_after``)
    └── Unavailable        503   the database (or the service) is unreachable; raised after the retries,
                                 or for a connection that failed every attempt (``status`` is then None)

``retry_after`` carries the answer's ``Retry-After`` (seconds) when it had one.

These are the client's own classes (the server's ``handoff.errors`` are domain errors with an HTTP status;
they never cross the wire as types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field of a request, as the service reported it."""

    field: str
    message: str


class HandoffClientError(Exception):
    """A request the service refused or could not serve."""

    default_title: ClassVar[str] = "Request failed"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[FieldProblem] | None = None,
        type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.title = title or self.default_title
        self.detail = detail
        self.errors = errors or []
        self.type = type
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status} {self.title}" if self.status is not None else self.title
        text = f"{head}: {self.detail}" if self.detail else head
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        return text


class Unauthorized(HandoffClientError):
    """401: the API key is missing, unknown, revoked or expired."""

    default_title = "Unauthorized"


class NotFound(HandoffClientError):
    """404: no such session or plan in this workspace."""

    default_title = "Not found"


class Conflict(HandoffClientError):
    """409: the resource's state forbids the operation (an ended or full session, a taken slug)."""

    default_title = "Conflict"


class Gone(HandoffClientError):
    """410: the event stream cannot resume from that ``Last-Event-ID``; re-read the session, subscribe afresh."""

    default_title = "Gone"


class TooLarge(HandoffClientError):
    """413: a body or one field is over the service's limit."""

    default_title = "Content too large"


class Invalid(HandoffClientError):
    """400 or 422: the request is malformed or breaks a rule; ``errors`` lists the fields."""

    default_title = "Invalid input"


class RateLimited(HandoffClientError):
    """429: too many requests per second, or more open event streams than the key may hold."""

    default_title = "Too many requests"


class Unavailable(HandoffClientError):
    """503 (or no connection at all) after every retry: try again later."""

    default_title = "Service unavailable"


_BY_STATUS: dict[int, type[HandoffClientError]] = {
    400: Invalid,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    422: Invalid,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_from_problem(
    status: int, body: Any, *, fallback_text: str = "", retry_after: float | None = None
) -> HandoffClientError:
    """The typed exception for a status and its (problem+json) body; tolerant of non-problem bodies."""
    cls = _BY_STATUS.get(status, HandoffClientError)
    if not isinstance(body, dict):
        return cls(fallback_text.strip()[:500] or f"HTTP {status}", status=status, retry_after=retry_after)
    errors = [
        FieldProblem(field=str(item.get("field", "?")), message=str(item.get("message", "")))
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    return cls(
        str(body.get("detail") or body.get("title") or f"HTTP {status}"),
        status=status,
        title=body.get("title") if isinstance(body.get("title"), str) else None,
        errors=errors,
        type=body.get("type") if isinstance(body.get("type"), str) else None,
        retry_after=retry_after,
    )


__all__ = [
    "Conflict",
    "FieldProblem",
    "Gone",
    "HandoffClientError",
    "Invalid",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "error_from_problem",
]
