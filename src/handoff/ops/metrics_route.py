"""``GET /metrics``: every worker's metrics in the Prometheus text format, open or behind a bearer token.

Outside ``/v1`` and its API keys: a Prometheus scraper is not a workspace. With ``HANDOFF_METRICS_TOKEN`` set
the scraper must send ``Authorization: Bearer <token>`` (Prometheus' ``authorization`` scrape setting), else
the usual 401 problem+json; the comparison takes the same time whatever the token's first wrong character.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from handoff import metrics
from handoff.auth import bearer_token
from handoff.config import Settings
from handoff.errors import PROBLEM_JSON, Unauthorized
from handoff.openapi import ProblemDetails

_UNAUTHORIZED = ResponseSpec(
    data_container=ProblemDetails,
    description="HANDOFF_METRICS_TOKEN is set and the request does not carry it",
    media_type=PROBLEM_JSON,
    generate_examples=False,
)


@get(
    "/metrics",
    summary="Prometheus metrics of every worker.",
    tags=["operations"],
    media_type=metrics.CONTENT_TYPE,
    responses={401: _UNAUTHORIZED},
    sync_to_thread=True,  # merging the workers' files is file I/O: off the event loop
)
def metrics_endpoint(request: Request[Any, Any, State]) -> Response[bytes]:
    """Request counts and latencies by route template and status, appends, streams, claims, database errors."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None:
        expected = settings.metrics_token.get_secret_value().encode()
        try:
            given = bearer_token(request).encode()
        except Unauthorized:
            given = b""
        if not secrets.compare_digest(given, expected):
            raise Unauthorized("a valid metrics token is required")
    return Response(
        metrics.exposition(settings.prometheus_multiproc_dir), media_type=metrics.CONTENT_TYPE, status_code=200
    )
