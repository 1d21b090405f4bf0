"""What both clients' ``events()`` share: the typed event, and one subscription's state across its connections.

The service's streams end for ordinary reasons: a consumer too slow for its queue gets a final ``event: error``,
a server shutting down sends a ``retry:`` hint, a restart or a proxy cuts the connection, a busy service answers
``503``/``429`` with ``Retry-After``. Each time, the subscription connects again with the ``Last-Event-ID`` of the
last event it handed out, and the service resumes exactly after it (every event once, in order). What cannot be
waited out is raised: ``410`` (:class:`~handoff.client.errors.Gone`: re-read the session, subscribe afresh),
``401``, ``404``, ``422``, or too many failed attempts in a row.

Like :func:`handoff.client._core.execute`, this is sans-I/O: :class:`Subscription` builds each request and says
how long to wait before the next, and the clients only connect, read and sleep. Parsing the stream is
`httpx-sse <https://pypi.org/project/httpx-sse/>`_'s (its ``EventSource``), which yields each message once its
blank line arrives.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, SSEError

from handoff.client._core import Call, RequestSpec, RetryPolicy, _seg
from handoff.client.errors import HandoffClientError

#: Statuses a subscription waits out (with the answer's ``Retry-After``, within the policy's cap) and retries.
RECONNECT_STATUSES = frozenset({429, 502, 503, 504})
#: Seconds before reconnecting after a stream that ended normally (the server closed it, without a ``retry:``).
RECONNECT_DELAY_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a session: its resume token ``id``, its ``type`` (``work_log.appended``...) and its JSON."""

    id: str
    type: str
    data: dict[str, Any]

    @property
    def session_id(self) -> str:
        return str(self.data.get("session_id", ""))


class Subscription:
    """One ``events()`` iteration: the request of each connection and the waits between them.

    ``max_reconnects`` bounds the failed attempts *in a row* (a connection that opens resets the count); the
    waits grow as the client's :class:`RetryPolicy` says, capped at its ``backoff_max``.
    """

    def __init__(
        self,
        *,
        session_id: str | None,
        types: Collection[str] | None,
        last_event_id: str | None,
        agent_type: str | None,
        policy: RetryPolicy,
        max_reconnects: int,
    ) -> None:
        self.session_id = session_id
        self.types = ",".join(types) if types else None
        self.agent_type = agent_type
        self.last_event_id = last_event_id
        self.policy = policy
        self.max_reconnects = max_reconnects
        self.failures = 0
        self._retry_hint: float | None = None
        self._delivered = 0  # events handed out on the current connection
        self._empty_drops = 0  # drops in a row of connections that handed out nothing
        #: Why the service last ended the stream (its ``event: error`` detail), for the error raised if it gives up.
        self.reason: str | None = None

    def call(self) -> Call[httpx.Response]:
        """The request of the next connection: the session's route (its ``404``), else the workspace's."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        if self.session_id is not None and self.agent_type is None:
            path = f"/v1/sessions/{_seg(self.session_id)}/events"
            spec = RequestSpec("GET", path, {"types": self.types}, headers=headers)
        else:
            params = {"session_id": self.session_id, "agent_type": self.agent_type, "types": self.types}
            spec = RequestSpec("GET", "/v1/events", params, headers=headers)
        # Not retried by the call itself: the subscription owns every reconnect (429 included, Retry-After honoured).
        return Call(spec, lambda response: response, retry=False)

    def opened(self) -> None:
        """The stream answered ``200``: the next failure is the first of a new run."""
        self.failures = 0
        self._retry_hint = None
        self._delivered = 0
        self.reason = None

    def read(self, message: ServerSentEvent) -> Event | None:
        """The event a message carries, remembered as the resume point; ``None`` for the stream's own messages."""
        if message.retry is not None:
            self._retry_hint = message.retry / 1000
        if message.event == "error":
            self.reason = _detail(message.data)
            return None
        if message.event == "message" or not message.data:  # a retry hint, or a keep-alive after an event
            return None
        self.last_event_id = message.id
        self._delivered += 1
        self._empty_drops = 0
        return Event(id=message.id, type=message.event, data=json.loads(message.data))

    def ended(self) -> float:
        """The service closed the stream (dropped as too slow, or shutting down): seconds before reconnecting.

        A drop (``event: error`` without a shutdown's ``retry:``) of a connection that handed out nothing counts
        toward ``max_reconnects``: a stream dropped again and again before its first event backs off, then raises.
        """
        hint, self._retry_hint = self._retry_hint, None
        if hint is None and self.reason is not None and not self._delivered:
            if self._empty_drops >= self.max_reconnects:
                raise HandoffClientError(f"the event stream was dropped {self._empty_drops + 1} times: {self.reason}")
            self._empty_drops += 1
            return self.policy.delay(self._empty_drops - 1)
        return hint if hint is not None else RECONNECT_DELAY_SECONDS

    def lost(self, exc: HandoffClientError | httpx.TransportError) -> float:
        """The connection failed or was refused: seconds before the next attempt, or ``exc`` raised again."""
        if isinstance(exc, SSEError):  # a 200 that is not an event stream: not something a retry fixes
            raise HandoffClientError(f"the events route did not answer an event stream: {exc}") from exc
        if isinstance(exc, HandoffClientError) and exc.status is not None and exc.status not in RECONNECT_STATUSES:
            raise exc
        if self.failures >= self.max_reconnects:
            if isinstance(exc, HandoffClientError):
                raise exc
            reason = f" (last: {self.reason})" if self.reason else ""
            raise HandoffClientError(
                f"the event stream failed {self.failures + 1} times in a row: {type(exc).__name__}: {exc}{reason}"
            ) from exc
        retry_after = exc.retry_after if isinstance(exc, HandoffClientError) else None
        delay = self.policy.delay(self.failures, retry_after)
        self.failures += 1
        return delay


def _detail(data: str) -> str:
    try:
        value = json.loads(data)
    except ValueError:
        return data
    return str(value.get("detail", data)) if isinstance(value, dict) else data
