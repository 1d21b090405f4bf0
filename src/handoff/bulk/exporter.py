"""Export sessions as JSON Lines: one session a line, its API fields plus the full work log and artifacts.

The line is the Session the API answers (``views.session_read``) plus what the Session leaves out but an
import needs to restore the very same session (:class:`StoredOnly`), with ``work_log`` and ``artifacts`` in their
API shapes, timestamps as ISO 8601 strings: exactly what ``handoff import`` reads back. Sessions stream from
a cursor in ``(workspace_id, session_id)`` order, the unique index's, so no sort runs in memory and the
process holds one cursor batch whatever the size of the collection.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from handoff import clock
from handoff.schemas import OutputModel, UtcDatetime
from handoff.sessions import store, views
from handoff.sessions.models import SessionStatus
from handoff.workspaces import service as workspaces

CURSOR_BATCH = 200
_encode = msgspec.json.Encoder().encode


class StoredOnly(OutputModel):
    """Stored fields the Session does not show, written to each line so an import restores them."""

    replayed_from: str | None = None
    """The session a replay continues: the analytics ``lineage`` and ``handoffs`` routes follow it."""
    paused_at: UtcDatetime | None = None
    """Since when a paused session waits: ``handoffs`` reports and orders by it."""
    legacy: dict[str, Any] | None = None
    """The original system's integer ids of a session imported from it."""


def export_line(doc: dict[str, Any], now: datetime) -> bytes:
    """One stored session as an export line (without the newline)."""
    body = views.session_read(doc, now).model_dump(mode="json")
    body |= StoredOnly.model_validate(doc).model_dump(mode="json")
    body["work_log"] = [entry.model_dump(mode="json") for entry in views.work_log_entries(doc.get("work_log", []))]
    body["artifacts"] = [item.model_dump(mode="json") for item in views.artifacts(doc.get("artifacts", []))]
    return _encode(body)


async def _query(workspace: str | None, status: SessionStatus | str | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if workspace is not None:
        query["workspace_id"] = (await workspaces.get_workspace(workspace)).workspace_id
    if status is not None:
        query["status"] = SessionStatus(status).value
    return query


async def export_sessions(
    out: IO[bytes], *, workspace: str | None = None, status: SessionStatus | str | None = None
) -> int:
    """Write the sessions of a workspace (by slug; every workspace when ``None``) to ``out``; returns how many.

    Needs an initialised database (``handoff.db.open_database``); an unknown workspace raises ``NotFound``.
    """
    return await _write(out, await _query(workspace, status))


async def export_to_path(
    path: str | Path, *, workspace: str | None = None, status: SessionStatus | str | None = None
) -> int:
    """:func:`export_sessions` to a file (created only once the workspace is found) or to stdout for ``-``."""
    query = await _query(workspace, status)
    if str(path) == "-":
        return await _write(sys.stdout.buffer, query)
    with Path(path).open("wb") as out:  # noqa: ASYNC230 - a CLI's export: nothing else waits on this loop
        return await _write(out, query)


async def _write(out: IO[bytes], query: dict[str, Any]) -> int:
    cursor = (
        store.sessions()
        .find(query, {"_id": 0})
        .sort([("workspace_id", 1), ("session_id", 1)])
        .hint("workspace_session_unique")
        .batch_size(CURSOR_BATCH)
    )
    now = clock.now()
    count = 0
    async for doc in cursor:
        out.write(export_line(doc, now) + b"\n")
        count += 1
    out.flush()
    return count
