"""The service's ``/mcp`` endpoint: the MCP tools over streamable HTTP, behind the same API keys as ``/v1``.

The Litestar route is an ASGI mount guarded by :func:`handoff.auth.api_key_guard` (no key, a bad key: the usual
401 problem+json). It puts a :class:`~handoff.mcp.backend.ServiceBackend` for the key's principal on the ASGI
scope and hands the request to the SDK's session manager; the tools find the backend on the request the SDK
attaches to their context, so every tool call runs the domain services as that workspace.

The manager runs *stateless* with JSON answers: every request carries its own key and nothing is kept between
requests, so any worker of a multi-process deployment can serve any call (no sticky MCP sessions to route).
For the same reason the session resource is subscribable here with ``subscriptions/listen`` only (the listen
request's own response is the stream, fed by this worker's events hub), not with the 2025 protocol's
``resources/subscribe``, which needs a connection kept between requests to push on (``handoff.mcp.subscriptions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Literal

from litestar import asgi
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from handoff.auth import api_key_guard, provide_principal
from handoff.config import Settings
from handoff.errors import Unavailable
from handoff.mcp.backend import HandoffBackend, ServiceBackend
from handoff.mcp.server import build_server

MCP_PATH = "/mcp"
BACKEND_SCOPE_KEY = "handoff.mcp.backend"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def backend_from_request(ctx: Context) -> HandoffBackend:
    """The backend the ``/mcp`` route put on this request's scope."""
    request: Any = ctx.request_context.request
    scope = getattr(request, "scope", None)
    backend = scope.get(BACKEND_SCOPE_KEY) if isinstance(scope, dict) else None
    if backend is None:  # pragma: no cover - only reachable by mounting the server without the route
        raise ToolError("401 Unauthorized: this MCP endpoint needs an API key")
    backend_for_request: HandoffBackend = backend
    return backend_for_request


@lru_cache(maxsize=4)
def service_server(log_level: LogLevel) -> MCPServer:
    """The service's MCP server, built once per process (registering the tools costs tens of milliseconds).

    Apps can share it: it holds no per-app state (the tools find their backend on each request, and each
    :class:`McpEndpoint` keeps the session manager it started).
    """
    return build_server(backend_from_request, log_level=log_level)


class McpEndpoint:
    """The MCP server of one app, its session manager (one per lifespan) and its Litestar route."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = service_server(settings.log_level)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run a fresh session manager for the length of the app's lifespan.

        The manager lives in a task of its own: its anyio task group must be entered and left in one task,
        and a lifespan may be entered and left in two (pytest fixtures do exactly that).
        """
        # The SDK builds a new session manager with each streamable-HTTP app; we keep the manager and call it
        # from our own route (behind our auth), so the Starlette app itself is not used. The manager is read
        # right away, with no await in between: the server is shared, and another app's lifespan replaces it.
        self.server.streamable_http_app(
            json_response=True,
            stateless_http=True,
            max_request_body_size=self.settings.max_body_bytes,
            # Host/Origin checks guard unauthenticated local servers; this endpoint requires an API key.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = self.server.session_manager
        started, stop = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            try:
                async with manager.run():
                    self._manager = manager
                    started.set()
                    await stop.wait()
            finally:
                self._manager = None
                started.set()

        holder = asyncio.create_task(hold(), name="handoff-mcp-session-manager")
        await started.wait()
        if holder.done():
            holder.result()  # the manager failed to start: raise its error
        try:
            yield
        finally:
            stop.set()
            await holder

    def route(self) -> ASGIRouteHandler:
        """The ``/mcp`` mount, behind the API-key guard."""
        settings = self.settings

        @asgi(MCP_PATH, is_mount=True, guards=[api_key_guard], copy_scope=True, name="mcp")
        async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] != "/":  # a mount matches by prefix: /mcpx and /mcp/anything are not this endpoint
                raise NotFoundException(f"no route {scope['raw_path'].decode(errors='replace')}")
            manager = self._manager
            if manager is None:  # pragma: no cover - a request outside the lifespan
                raise Unavailable("the MCP endpoint is not running")
            connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive, send)
            state = connection.app.state
            backend = ServiceBackend(
                provide_principal(connection), settings, hub=state.get("events"), shutdown=state.get("shutdown")
            )
            scope[BACKEND_SCOPE_KEY] = backend  # type: ignore[literal-required]
            await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

        return mcp_endpoint
