"""Tracing and JSON logs: a server span per request named by route template, MongoDB commands as its children,
nothing at all when tracing is off; one JSON access line per request, with no key and no body in any line.

Spans go to the SDK's in-memory exporter through a tracer provider handed to ``create_app`` (what
``OTEL_EXPORTER_OTLP_ENDPOINT`` builds with an OTLP exporter instead).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase, init_database
from handoff.ops import Operations
from handoff.ops.logs import ACCESS_LOGGER, JsonFormatter
from tests.api import ok
from tests.factories import Tenant
from tests.inprocess import in_process


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    settings: Settings, database: MongoDatabase, exporter: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a client of its own, as served: the command tracer is a listener of the client it creates."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with in_process(create_app(settings, tracer_provider=provider)) as http:
            yield http
    finally:
        provider.shutdown()
        await init_database(database.client, database.name)  # Beanie back on the module's client


def server_span(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [span for span in spans if span.kind == SpanKind.SERVER and span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


async def test_a_request_is_one_server_span_with_its_mongodb_commands_as_children(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter, tenant: Tenant
) -> None:
    session_id = ok(await traced.post("/v1/sessions", json={}, headers=tenant.headers), 201)["session_id"]
    exporter.clear()
    entry = {"message": "traced", "id": "t1"}
    ok(await traced.post(f"/v1/sessions/{session_id}/work-log", json=entry, headers=tenant.headers), 201)

    spans = exporter.get_finished_spans()
    request = server_span(spans, "POST /v1/sessions/{session_id}/work-log")
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/sessions/{session_id}/work-log"
    assert request.attributes["handoff.workspace_id"] == tenant.workspace.workspace_id
    assert request.attributes["http.status_code"] == 201
    commands = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert commands, [span.name for span in spans]
    assert any("update" in span.name for span in commands), [span.name for span in commands]
    for span in commands:
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id  # a child of the request, not a root of its own
        assert span.context.trace_id == request.context.trace_id
    assert not [span for span in spans if span.name.endswith((" receive", " send"))]  # no per-message noise
    assert session_id not in request.name


async def test_an_unknown_path_is_named_by_its_method_only(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    await traced.get("/no/such/thing/42")
    assert server_span(exporter.get_finished_spans(), "GET").name == "GET"


def test_tracing_is_off_and_its_sdk_not_loaded_without_an_endpoint() -> None:
    # In a fresh interpreter without OTEL_EXPORTER_OTLP_ENDPOINT: no plugin, no span middleware, no command
    # tracer, and neither the SDK nor handoff's tracing module loaded. (The OpenTelemetry *API* is imported by
    # the MCP SDK and Litestar whatever handoff does; without an SDK provider it records nothing.)
    probe = (
        "import sys; from pathlib import Path; from handoff.config import Settings; from handoff.app import create_app;"
        "from litestar.plugins.opentelemetry import OpenTelemetryPlugin;"
        "app = create_app(Settings(mongodb_url='mongodb://127.0.0.1:1', data_dir=Path('/nonexistent')));"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter',"
        " 'opentelemetry.instrumentation.pymongo', 'handoff.ops.tracing'))),"
        " app.plugins.get(OpenTelemetryPlugin) if OpenTelemetryPlugin in app.plugins else None,"
        " sorted(type(m).__name__ for m in app.middleware))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[] None ['BodyTimeoutMiddleware', 'DeadlineMiddleware']", done.stdout + done.stderr
    ops = Operations(Settings(data_dir=Path("/nonexistent")))
    assert (ops.tracer_provider, ops.plugins, ops.command_listeners[1:]) == (None, [], [])


def test_an_endpoint_builds_an_otlp_provider() -> None:
    settings = Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
    ops = Operations(settings)
    try:
        assert ops.tracer_provider is not None
        assert len(ops.plugins) == 1
        assert ops.tracer_provider.resource.attributes["service.name"] == "handoff"
    finally:
        assert ops.tracer_provider is not None
        ops.tracer_provider.shutdown()


def test_an_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="OTLP over HTTP"):
        Settings(otel_exporter_otlp_endpoint="grpc://collector:4317")


# JSON logs -------------------------------------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the access logger (and the error logger) write, formatted as HANDOFF_LOG_FORMAT=json does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(ACCESS_LOGGER), logging.getLogger("handoff.errors")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)


async def test_json_logs_have_one_object_a_line_with_no_key_and_no_body(
    settings: Settings, database: MongoDatabase, tenant: Tenant, json_lines: io.StringIO
) -> None:
    app = create_app(settings.model_copy(update={"log_format": "json"}), database=database)
    secret_body = "a body that must never be logged"
    async with in_process(app) as http:
        session_id = ok(await http.post("/v1/sessions", json={}, headers=tenant.headers), 201)["session_id"]
        entry = {"message": secret_body}
        ok(await http.post(f"/v1/sessions/{session_id}/work-log", json=entry, headers=tenant.headers), 201)
        refused = await http.get(
            "/v1/sessions", headers={"Authorization": "Bearer hk_wrong_key", "X-Request-Id": "req-42"}
        )
        assert refused.headers["X-Request-Id"] == "req-42"  # a proxy's id carries through
        odd = await http.get("/healthz", headers={"X-Request-Id": "not an id; " * 10})
        assert len(odd.headers["X-Request-Id"]) == 32  # not a short token: replaced by a new one

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    assert len(access) == 4
    appended = access[1]
    assert appended["route"] == "/v1/sessions/{session_id}/work-log"
    assert (appended["method"], appended["status"]) == ("POST", 201)
    assert appended["workspace_id"] == tenant.workspace.workspace_id
    assert isinstance(appended["duration_ms"], float)
    assert len(appended["request_id"]) == 32
    assert (access[2]["status"], access[2]["request_id"], access[2]["workspace_id"]) == (401, "req-42", None)
    text = json_lines.getvalue()
    for secret in (tenant.secret, "hk_wrong_key", secret_body, session_id):
        assert secret not in text
