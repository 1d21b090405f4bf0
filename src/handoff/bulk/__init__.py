"""Bulk import and export of sessions: what ``handoff import`` and ``handoff export`` run, importable by scripts::

    async with open_database(settings):
        result = await import_files(["dump.json"], workspace="acme", plan_map={"12": "auth-rewrite"})
        print(result.summary())

``formats`` reads files (JSON Lines or a JSON array, streamed), ``mapping`` turns a row into a session document
(pure; ``entries`` for each work-log entry and artifact), ``prepare`` runs that off the event loop (a thread, or
worker processes for big files), ``importer`` writes the sessions and their pages in unordered bulk batches,
``files`` checks the inputs and keeps the rejects file, ``exporter`` streams sessions out as JSON Lines,
``progress`` shows how far an import has got.
"""

from __future__ import annotations

from handoff.bulk.entries import RowError
from handoff.bulk.exporter import export_sessions, export_to_path, write_line
from handoff.bulk.files import UnreadableFile, check_readable, default_rejects_path, read_plan_map
from handoff.bulk.importer import DEFAULT_BATCH_SIZE, ImportResult, OnConflict, import_files
from handoff.bulk.mapping import load_plan_map

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ImportResult",
    "OnConflict",
    "RowError",
    "UnreadableFile",
    "check_readable",
    "default_rejects_path",
    "export_sessions",
    "export_to_path",
    "import_files",
    "load_plan_map",
    "read_plan_map",
    "write_line",
]
