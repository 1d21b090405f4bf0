"""OpenTelemetry traces: one server span per request, named by route template, with a child span per MongoDB command.

Imported only when tracing is on (the ``opentelemetry`` extra installed and ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, or a tracer provider handed to :func:`handoff.app.create_app`); nothing here is imported otherwise, and
the request path carries no tracing code at all.

* The server spans come from Litestar's ``OpenTelemetryPlugin`` (OpenTelemetry's ASGI middleware around the
  router). It names a span when the request arrives, before routing, so it starts as just the method (the
  semantic conventions' name when no route is known, and what an unknown path keeps); :class:`RouteSpanName`,
  which runs once the route is known, renames it ``"POST /v1/sessions/{session_id}/work-log"`` and sets
  ``http.route``, plus ``handoff.workspace_id`` once the key is resolved. The per-message ``receive``/``send``
  spans are left out: one per ASGI message is noise.
* The MongoDB spans come from ``opentelemetry-instrumentation-pymongo``'s ``CommandTracer``, a PyMongo
  ``CommandListener``. It works with the async client: PyMongo reports a command in the task that runs it, so
  the request's span is the current one and becomes the parent. It is attached to the app's own client
  (:func:`command_tracer`) rather than registered process-wide with ``PymongoInstrumentor``.
* Spans are batched to ``<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`` over OTLP/HTTP (protobuf), the default
  protocol of the OpenTelemetry SDKs. The SDK's other ``OTEL_*`` variables (``OTEL_SERVICE_NAME``,
  ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_RESOURCE_ATTRIBUTES``, ...) apply as usual; the service name defaults
  to ``handoff``.
"""

from __future__ import annotations

from typing import cast

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.pymongo import CommandTracer
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from pymongo.monitoring import CommandListener

from handoff import __version__

WORKSPACE_ATTRIBUTE = "handoff.workspace_id"


def otlp_provider(endpoint: str) -> TracerProvider:
    """A tracer provider that batches spans to the collector at ``endpoint`` (its base URL)."""
    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # OTEL_SERVICE_NAME unset
        resource = resource.merge(Resource({SERVICE_NAME: "handoff"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    return provider


def _method_only(scope: Scope) -> tuple[str, dict[str, str]]:
    return str(scope.get("method") or "HTTP"), {}


def plugin(provider: TracerProvider) -> OpenTelemetryPlugin:
    """Litestar's OpenTelemetry plugin, on ``provider``, without the per-message spans."""
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            tracer_provider=provider,
            scope_span_details_extractor=_method_only,
            exclude_spans=["receive", "send"],
            scopes={ScopeType.HTTP},
        )
    )


class RouteSpanName(ASGIMiddleware):
    """Name the request's server span by its route template, and tag it with the caller's workspace."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            await next_app(scope, receive, send)
            return
        route = scope["path_template"]
        span.update_name(f"{cast('HTTPScope', scope)['method']} {route}")
        span.set_attribute(HTTP_ROUTE, route)

        async def send_tagged(message: Message) -> None:
            # The ASGI middleware ends the span with the last body message, so the workspace (known once the key
            # is resolved) is added when the response starts.
            if message["type"] == "http.response.start":
                principal = scope["state"].get("principal")
                if principal is not None:
                    span.set_attribute(WORKSPACE_ATTRIBUTE, principal.workspace_id)
            await send(message)

        await next_app(scope, receive, send_tagged)


def command_tracer(provider: TracerProvider) -> CommandListener:
    """A listener that makes every MongoDB command of its client a child span of the current one."""
    return CommandTracer(trace.get_tracer("opentelemetry.instrumentation.pymongo", tracer_provider=provider))
