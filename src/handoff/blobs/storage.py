"""Blob bytes in and out of GridFS, chunk by chunk, holding a few chunks whatever the size of the blob.

The files and chunks are GridFS's own documents in the default bucket (``models.py``), so PyMongo's
``AsyncGridFSBucket`` reads what this module writes and this module reads what the bucket writes; deletes go
through the bucket. Writing and reading are done here rather than through ``AsyncGridIn`` and ``AsyncGridOut``
for memory alone: ``AsyncGridIn`` keeps chunks until 48 MB (MongoDB's largest message) have gathered before its
first ``insert_many``, and ``AsyncGridOut`` reads through a cursor whose replies run to 16 MiB, where an upload and a
download must each hold a few chunks. So :class:`ChunkWriter` inserts :data:`CHUNKS_PER_WRITE` chunks at a time,
one batch in flight while the next fills (the body keeps arriving while the database writes), and :func:`read`
takes :data:`CHUNKS_PER_READ` chunks a reply, the next reply in flight while the current one is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Int64, ObjectId
from gridfs import DEFAULT_CHUNK_SIZE, NoFile
from gridfs.asynchronous import AsyncGridFSBucket
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor

from handoff.blobs.models import BUCKET, BlobChunk, BlobFile
from handoff.errors import HandoffError

#: GridFS's default chunk size (255 KiB): the chunks of a blob are the size any driver would have written.
CHUNK_SIZE = DEFAULT_CHUNK_SIZE
#: Chunks per ``insert_many`` of an upload; with one batch in flight and one filling, an upload holds about
#: three times this many chunks (the batch in flight is also held encoded).
CHUNKS_PER_WRITE = 4
#: Chunks per cursor reply of a download (about 2 MiB; with the next reply in flight a download holds about 4 MiB).
CHUNKS_PER_READ = 8
#: File ids per delete of a cascade.
DELETE_BATCH = 1000


def files() -> AsyncCollection[dict[str, Any]]:
    """``fs.files``: one document per blob."""
    return BlobFile.get_pymongo_collection()


def chunks() -> AsyncCollection[dict[str, Any]]:
    """``fs.chunks``: a blob's bytes, ``CHUNK_SIZE`` a document."""
    return BlobChunk.get_pymongo_collection()


def bucket() -> AsyncGridFSBucket:
    """The service's GridFS bucket, on the database the documents are bound to."""
    return AsyncGridFSBucket(files().database, bucket_name=BUCKET)


class CorruptBlob(HandoffError):
    """A blob's chunks are missing or of the wrong size: the storage was damaged outside the service."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What a blob's files document says, read once and used to answer and to stream."""

    file_id: ObjectId
    blob_id: str
    size: int
    chunk_size: int
    sha256: str
    content_type: str
    created_at: datetime

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> StoredFile:
        metadata = doc["metadata"]
        return cls(
            file_id=doc["_id"],
            blob_id=metadata["blob_id"],
            size=int(doc["length"]),
            chunk_size=int(doc["chunkSize"]),
            sha256=metadata["sha256"],
            content_type=metadata["content_type"],
            created_at=doc["uploadDate"],
        )


class ChunkWriter:
    """One GridFS file being written: bytes in through :meth:`write`, then :meth:`close` or :meth:`abort`.

    Nothing is visible until :meth:`close` inserts the files document; :meth:`abort` removes every chunk
    written (and the files document, if it got that far), even while the task that runs it is being cancelled.
    """

    def __init__(self, *, file_id: ObjectId | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self.file_id = file_id or ObjectId()
        self.chunk_size = chunk_size
        self.size = 0
        self._buffer = bytearray()
        self._batch: list[dict[str, Any]] = []
        self._chunk_count = 0
        self._in_flight: asyncio.Task[Any] | None = None

    async def write(self, data: bytes) -> None:
        """Append bytes; every full chunk joins the next batch, and a full batch goes to the database."""
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= self.chunk_size:
            await self._add(bytes(self._buffer[: self.chunk_size]))
            del self._buffer[: self.chunk_size]

    async def close(self, *, filename: str, metadata: Mapping[str, Any], upload_date: datetime) -> dict[str, Any]:
        """Write the last chunk and the files document; returns the files document."""
        if self._buffer:
            await self._add(bytes(self._buffer))
            self._buffer = bytearray()
        await self._send()
        await self._settle()
        document = {
            "_id": self.file_id,
            "length": Int64(self.size),
            "chunkSize": self.chunk_size,
            "uploadDate": upload_date,
            "filename": filename,
            "metadata": dict(metadata),
        }
        await files().insert_one(document)
        return document

    async def abort(self) -> None:
        """Remove whatever was written; runs to the end even if the calling task is cancelled meanwhile."""
        await asyncio.shield(self._remove())

    async def _remove(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            # Its outcome no longer matters, only that it has finished before its chunks are deleted.
            with contextlib.suppress(Exception):
                await in_flight
        self._batch = []
        self._buffer = bytearray()
        await files().delete_one({"_id": self.file_id})
        await chunks().delete_many({"files_id": self.file_id})

    async def _add(self, data: bytes) -> None:
        self._batch.append({"files_id": self.file_id, "n": self._chunk_count, "data": data})
        self._chunk_count += 1
        if len(self._batch) >= CHUNKS_PER_WRITE:
            await self._send()

    async def _send(self) -> None:
        """Start inserting the batch once the one before has been written (so one is in flight at a time)."""
        if not self._batch:
            return
        await self._settle()
        batch, self._batch = self._batch, []
        self._in_flight = asyncio.create_task(chunks().insert_many(batch))

    async def _settle(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight


async def read(stored: StoredFile, first: int, last: int) -> AsyncGenerator[bytes, None]:
    """Bytes ``first`` to ``last`` (inclusive) of a blob, a chunk (or the part of one in range) at a time.

    The next cursor reply is kept in flight while the chunks of the current one are sent: the database reads and
    ships a batch while the client takes the one before, where a plain ``async for`` would leave the socket idle
    for each ``getMore``. So a download holds two replies (:data:`CHUNKS_PER_READ` chunks each) at most.
    """
    if stored.size == 0 or last < first:
        return
    size = stored.chunk_size
    first_n, last_n = first // size, last // size
    count = -(-stored.size // size)  # chunks in the file
    cursor = chunks().find(
        {"files_id": stored.file_id, "n": {"$gte": first_n, "$lte": last_n}},
        {"_id": 0, "n": 1, "data": 1},
        sort=[("n", 1)],
        batch_size=CHUNKS_PER_READ,
    )
    expected = first_n
    ahead: asyncio.Task[list[dict[str, Any]]] = asyncio.ensure_future(cursor.to_list(CHUNKS_PER_READ))
    try:
        # Shielded: a task that awaits another cancels it when it is cancelled itself, and a download's task is
        # cancelled over and over once its client has gone (anyio's cancel scope delivers it again on every turn of
        # the loop), which would cut the reply in flight and then PyMongo's own killCursors after it.
        while batch := await asyncio.shield(ahead):
            ahead = asyncio.ensure_future(cursor.to_list(CHUNKS_PER_READ))
            for chunk in batch:
                n, data = chunk["n"], chunk["data"]
                wanted = size if n < count - 1 else stored.size - size * (count - 1)
                if n != expected or len(data) != wanted:
                    raise CorruptBlob(f"blob {stored.blob_id}: chunk {expected} is missing or has the wrong size")
                start = first - n * size if n == first_n else 0
                end = last - n * size + 1 if n == last_n else len(data)
                yield data if (start, end) == (0, len(data)) else data[start:end]
                expected += 1
    finally:
        # Shielded: a client that goes away cancels the response's task, and the server's cursor must close anyway.
        await asyncio.shield(_stop_reading(cursor, ahead))
    if expected != last_n + 1:
        raise CorruptBlob(f"blob {stored.blob_id}: chunk {expected} is missing")


async def _stop_reading(cursor: AsyncCursor[dict[str, Any]], ahead: asyncio.Task[Any]) -> None:
    """End a read: the reply in flight, if any, is let arrive and dropped (its outcome no longer matters), then the
    cursor is closed. Not cancelled: a ``getMore`` cut half-way costs a pooled connection, and one reply of
    :data:`CHUNKS_PER_READ` chunks is soon there."""
    with contextlib.suppress(BaseException):
        await ahead
    await cursor.close()


async def delete(file_id: ObjectId) -> bool:
    """Delete one file and its chunks through the bucket; ``False`` when it was gone already."""
    try:
        await bucket().delete(file_id)
    except NoFile:
        return False
    return True


async def delete_matching(query: Mapping[str, Any]) -> int:
    """Delete every file matching ``query`` (on ``fs.files``) and their chunks; returns how many files."""
    deleted = 0
    batch: list[ObjectId] = []
    async for doc in files().find(query, {"_id": 1}):
        batch.append(doc["_id"])
        if len(batch) == DELETE_BATCH:
            deleted += await delete_ids(batch)
            batch = []
    if batch:
        deleted += await delete_ids(batch)
    return deleted


async def delete_ids(file_ids: list[ObjectId]) -> int:
    """Delete the files of these ids and their chunks, whether or not a files document was written (the chunks of
    an upload that never finished have none); returns how many files documents there were."""
    if not file_ids:
        return 0
    # The files first, as the bucket does: once a file document is gone, no read finds its half-deleted chunks.
    result = await files().delete_many({"_id": {"$in": file_ids}})
    await chunks().delete_many({"files_id": {"$in": file_ids}})
    return result.deleted_count
