"""What every HTTP request leaves behind: a request id, its metrics and (in JSON log mode) one access-log line.

:class:`RequestObserver` wraps the whole application, routing included. Litestar runs app-level middleware
only for requests that matched a route, so a middleware would never see a 404 for an unknown path or a 405;
the observer sits where Litestar itself puts its OpenTelemetry middleware, around the router
(:func:`observe_requests`), and so sees every answer, including those of other middleware (a 408, a 429).

Routes are labelled by their template (``/v1/sessions/{session_id}``, never the id), read from the scope
after the router filled it in; every request no route matched shares the label :data:`UNMATCHED`, so the label
set is closed whatever paths clients invent. Methods outside the standard ones are ``OTHER``.

The request id is the client's ``X-Request-Id`` when it is a short token (a proxy's id carries through),
otherwise a new one; it is on the scope's state for the error handler and comes back in the response's
``X-Request-Id``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from handoff import metrics
from handoff.ops.logs import ACCESS_LOGGER

UNMATCHED = "unmatched"
#: Status recorded when the client went away before any response started (nginx's "client closed request").
CLIENT_CLOSED = 499
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")

access_log = logging.getLogger(ACCESS_LOGGER)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _REQUEST_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def route_label(scope: Scope) -> str:
    """The route template the router matched for this request, or :data:`UNMATCHED`."""
    template: str | None = scope.get("path_template")
    return template or UNMATCHED


class RequestObserver:
    """ASGI wrapper: request id in and out, request metrics, and the JSON access line."""

    def __init__(self, app: ASGIApp, *, count: bool, log: bool) -> None:
        self.app = app
        self.count = count
        self.log = log
        # Children of the labelled metrics, looked up once per (method, route, status): the label tuple is a
        # closed set, and .labels() costs a lock and a validation on every call.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope["state"]["request_id"] = request_id
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(name.lower() == REQUEST_ID_HEADER for name, _ in headers):
                    headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        if self.count:
            metrics.http_requests_in_progress.inc()
        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            failed = True
            raise
        finally:
            if self.count:
                metrics.http_requests_in_progress.dec()
            seconds = time.perf_counter() - started
            self._record(scope, status or (500 if failed else CLIENT_CLOSED), seconds)

    def _record(self, scope: HTTPScope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in STANDARD_METHODS else "OTHER"
        route = route_label(scope)
        if self.count:
            key = (method, route, status)
            children = self._children.get(key)
            if children is None:
                labels = (method, route, str(status))
                children = (metrics.http_requests.labels(*labels), metrics.http_request_duration.labels(*labels))
                self._children[key] = children
            children[0].inc()
            children[1].observe(seconds)
        if self.log:
            principal = scope["state"].get("principal")
            fields = {
                "request_id": scope["state"]["request_id"],
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "workspace_id": getattr(principal, "workspace_id", None),
            }
            access_log.info("%s %s %d", method, route, status, extra={"fields": fields})


def observe_requests(app: Litestar, *, count: bool, log: bool) -> None:
    """Put a :class:`RequestObserver` around ``app``'s router, outside its exception handling and middleware."""
    app.asgi_handler = RequestObserver(app.asgi_handler, count=count, log=log)
