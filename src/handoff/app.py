"""The application factory.

``create_app`` wires settings, the database, the auth guard, the controllers, the ``/mcp`` endpoint (the MCP
tools over streamable HTTP, same keys) and the one error handler into a Litestar app. Its lifespan opens the
database (the configured server, or the bundled one) and closes it, and runs the MCP session manager;
tests inject an already-initialised database, which the app then neither opens nor closes. Metrics, traces,
logs, the request deadline and the shutdown signal come from :class:`handoff.ops.Operations`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import SerializationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from handoff import __version__
from handoff.analytics.rollup import worker as artifacts_rollup
from handoff.auth import KeyCache, api_key_guard, provide_principal
from handoff.claims import sweep as claim_sweep
from handoff.config import Settings, get_settings
from handoff.db import MongoDatabase, create_client, init_database, mongodb_url
from handoff.errors import handle_exception
from handoff.events import running as events_running
from handoff.health import HealthController
from handoff.ops import Operations
from handoff.ops.logs import configure_logging
from handoff.ratelimit.middleware import RateLimitMiddleware, limiter_for
from handoff.retention import worker as retention
from handoff.timeouts import BodyTimeoutMiddleware

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class JsonRequest(Request[Any, Any, State]):
    """A request whose JSON body is too deeply nested or not UTF-8 is a 400, like any other malformed JSON.

    msgspec decodes recursively and raises ``RecursionError`` past Python's recursion limit (about 1,000
    levels), and ``UnicodeDecodeError`` for invalid UTF-8 inside a string; Litestar turns only its
    ``DecodeError`` into a 400, so either would be a 500.
    """

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError as exc:
            raise SerializationException("JSON is nested too deeply to decode") from exc
        except UnicodeDecodeError as exc:  # msgspec validates UTF-8 in strings only as it decodes them
            raise SerializationException(f"the body is not valid UTF-8 (byte {exc.start})") from exc


def _v1_router() -> Router:
    from handoff.analytics.controller import AnalyticsController  # noqa: PLC0415 - avoids an import cycle at load
    from handoff.blobs.controller import BlobController  # noqa: PLC0415
    from handoff.claims.controller import ClaimController  # noqa: PLC0415
    from handoff.events.controller import EventController  # noqa: PLC0415
    from handoff.plans.controller import PlanController  # noqa: PLC0415
    from handoff.sessions.controller import SessionController  # noqa: PLC0415

    return Router(
        path="/v1",
        route_handlers=[
            SessionController,
            BlobController,
            PlanController,
            AnalyticsController,
            EventController,
            ClaimController,
        ],
        guards=[api_key_guard],
        dependencies={"principal": Provide(provide_principal, sync_to_thread=False)},
        security=[{"bearer": []}],
    )


def create_app(
    settings: Settings | None = None,
    *,
    database: MongoDatabase | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Litestar:
    """Build the API; with ``database`` given, reuse it instead of connecting; ``tracer_provider`` turns tracing on."""
    settings = settings or get_settings()
    configure_logging(settings)
    ops = Operations(settings, tracer_provider=tracer_provider)
    from handoff import ui  # noqa: PLC0415 - imports the domain services, like _v1_router
    from handoff.mcp.http import McpEndpoint  # noqa: PLC0415

    mcp = McpEndpoint(settings)
    limiter = limiter_for(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(ops.running(app))
            if limiter is not None:
                limiter.open()
                stack.callback(limiter.close)
            if database is None:
                url = stack.enter_context(mongodb_url(settings))
                client = create_client(url, settings, event_listeners=ops.command_listeners)
                stack.push_async_callback(client.close)
                app.state.database = await init_database(client, settings.database)
            else:
                app.state.database = database
            await stack.enter_async_context(mcp.running())
            await stack.enter_async_context(retention.running(settings))
            await stack.enter_async_context(claim_sweep.running(settings))
            await stack.enter_async_context(artifacts_rollup.running(settings))
            await stack.enter_async_context(events_running(app, settings))
            yield

    app = Litestar(
        route_handlers=[HealthController, _v1_router(), mcp.route(), *ops.route_handlers, *ui.routers(settings)],
        template_config=ui.template_config(),
        lifespan=[lifespan],
        exception_handlers={Exception: handle_exception},
        middleware=[
            *([RateLimitMiddleware(limiter)] if limiter is not None else []),
            BodyTimeoutMiddleware(
                settings.request_body_timeout_seconds,
                streamed_bytes_per_second=settings.blob_upload_min_bytes_per_second,
            ),
            *ops.middleware,
        ],
        plugins=ops.plugins,
        request_max_body_size=settings.max_body_bytes,
        request_class=JsonRequest,
        state=State({"settings": settings, "key_cache": KeyCache(settings.api_key_cache_seconds)}),
        openapi_config=OpenAPIConfig(
            title="handoff",
            version=__version__,
            description="The working memory of AI agents: sessions, work logs, artifacts, handoffs and replay.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="A workspace API key.")
                }
            ),
        ),
        debug=False,
    )
    ops.observe(app)
    return app
