"""Import sessions from files: stream rows, map each to a paged session, write them in unordered bulk batches.

Each row becomes a session document in the paged layout plus the sealed pages of its older entries
(``mapping.to_bson``). Each batch of ``batch_size`` sessions is one unordered ``insert_many`` keyed by
``(workspace_id, session_id)``, preceded by one unordered ``insert_many`` of the pages of those that have some: the
unique index refuses a session that exists, which under ``skip`` counts it as skipped (``$setOnInsert``'s "insert
only when absent") and under ``replace`` erases it (``service.delete_session``: the session and its pages) and
inserts it again. Pages are written only for sessions read as absent just before (a covered read of the unique
index), and once a batch meets existing sessions (a re-import) the next one first reads which of all its keys
exist, until a batch meets none. Why inserts rather than one upsert per session: on MongoDB 6.0 an upsert batch
with ``$setOnInsert`` writes at 0.3-0.5x the rate of ``insert_many`` (``scripts/bench_import.py``,
``docs/benchmarks.md``), an insert batch at the same rate.

Rows are read in chunks of ``batch_size``; decoding and mapping them (``prepare.py``: a thread, or worker
processes for big inputs) runs ahead of the writes, one batch is written while the next ones are prepared, and
only a bounded number of chunks exist at a time, so memory stays flat whatever the size of the file. A rejected
row never leaves anything: it goes to the rejects file as ``{"line", "error", "source"}`` (plus ``file`` when
several files are imported) and the run goes on. Nor does a killed import leave a partial session: a session's
document, which is what makes it visible, is written after its pages (see ``_Writer._insert``), so an import
killed at any point leaves each session of the file absent or complete, and running it again finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from handoff.bulk import mapping
from handoff.bulk.files import RejectsFile, UnreadableFile, check_readable, default_rejects_path
from handoff.bulk.formats import FileReader, Format, Record
from handoff.bulk.prepare import Prepared, Preparer, default_workers
from handoff.config import Settings, get_settings
from handoff.errors import NotFound
from handoff.plans import service as plans
from handoff.sessions import newest_notables, notables, purges, store
from handoff.sessions import service as sessions
from handoff.workspaces import service as workspaces

OnConflict = Literal["skip", "replace"]

DEFAULT_BATCH_SIZE = 500
DUPLICATE_KEY = 11000


class ProgressSink(Protocol):
    """Where the importer reports how far it has got (see ``handoff.bulk.progress``)."""

    def start(self, total_bytes: int) -> None: ...

    def update(self, *, bytes_read: int, sessions: int, rejected: int) -> None: ...

    def finish(self) -> None: ...


@dataclass
class ImportResult:
    """What an import did: sessions written, sessions left as they were, rows rejected."""

    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The last line the CLI prints."""
        return f"imported {self.imported}, skipped {self.skipped}, rejected {self.rejected}"


# Writing -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A mapped row waiting in a batch, with what a reject needs if the database refuses it."""

    record: Record
    file: Path
    session_id: str
    document: RawBSONDocument
    pages: list[RawBSONDocument]
    notables: list[RawBSONDocument]
    newest_notables: RawBSONDocument | None = None


def _written_elsewhere(row: _Pending) -> str:
    return f"session {row.session_id} was written by someone else during the import; run it again"


def _first_of_each(rows: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
    """The rows, less those with pages whose session an earlier row of the batch holds; and those. Their pages
    would collide with the earlier row's (and be taken back with them), so they collide now, as its session would.
    """
    earlier: set[str] = set()
    first: list[_Pending] = []
    again: list[_Pending] = []
    for row in rows:
        (again if row.pages and row.session_id in earlier else first).append(row)
        earlier.add(row.session_id)
    return first, again


async def _insert_all(collection: AsyncCollection[dict[str, Any]], documents: list[tuple[_Pending, Any]]) -> set[str]:
    """One unordered ``insert_many`` of the rows' documents; the sessions of those the indexes refused."""
    if not documents:
        return set()
    try:
        await collection.insert_many([document for _, document in documents], ordered=False)
    except BulkWriteError as exc:
        return {documents[error["index"]][0].session_id for error in exc.details.get("writeErrors", [])}
    return set()


class _Writer:
    """Writes batches one at a time, in the background of the parsing."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        workspace_id: str,
        on_conflict: OnConflict,
        result: ImportResult,
        rejects: RejectsFile,
        sealed_at: datetime,
    ) -> None:
        self.collection = collection
        self.workspace_id = workspace_id
        self.sealed_at = sealed_at  # what the pages of this run carry, and only they
        self.on_conflict = on_conflict
        self.result = result
        self.rejects = rejects
        self._probe = False  # read which sessions exist before inserting (after a batch met existing ones)
        self._task: asyncio.Task[None] | None = None

    async def submit(self, batch: list[_Pending]) -> None:
        """Wait for the batch in flight, then start this one."""
        await self.drain()
        self._task = asyncio.create_task(self._write(batch))
        await asyncio.sleep(0)

    async def drain(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _write(self, batch: list[_Pending]) -> None:
        # Pages are written before their session, so only for sessions known absent: read which exist among the
        # batch's paged ones always, among all of them after a batch met existing ones (a re-import).
        probed = [pending.session_id for pending in batch if self._probe or pending.pages]
        present = await self._present(probed) if probed else set()
        inserts: list[_Pending] = []
        replaces: list[_Pending] = []
        for pending in batch:
            if pending.session_id not in present:
                inserts.append(pending)
            elif self.on_conflict == "replace":
                replaces.append(pending)
            else:
                self.result.skipped += 1
        collided = await self._insert(inserts)
        # Sessions that exist already: ask before writing the next batch (a re-import), until one has none.
        self._probe = bool(present or collided)
        if self.on_conflict == "replace":
            await self._replace(replaces + collided)
        else:
            self.result.skipped += len(collided)

    async def _present(self, session_ids: list[str]) -> set[str]:
        """Which of these sessions the workspace has (a covered read of the unique index)."""
        cursor = self.collection.find(
            {"workspace_id": self.workspace_id, "session_id": {"$in": session_ids}},
            {"_id": 0, "session_id": 1},
            hint="workspace_session_unique",
        )
        return {doc["session_id"] async for doc in cursor}

    async def _insert(self, rows: list[_Pending]) -> list[_Pending]:
        """Insert the rows' sessions, each after its pages; returns the rows whose session exists already (the
        unique index refused them).

        The session document is what makes a session visible, so it is written last: a session with pages
        appears only complete, and an import killed before its session leaves only pages under an absent key,
        which no route of the session reads (analytics counts them until then) and the next import of it
        deletes first. Not one transaction: a long log's pages do not fit one (MongoDB refuses a transaction
        "too large to fit in the storage engine cache"; a 200,000-entry session does on the bundled mongod).
        """
        if not rows:
            return []
        rows, again = _first_of_each(rows)
        # An erased session's leftovers under one of these ids go first: its purge would delete pages numbered as
        # these sessions' are (``purges.finish``).
        await purges.finish(self.workspace_id, [row.session_id for row in rows])
        written = await self._insert_pages([row for row in rows if row.pages])
        rows = [row for row in rows if not row.pages or row.session_id in written]
        errors: list[dict[str, Any]] = []
        try:
            await self.collection.insert_many([row.document for row in rows], ordered=False)
        except BulkWriteError as exc:
            self.result.imported += exc.details.get("nInserted", 0)
            errors = exc.details.get("writeErrors", [])
        else:  # every one (the result lists no ids of raw documents)
            self.result.imported += len(rows)
        # The pages of a session refused here stay only if nobody wrote that session: take them back.
        await self._delete_pages([rows[error["index"]].session_id for error in errors if rows[error["index"]].pages])
        refused = {error["index"] for error in errors}
        copies = [row.newest_notables for at, row in enumerate(rows) if at not in refused and row.newest_notables]
        await newest_notables.put([copy for copy in copies if copy is not None])
        collided: list[_Pending] = again
        external: list[tuple[_Pending, dict[str, Any]]] = []
        for error in errors:
            row, key = rows[error["index"]], error.get("keyPattern") or {}
            if error.get("code") == DUPLICATE_KEY and ("session_id" in key or "_id" in key):
                collided.append(row)  # the _id is "<workspace_id>/<session_id>": either index says it exists
            elif error.get("code") == DUPLICATE_KEY and "external_id" in key:
                external.append((row, error))
            else:
                self._refused(row, error)
        if external:  # an existing session may have tripped its external_id's index before its session_id's
            present = await self._present([row.session_id for row, _ in external])
            for row, error in external:
                if row.session_id in present:
                    collided.append(row)
                else:
                    self._refused(row, error)
        return collided

    async def _insert_pages(self, rows: list[_Pending]) -> set[str]:
        """Write the pages of these sessions (absent when probed), then their notable entries; the sessions whose
        pages and notable entries all went in.

        First the pages an earlier run left under their keys (killed before it wrote their sessions); then this
        run's. A page or notable entry the indexes refuse means someone else wrote that session meanwhile: its
        row is rejected and what this run wrote for it is taken back.
        """
        if not rows:
            return set()
        await self._delete_pages([row.session_id for row in rows], leftovers=True)
        failed = await _insert_all(store.pages(), [(row, page) for row in rows for page in row.pages])
        noted = [(row, notable) for row in rows if row.session_id not in failed for notable in row.notables]
        failed |= await _insert_all(notables.collection(), noted)
        if failed:
            await self._delete_pages(list(failed))
            for row in rows:
                if row.session_id in failed:
                    self._reject(row, _written_elsewhere(row))
        return {row.session_id for row in rows} - failed

    async def _delete_pages(self, session_ids: list[str], *, leftovers: bool = False) -> None:
        """Delete the pages (and their notable entries) this run wrote for these sessions, or (``leftovers``) those
        other runs left."""
        if session_ids:
            run = {"$ne": self.sealed_at} if leftovers else self.sealed_at
            query = {"workspace_id": self.workspace_id, "session_id": {"$in": session_ids}, "sealed_at": run}
            await store.pages().delete_many(query)
            await notables.collection().delete_many(query)

    async def _replace(self, rows: list[_Pending]) -> None:
        """Erase the rows' sessions (with their pages) and insert them again. A kill in between leaves a session
        absent, never partial, until the import runs again."""
        for row in rows:
            with contextlib.suppress(NotFound):  # deleted meanwhile: inserted below all the same
                await sessions.delete_session(self.workspace_id, row.session_id)
        for row in await self._insert(rows):
            self._reject(row, _written_elsewhere(row))

    def _refused(self, row: _Pending, error: dict[str, Any]) -> None:
        """Reject a row the database refused, saying why in the terms of the import."""
        key = error.get("keyPattern") or {}
        if error.get("code") == DUPLICATE_KEY and "external_id" in key:
            external_id = (error.get("keyValue") or {}).get("external_id")
            self._reject(row, f"external_id {external_id!r} is already used by another session of the workspace")
        elif error.get("code") == DUPLICATE_KEY and ("session_id" in key or "_id" in key):
            self._reject(row, _written_elsewhere(row))
        else:
            self._reject(row, f"MongoDB refused the session: {error.get('errmsg')} (code {error.get('code')})")

    def _reject(self, pending: _Pending, error: str) -> None:
        self.result.rejected += 1
        self.rejects.add(line=pending.record.line, error=error, source=pending.record.source, file=pending.file)


# The run -----------------------------------------------------------------------------------------------------


class _NoProgress:
    def start(self, total_bytes: int) -> None:
        pass

    def update(self, *, bytes_read: int, sessions: int, rejected: int) -> None:
        pass

    def finish(self) -> None:
        pass


async def import_files(
    paths: Sequence[str | Path],
    *,
    workspace: str,
    file_format: Format = "auto",
    on_conflict: OnConflict = "skip",
    batch_size: int = DEFAULT_BATCH_SIZE,
    rejects: str | Path | None = None,
    plan_map: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    progress: ProgressSink | None = None,
    workers: int | None = None,
) -> ImportResult:
    """Import sessions from ``paths`` into the workspace with slug ``workspace``; see the module docstring.

    ``workers``: processes that decode and map rows (0: a thread of this process; ``None``: chosen by the size
    of the input and the cores, see ``prepare.default_workers``). Needs an initialised database
    (``handoff.db.open_database``). Raises :class:`UnreadableFile` when an input cannot be read, ``NotFound``
    for an unknown workspace; bad rows never raise, they are rejected.
    """
    if not paths:
        raise ValueError("no file to import")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    files = [Path(path) for path in paths]
    total_bytes = check_readable(files)
    rejects_file = RejectsFile(
        Path(rejects) if rejects is not None else default_rejects_path(files[0]), with_file=len(files) > 1
    )
    rejects_file.check_writable()
    target_workspace = await workspaces.get_workspace(workspace)
    result = ImportResult()
    target = mapping.Target(
        workspace_id=target_workspace.workspace_id, settings=settings or get_settings(), plan_map=plan_map or {}
    )
    for slug in sorted(set((plan_map or {}).values())):
        if await plans.find_plan(target.workspace_id, slug) is None:
            result.warnings.append(f"plan {slug!r} of the plan map does not exist in workspace {workspace!r}")
    sink = progress or _NoProgress()
    writer = _Writer(
        store.sessions(),
        workspace_id=target.workspace_id,
        on_conflict=on_conflict,
        result=result,
        rejects=rejects_file,
        sealed_at=target.sealed_at,
    )
    preparer = Preparer(
        target, file_format, workers=default_workers(total_bytes) if workers is None else max(0, workers)
    )
    run = _Run(writer=writer, preparer=preparer, rejects=rejects_file, result=result, sink=sink)
    sink.start(total_bytes)
    try:
        await run.files(files, batch_size)
    finally:
        await writer.drain()
        preparer.close()
        rejects_file.close()
        sink.finish()
    result.rejects_path = rejects_file.path if rejects_file.used else None
    return result


class _Run:
    """Read chunks of rows, have them prepared (a few ahead), and hand each prepared chunk to the writer."""

    def __init__(
        self,
        *,
        writer: _Writer,
        preparer: Preparer,
        rejects: RejectsFile,
        result: ImportResult,
        sink: ProgressSink,
    ) -> None:
        self.writer = writer
        self.preparer = preparer
        self.rejects = rejects
        self.result = result
        self.sink = sink
        self.rows = 0
        self.bytes_read = 0
        self._pending: deque[tuple[Path, list[Record], asyncio.Future[list[Prepared]]]] = deque()

    async def files(self, files: list[Path], batch_size: int) -> None:
        done_bytes = 0
        for path in files:
            reader = FileReader(path)
            chunk: list[Record] = []
            try:
                for record in reader:
                    chunk.append(record)
                    if len(chunk) == batch_size:
                        self.bytes_read = done_bytes + reader.bytes_read
                        await self._submit(path, chunk)
                        chunk = []
            except OSError as exc:
                raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from exc
            done_bytes += reader.bytes_read
            self.bytes_read = done_bytes
            if chunk:
                await self._submit(path, chunk)
        while self._pending:
            await self._write_oldest()
        await self.writer.drain()
        self._report()

    async def _submit(self, path: Path, chunk: list[Record]) -> None:
        self._pending.append((path, chunk, self.preparer.submit(chunk)))
        while len(self._pending) > self.preparer.ahead:
            await self._write_oldest()

    async def _write_oldest(self) -> None:
        path, chunk, future = self._pending.popleft()
        batch: list[_Pending] = []
        for record, prepared in zip(chunk, await future, strict=True):
            if prepared.session_id is None or prepared.bson is None:
                self.result.rejected += 1
                self.rejects.add(line=record.line, error=prepared.error or "", source=record.source, file=path)
            else:
                pages = [RawBSONDocument(page) for page in prepared.pages]
                noted = [RawBSONDocument(notable) for notable in prepared.notables]
                document = RawBSONDocument(prepared.bson)
                copy = RawBSONDocument(prepared.newest_notables) if prepared.newest_notables else None
                batch.append(_Pending(record, path, prepared.session_id, document, pages, noted, copy))
        self.rows += len(chunk)
        self._report()
        await self.writer.submit(batch)

    def _report(self) -> None:
        self.sink.update(bytes_read=self.bytes_read, sessions=self.rows, rejected=self.result.rejected)
