"""How ``handoff serve`` runs uvicorn: one process, or uvicorn's supervisor and N workers sharing one socket.

With workers, the supervisor restarts a worker that dies, and a SIGHUP replaces them one at a time (each new
worker ready before the old one stops): a rolling restart. A worker stopping (SIGTERM) closes its listening
socket, so new connections go to the others; it finishes what it serves within
``HANDOFF_SHUTDOWN_TIMEOUT_SECONDS`` (``timeout_graceful_shutdown``: longer than the request deadline, so a
request in flight ends with its own answer, and streams end at once on the shutdown signal,
:mod:`handoff.ops.shutdown`), then closes its database client.

The workers report one set of metrics through a directory that is new for each serve: created here, handed to
the workers as ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client reads it when a worker imports it), and removed
when the supervisor exits, so no serve inherits a previous one's counts.

Each served app is built by :func:`worker_app`, which then sets the garbage collector for a long-running worker
(:mod:`handoff.ops.collector`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from handoff.config import Settings
from handoff.ops import collector
from handoff.ops.logs import uvicorn_log_config

if TYPE_CHECKING:
    from litestar import Litestar

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def uvicorn_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """What both ways of serving pass to uvicorn."""
    return {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "log_config": uvicorn_log_config(settings),
        "access_log": settings.log_format != "json",  # JSON: the service writes its own access line
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }


@contextmanager
def shared_metrics_directory() -> Iterator[Path]:
    """A fresh directory for the workers' metrics, in their environment for the block's length, then removed."""
    directory = Path(tempfile.mkdtemp(prefix="handoff-metrics-"))
    previous = os.environ.get(MULTIPROC_VARIABLE)
    os.environ[MULTIPROC_VARIABLE] = str(directory)  # written for the workers; Settings reads it in each of them
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_VARIABLE, None)
        else:
            os.environ[MULTIPROC_VARIABLE] = previous
        shutil.rmtree(directory, ignore_errors=True)


def worker_app(settings: Settings | None = None) -> Litestar:
    """The app a served process runs, built with the collector set for a long-running worker
    (:mod:`handoff.ops.collector`): uvicorn's factory in each worker, and the app of a single process."""
    from handoff.app import create_app  # noqa: PLC0415 - the app only where it is served

    app = create_app(settings)
    collector.settle()
    return app


def run(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until stopped (SIGTERM or Ctrl-C), with graceful shutdown."""
    options = uvicorn_options(settings, host=host, port=port)
    if workers == 1:
        uvicorn.run(worker_app(settings), **options)
        return
    # Workers import the factory themselves, after the directory is in their environment; each finds the bundled
    # server (when there is one) through its state file.
    with shared_metrics_directory():
        uvicorn.run("handoff.ops.server:worker_app", factory=True, workers=workers, **options)
