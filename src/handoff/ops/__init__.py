"""What an operator needs around the API: metrics, traces, JSON logs, request deadlines and graceful restarts.

:class:`Operations` gathers, for one app, what these add to it, so the app factory wires them in a few lines:

* routes: ``GET /metrics`` (:mod:`handoff.ops.metrics_route`);
* middleware: the request deadline (:mod:`handoff.ops.deadline`) and, with tracing, the span naming;
* plugins: Litestar's OpenTelemetry plugin, with tracing;
* the MongoDB client's command listeners (:mod:`handoff.ops.mongo`, and the tracer's);
* :meth:`Operations.running`, entered by the lifespan: the shutdown signal (:mod:`handoff.ops.shutdown`) and
  this worker's share of the multiprocess metrics;
* :meth:`Operations.observe`: the request id, request metrics and access log around the router
  (:mod:`handoff.ops.observe`).

Tracing is on when a tracer provider is given, or when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the
``opentelemetry`` extra is installed; :mod:`handoff.ops.tracing` (and with it the OpenTelemetry SDK) is
imported only then. The instruments themselves are in :mod:`handoff.metrics`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.types import ControllerRouterHandler, Middleware
from pymongo.monitoring import CommandListener

from handoff import metrics
from handoff.config import Settings
from handoff.ops.deadline import NO_DEADLINE, DeadlineMiddleware
from handoff.ops.metrics_route import metrics_endpoint
from handoff.ops.mongo import CommandFailureCounter
from handoff.ops.observe import observe_requests
from handoff.ops.shutdown import ShutdownSignal, listen_for_shutdown

if TYPE_CHECKING:
    from litestar.plugins import PluginProtocol
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("handoff.ops")

#: What the tracing module imports: all four must be installed (``pip install 'handoff[opentelemetry]'``).
TRACING_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.instrumentation.asgi",
    "opentelemetry.instrumentation.pymongo",
)

__all__ = ["NO_DEADLINE", "Operations"]


def _tracing_installed() -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in TRACING_MODULES)
    except ModuleNotFoundError:  # a parent package is missing
        return False


class Operations:
    """The operational pieces of one app, decided from its settings once."""

    def __init__(self, settings: Settings, *, tracer_provider: TracerProvider | None = None) -> None:
        self.settings = settings
        self.owns_tracer_provider = False
        if tracer_provider is None and settings.otel_exporter_otlp_endpoint:
            if _tracing_installed():
                from handoff.ops import tracing  # noqa: PLC0415 - the SDK only when tracing is on

                tracer_provider = tracing.otlp_provider(settings.otel_exporter_otlp_endpoint)
                self.owns_tracer_provider = True
            else:
                logger.warning(
                    "OTEL_EXPORTER_OTLP_ENDPOINT is set but the opentelemetry extra is not installed "
                    "(pip install 'handoff[opentelemetry]'): no traces"
                )
        self.tracer_provider = tracer_provider

    @property
    def route_handlers(self) -> list[ControllerRouterHandler]:
        return [metrics_endpoint] if self.settings.metrics_enabled else []

    @property
    def middleware(self) -> list[Middleware]:
        found: list[Middleware] = [DeadlineMiddleware(self.settings.request_timeout_seconds)]
        if self.tracer_provider is not None:
            from handoff.ops.tracing import RouteSpanName  # noqa: PLC0415

            found.append(RouteSpanName())
        return found

    @property
    def plugins(self) -> list[PluginProtocol]:
        if self.tracer_provider is None:
            return []
        from handoff.ops.tracing import plugin  # noqa: PLC0415

        return [plugin(self.tracer_provider)]

    @property
    def command_listeners(self) -> Sequence[CommandListener]:
        """The listeners of the client the app creates (none at all when both metrics and tracing are off)."""
        found: list[CommandListener] = []
        if self.settings.metrics_enabled:
            found.append(CommandFailureCounter())
        if self.tracer_provider is not None:
            from handoff.ops.tracing import command_tracer  # noqa: PLC0415

            found.append(command_tracer(self.tracer_provider))
        return found

    def observe(self, app: Litestar) -> None:
        """Put the request observer around ``app``'s router (call once, on the built app)."""
        observe_requests(app, count=self.settings.metrics_enabled, log=self.settings.log_format == "json")

    @asynccontextmanager
    async def running(self, app: Litestar) -> AsyncIterator[None]:
        """For the app's lifespan: its shutdown signal, this worker's metrics files, the tracer's last batch."""
        directory = self.settings.prometheus_multiproc_dir
        if directory is not None:
            metrics.forget_dead_processes(directory)  # a worker killed outright could not forget itself
        app.state.shutdown = ShutdownSignal()
        try:
            with listen_for_shutdown(app.state.shutdown):
                yield
        finally:
            if directory is not None:
                metrics.forget_process(directory, os.getpid())
            if self.owns_tracer_provider and self.tracer_provider is not None:
                self.tracer_provider.shutdown()
