"""Log output: readable text by default, or one JSON object a line (``HANDOFF_LOG_FORMAT=json``) for collectors.

In JSON every record is ``{"time", "level", "logger", "message"}`` plus the fields its caller passed as
``extra={"fields": {...}}``, and nothing else: a record's other attributes (arguments, locals, the request) are
never dumped, so a log line holds only what its call site chose to put there. The access log
(:mod:`handoff.ops.observe`) passes the request id, route template, status, duration and workspace id; never a
key, a header or a body.

``handoff serve`` hands uvicorn :func:`uvicorn_log_config`, so uvicorn's own lines (startup, errors) come out in
the same format; in JSON mode uvicorn's access log is off, since the service writes its own with more in it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from handoff.config import Settings

ACCESS_LOGGER = "handoff.access"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the record's chosen ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Give the root logger one handler on stderr in the configured format, unless something configured it first.

    Like ``logging.basicConfig``: a host that set up logging (a test runner, an embedding application) keeps its
    own handlers; only the level is applied.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        if settings.log_format == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
        root.addHandler(handler)
    root.setLevel(settings.log_level)


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: its default for text, the same JSON lines as the service's otherwise."""
    if settings.log_format != "json":
        return LOGGING_CONFIG
    formatter = {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": settings.log_level},
        "loggers": {
            "uvicorn": {"level": settings.log_level},
            "uvicorn.error": {"level": settings.log_level},
            "uvicorn.access": {"level": "WARNING"},
        },
    }
