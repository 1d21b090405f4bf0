"""Subscriptions to the session resource: a ``notifications/resources/updated`` each time the session changes.

The MCP SDK has two ways to ask, one per protocol era, and both are served here with one follower per session:

- ``subscriptions/listen`` (protocol 2026-07-28, what the SDK's client negotiates by default): the listen
  request's response is the stream, and it lasts as long as that request. Every transport that carries a
  response stream serves it: ``handoff mcp`` (stdio) and the service's stateless streamable HTTP ``/mcp`` (the
  SDK answers a listen request as server-sent events even where the other answers are JSON), so any worker
  serves it and the tool calls stay stateless. :class:`ListenStreams` replaces the SDK's own ``ListenHandler``,
  whose one bus for all clients would hand a URI's updates to every listener of that URI, whatever its workspace.
- ``resources/subscribe`` / ``resources/unsubscribe`` (protocol 2025-11-25 and before): the subscription outlives
  its request and the notification is pushed on the connection. Only ``handoff mcp`` serves it
  (:class:`ConnectionSubscriptions`: one client, one process); the service's ``/mcp`` keeps no connection between
  requests to push on (see the README's MCP section), so it does not advertise ``subscribe`` to those clients.

What follows a session is the backend's ``events(session_id)``: in the service, the app's events hub through
:func:`handoff.events.follow.follow` (what ``handoff tail`` reads); from ``handoff mcp``, the client's
``events()`` (the service's SSE route, resumed with ``Last-Event-ID``). Either checks first that the session is
the caller's workspace's: another workspace's session is not found, so it is never followed and never notifies.
A subscription is answered only once its follower is open, so a write made after the answer always notifies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, ResourceUpdated, event_to_notification
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from handoff.client.errors import HandoffClientError
from handoff.client.errors import NotFound as ClientNotFound
from handoff.errors import HandoffError
from handoff.errors import NotFound as DomainNotFound
from handoff.mcp.backend import HandoffBackend, problem_text
from handoff.mcp.tooling import BackendResolver

logger = logging.getLogger("handoff.mcp")

#: The URIs of the session resource (``handoff://sessions/{session_id}``), the one resource that can be subscribed.
SESSION_URI = re.compile(r"^handoff://sessions/(?P<session_id>[^/]+)$")
NOT_SUBSCRIBABLE = "only the session resource (handoff://sessions/{{session_id}}) can be subscribed to, not {uri}"

RequestContext = ServerRequestContext[Any, Any]


def session_of(uri: str) -> str | None:
    """The session a session resource's URI names; ``None`` for any other URI."""
    found = SESSION_URI.match(uri)
    return None if found is None else found["session_id"]


async def follow_changes(
    backend: HandoffBackend, session_id: str, changed: Callable[[], Awaitable[None]], opened: Callable[[], None]
) -> None:
    """Await ``changed()`` after each change of the session, until it is deleted (or the server stops).

    ``opened()`` is called (maybe from another task) each time the session is followed from then on; before the
    first time, a session the backend does not find (another workspace's, or none) raises its ``NotFound``.
    """
    events = backend.events(session_id, on_open=opened)
    try:
        async for event in events:
            await changed()
            if event.type == "session.deleted":
                return
    finally:
        aclose: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class Follower:
    """One session followed in a task group, which :meth:`start` returns from once it is open.

    The backend may call ``on_open`` from a task of its own (the service's stream runs under
    :func:`~handoff.ops.shutdown.until_shutdown`), so the opening is told through an event, not anyio's
    ``task_status``. :attr:`scope` cancels it.
    """

    def __init__(self, backend: HandoffBackend, session_id: str, changed: Callable[[], Awaitable[None]]) -> None:
        self.backend = backend
        self.session_id = session_id
        self.changed = changed
        self.scope = anyio.CancelScope()
        self.is_open = False
        self._ready = anyio.Event()
        self._error: Exception | None = None

    async def start(self, group: anyio.abc.TaskGroup, *, ended: Callable[[], None], contain: bool) -> None:
        """Run in ``group`` and return once open, or raise what stopped it before; ``ended()`` runs when it ends.

        ``contain``: an error after the opening is logged and ends this follower only (else it goes to ``group``).
        """
        group.start_soon(self._run, ended, contain)
        await self._ready.wait()
        if self._error is not None:
            raise self._error

    def _opened(self) -> None:
        self.is_open = True
        self._ready.set()

    async def _run(self, ended: Callable[[], None], contain: bool) -> None:
        try:
            with self.scope:
                await follow_changes(self.backend, self.session_id, self.changed, self._opened)
        except Exception as exc:
            if not self.is_open:
                self._error = exc
            elif not contain:
                raise
            else:
                logger.warning("following session %s failed; its subscription ends", self.session_id, exc_info=True)
        finally:
            self._ready.set()
            ended()


def _refused(exc: HandoffClientError | HandoffError) -> MCPError:
    """A refusal of the backend as the JSON-RPC error a client reads (``404 Not found: ...`` as invalid params)."""
    code = INVALID_PARAMS if isinstance(exc, ClientNotFound | DomainNotFound) else INTERNAL_ERROR
    return MCPError(code=code, message=problem_text(exc))


class ListenStreams:
    """Serves ``subscriptions/listen``: one request is one stream of updates of the sessions it names.

    The acknowledgement honours the session URIs of the caller's workspace (the others are left out of it: not
    found, never notified) and no list-changed kind (the lists of tools, prompts and resources never change).
    Updates are coalesced per URI while the stream is busy writing (a level trigger: "read it again"). The
    stream ends when the client closes it, or gracefully once no honoured session is left to follow (each
    follower ends when its session is deleted or the server shuts down).
    """

    def __init__(self, server: MCPServer, backend_for: BackendResolver) -> None:
        self.server = server
        self.backend_for = backend_for

    async def __call__(
        self, ctx: RequestContext, params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        backend = self.backend_for(Context(request_context=ctx, mcp_server=self.server))
        requested = dict.fromkeys(params.notifications.resource_subscriptions or ())
        # Each URI is queued at most once until it is sent, so the buffer never fills.
        send, receive = anyio.create_memory_object_stream[str](max(len(requested), 1))
        queued: set[str] = set()
        async with anyio.create_task_group() as followers, receive:
            with send:  # each follower holds a clone: the stream ends when the last of them does
                honored = [
                    uri
                    for uri in requested
                    if await self._start(followers, backend, uri, send.clone(), queued) is not None
                ]
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=SubscriptionFilter(resource_subscriptions=honored or None), _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            async for uri in receive:
                queued.discard(uri)
                notification = event_to_notification(ResourceUpdated(uri=uri), meta)
                await ctx.session.send_notification(notification, related_request_id=subscription_id)
        return SubscriptionsListenResult(_meta=meta)

    @staticmethod
    async def _start(
        followers: anyio.abc.TaskGroup,
        backend: HandoffBackend,
        uri: str,
        send: MemoryObjectSendStream[str],
        queued: set[str],
    ) -> str | None:
        """Follow the session of ``uri`` in ``followers``, queueing ``uri`` on ``send`` after each change; ``None``
        (and ``send`` closed) when it names no session of the caller's workspace."""
        session_id = session_of(uri)
        if session_id is None:
            send.close()
            return None

        async def changed() -> None:
            if uri not in queued:
                queued.add(uri)
                send.send_nowait(uri)

        try:
            await Follower(backend, session_id, changed).start(followers, ended=send.close, contain=False)
        except (ClientNotFound, DomainNotFound):
            return None
        except (HandoffClientError, HandoffError) as exc:
            raise _refused(exc) from exc
        return uri


class ConnectionSubscriptions:
    """``resources/subscribe`` of one connection: a follower per subscribed URI, for as long as :meth:`running`.

    For ``handoff mcp`` only (stdio: the process serves one client, so the subscriptions end with it). A follower
    that fails after it started (the service unreachable past the client's retries) is logged and dropped: it must
    not take the server down with it.
    """

    def __init__(self) -> None:
        self._followers: dict[str, Follower] = {}
        self._group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep the followers while the server runs; leaving cancels every one of them."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                group.cancel_scope.cancel()

    def register(self, server: MCPServer, backend_for: BackendResolver) -> None:
        """Serve ``resources/subscribe`` and ``resources/unsubscribe`` on ``server`` (which then advertises
        ``subscribe`` to clients of the 2025 protocol versions)."""

        async def subscribe(ctx: RequestContext, params: SubscribeRequestParams) -> EmptyResult:
            backend = backend_for(Context(request_context=ctx, mcp_server=server))
            await self.subscribe(backend, ctx.session, params.uri)
            return EmptyResult()

        async def unsubscribe(_ctx: RequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
            self.unsubscribe(params.uri)
            return EmptyResult()

        # The SDK's way to serve a method the 2026 protocol removed: MCPServer has no decorator for it.
        server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    async def subscribe(self, backend: HandoffBackend, session: ServerSession, uri: str) -> None:
        """Follow the session ``uri`` names, notifying ``session``; returns once it is followed (idempotent)."""
        session_id = session_of(uri)
        if session_id is None:
            raise MCPError(INVALID_PARAMS, NOT_SUBSCRIBABLE.format(uri=uri))
        if uri in self._followers:
            return
        if self._group is None:  # pragma: no cover - a request outside the server's run
            raise MCPError(INTERNAL_ERROR, "the server is not running")

        async def notify() -> None:
            await session.send_resource_updated(uri)

        follower = Follower(backend, session_id, notify)

        def forget() -> None:
            if self._followers.get(uri) is follower:
                del self._followers[uri]

        self._followers[uri] = follower
        try:
            await follower.start(self._group, ended=forget, contain=True)
        except (HandoffClientError, HandoffError) as exc:
            raise _refused(exc) from exc

    def unsubscribe(self, uri: str) -> None:
        """Stop following ``uri`` (nothing is sent for it once this returns); unknown URIs are ignored."""
        follower = self._followers.pop(uri, None)
        if follower is not None:
            follower.scope.cancel()


def register_listen(server: MCPServer, backend_for: BackendResolver) -> None:
    """Serve ``subscriptions/listen`` on ``server`` with :class:`ListenStreams` (built with ``subscriptions=False``,
    so the SDK's own handler is not there)."""
    server._lowlevel_server.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, ListenStreams(server, backend_for)
    )
