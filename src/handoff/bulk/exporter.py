"""Export sessions as JSON Lines: one session a line, its API fields plus the full work log and artifacts.

The line is the Session the API answers (``views.session_read``) plus what the Session leaves out but an
import needs to restore the very same session (:class:`StoredOnly`), with ``work_log`` and ``artifacts`` in their
API shapes, timestamps as ISO 8601 strings: exactly what ``handoff import`` reads back. Sessions stream from
a cursor in ``(workspace_id, session_id)`` order, the unique index's, so no sort runs in memory; each session's
line is written as its entries stream from its sealed pages and open page (``log_reads.stream_entries``), so the
process holds one cursor batch of sessions and one batch of pages whatever the size of the collection or of a
session's log.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from handoff import clock
from handoff.schemas import OutputModel, UtcDatetime
from handoff.sessions import store, views
from handoff.sessions.log_reads import stream_entries
from handoff.sessions.models import SessionStatus
from handoff.sessions.paging import Kind
from handoff.sessions.schemas import Artifact
from handoff.workspaces import service as workspaces

CURSOR_BATCH = 200
#: Entries encoded before a write, so a long log goes out in chunks of about this many.
WRITE_CHUNK = 500
_encode = msgspec.json.Encoder().encode


class StoredOnly(OutputModel):
    """Stored fields the Session does not show, written to each line so an import restores them."""

    replayed_from: str | None = None
    """The session a replay continues: the analytics ``lineage`` and ``handoffs`` routes follow it."""
    paused_at: UtcDatetime | None = None
    """Since when a paused session waits: ``handoffs`` reports and orders by it."""
    legacy: dict[str, Any] | None = None
    """The original system's integer ids of a session imported from it."""


def _head(doc: dict[str, Any], now: datetime) -> bytes:
    """The line's session fields, as a JSON object without its closing brace."""
    body = views.session_read(doc, now).model_dump(mode="json")
    body |= StoredOnly.model_validate(doc).model_dump(mode="json")
    return _encode(body)[:-1]


_SHAPES: dict[Kind, Callable[[dict[str, Any]], OutputModel]] = {
    "work_log": views.work_log_entry,
    "artifacts": Artifact.model_validate,
}


async def _array(entries: AsyncIterator[dict[str, Any]], kind: Kind) -> AsyncIterator[bytes]:
    """The entries as the elements of a JSON array (comma-separated, without brackets), in chunks."""
    shape = _SHAPES[kind]
    chunk: list[bytes] = []
    first = True
    async for entry in entries:
        chunk.append(_encode(shape(entry).model_dump(mode="json")))
        if len(chunk) == WRITE_CHUNK:
            yield (b"" if first else b",") + b",".join(chunk)
            chunk, first = [], False
    if chunk:
        yield (b"" if first else b",") + b",".join(chunk)


async def write_line(out: IO[bytes], doc: dict[str, Any], now: datetime) -> None:
    """One stored session as an export line (with its newline), its entries read page by page."""
    out.write(_head(doc, now))
    for kind in ("work_log", "artifacts"):
        out.write(f',"{kind}":['.encode())
        async for piece in _array(stream_entries(doc, kind), kind):
            out.write(piece)
        out.write(b"]")
    out.write(b"}\n")


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
        await write_line(out, doc, now)
        count += 1
    out.flush()
    return count
