"""The service's Prometheus instruments, and the small typed functions the rest of the code counts with.

Callers say what happened (``metrics.entries_appended("work_log", 3)``, ``metrics.claim("empty")``), never which
metric object or which label set: every name and label lives here once, so ``GET /metrics``, the Grafana
dashboard (``docs/grafana-dashboard.json``), the README and the tests agree. Label values are closed sets
(``Literal`` types; HTTP routes are templates, see :mod:`handoff.ops.observe`), so no label can grow without
bound.

Several worker processes report one coherent set through prometheus-client's multiprocess mode: when
``PROMETHEUS_MULTIPROC_DIR`` is in the environment *before* prometheus-client is imported (``handoff serve
--workers N`` creates a fresh directory per serve and sets it before it starts the workers), every value is
written to per-process files there and :func:`exposition` merges them all, whichever worker answers. Counters
of a worker that exited keep counting in the total; gauges (requests in progress, stream subscribers) are
``livesum`` gauges, and :func:`forget_process` drops the exited worker's share. Without the variable (one
process, or the tests) the default registry is used, with the process and GC collectors it brings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client import generate_latest as _generate_latest

LogKind = Literal["work_log", "artifacts"]
BlobDirection = Literal["in", "out"]
ClaimOutcome = Literal["claimed", "empty", "released", "expired", "completed"]
EventType = Literal[
    "session.created",
    "session.updated",
    "session.deleted",
    "work_log.appended",
    "work_log.removed",
    "artifact.recorded",
    "artifact.removed",
    "handoff.waiting",
    "handoff.claimed",
    "handoff.released",
]
KeyCacheResult = Literal["hit", "miss"]

#: Latency buckets, in seconds: an append takes a few milliseconds, a deadline 20 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

# HTTP (recorded by handoff.ops.observe) -------------------------------------------------------------------------

http_requests = Counter(
    "handoff_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
http_request_duration = Histogram(
    "handoff_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method, route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
http_requests_in_progress = Gauge(
    "handoff_http_requests_in_progress", "HTTP requests being served now.", multiprocess_mode="livesum"
)

# MongoDB (recorded by handoff.ops.mongo and the error handler) -------------------------------------------------

mongodb_command_failures = Counter(
    "handoff_mongodb_command_failures",
    "MongoDB commands that failed, by command and kind (the server's codeName, else the driver's error class).",
    ["command", "kind"],
)
mongodb_errors = Counter(
    "handoff_mongodb_errors",
    "Requests ended by a database error (a 503, or a 500 for an unexpected one), by the driver's error class.",
    ["kind"],
)

# Auth --------------------------------------------------------------------------------------------------------

api_key_cache = Counter("handoff_api_key_cache", "API-key lookups answered from the cache (hit) or not.", ["result"])

# The session log, blobs, events and claims -------------------------------------------------------------------

entries_appended_total = Counter(
    "handoff_entries_appended", "Entries stored by appends (repeats of a known id not counted), by kind.", ["kind"]
)
page_seals = Counter("handoff_page_seals", "Pages of a session log sealed (moved to log_pages), by kind.", ["kind"])
blob_bytes = Counter("handoff_blob_bytes", "Blob bytes received (in) and sent (out).", ["direction"])
events_streamed_total = Counter("handoff_events_streamed", "Server-sent events sent to clients, by type.", ["type"])
event_subscribers = Gauge("handoff_event_subscribers", "Event streams open now.", multiprocess_mode="livesum")
claims = Counter("handoff_claims", "Handoff claims, by outcome.", ["outcome"])


def entries_appended(kind: LogKind, count: int = 1) -> None:
    """``count`` new entries were stored in a session's ``kind`` log (call after the write is acknowledged)."""
    if count > 0:
        entries_appended_total.labels(kind).inc(count)


def page_sealed(kind: LogKind) -> None:
    """One page of a session's ``kind`` log was sealed."""
    page_seals.labels(kind).inc()


def blob_bytes_in(count: int) -> None:
    """``count`` bytes of a blob were received and stored."""
    blob_bytes.labels("in").inc(count)


def blob_bytes_out(count: int) -> None:
    """``count`` bytes of a blob were sent to a client."""
    blob_bytes.labels("out").inc(count)


#: The child of ``events_streamed_total`` per event type: it moves once per event per stream, and ``labels()`` costs
#: a lock and a validation each call (a closed set of types, so each child is looked up once).
_streamed: dict[str, Counter] = {}


def event_streamed(event_type: EventType, count: int = 1) -> None:
    """``count`` events of ``event_type`` were written to a client's stream."""
    child = _streamed.get(event_type)
    if child is None:
        child = _streamed[event_type] = events_streamed_total.labels(event_type)
    child.inc(count)


@contextmanager
def subscribed() -> Iterator[None]:
    """Count one open event stream for the length of the block (``with metrics.subscribed(): ...``)."""
    event_subscribers.inc()
    try:
        yield
    finally:
        event_subscribers.dec()


def claim(outcome: ClaimOutcome) -> None:
    """A claim ended this way (``empty``: nothing was waiting, the 204)."""
    claims.labels(outcome).inc()


def key_cache(result: KeyCacheResult) -> None:
    """An API key was resolved from the cache (``hit``) or had to be looked up (``miss``)."""
    api_key_cache.labels(result).inc()


def mongodb_command_failed(command: str, kind: str) -> None:
    """A MongoDB command failed; ``kind`` is the server's ``codeName`` or the driver's error class."""
    mongodb_command_failures.labels(command, kind).inc()


def mongodb_error(kind: str) -> None:
    """A request ended on a database error of this driver class."""
    mongodb_errors.labels(kind).inc()


# Exposition and worker exits ----------------------------------------------------------------------------------


def exposition(multiproc_dir: Path | None) -> bytes:
    """Every metric in the Prometheus text format: this process's, or all workers' when they share a directory."""
    if multiproc_dir is None:
        return _generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
    return _generate_latest(registry)


#: The ``Content-Type`` of :func:`exposition`'s output, the text format every Prometheus reads (Litestar adds the
#: charset). prometheus-client's ``CONTENT_TYPE_LATEST`` names version 1.0.0 and carries its own charset, which
#: Litestar would repeat.
CONTENT_TYPE = "text/plain; version=0.0.4"


def forget_process(multiproc_dir: Path, pid: int) -> None:
    """Drop an exited process's share of the live gauges (its counters stay in the totals)."""
    multiprocess.mark_process_dead(pid, str(multiproc_dir))  # type: ignore[no-untyped-call]


def forget_dead_processes(multiproc_dir: Path) -> None:
    """Forget every process whose live-gauge files remain but which no longer runs (a worker that was killed).

    A worker that exits cleanly forgets itself; one killed outright cannot, and its replacement calls this.
    """
    for path in multiproc_dir.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            forget_process(multiproc_dir, int(pid))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it runs
        return True
    return True
