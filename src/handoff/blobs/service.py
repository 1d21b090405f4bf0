"""Blob rules: which session takes a blob and how big, what it counts against, who reads and deletes it.

A blob belongs to one session of one workspace, and every lookup names all three (:func:`blob_key`), so a blob of
another workspace is not found, exactly like one that does not exist. Uploads go to open sessions only, up to
``HANDOFF_MAX_BLOB_BYTES``, and count toward ``HANDOFF_MAX_SESSION_BYTES`` in the session's ``payload_bytes``
(``stored_bytes.blobs`` by kind). The order of an upload is what keeps it exact under concurrency:

1. one read of the session: absent (404) or ended (409);
2. its bytes reserved in the session (``reservation.Reservation``: one guarded ``$inc`` with the cap in its
   filter, the declared ``Content-Length`` at once or step by step ahead of a streamed body), so concurrent
   uploads and appends never pass the cap together (409 when there is no room);
3. the body into GridFS (``upload.receive``), stopped as soon as it passes the blob limit (413), with nothing
   left behind;
4. the reservation settled to the blob's exact size by one guarded update that matches only while the session is
   open. When anything fails (the session ended or was deleted while the body arrived, the client went away), the
   blob just written is deleted and the reservation given back.

A session deleted while a blob arrives therefore never keeps it: :func:`delete_session_blobs` runs after the
session is gone, and an upload that finishes later finds no session to count itself in and removes itself.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from handoff import clock, metrics
from handoff.blobs import delivery, storage, upload
from handoff.blobs.reservation import Reservation
from handoff.blobs.schemas import BlobRead
from handoff.blobs.storage import StoredFile
from handoff.config import Settings
from handoff.errors import FieldError, Invalid, NotFound, TooLarge
from handoff.sessions import store
from handoff.sessions.lifecycle import is_ended

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_CONTENT_TYPE_CHARS = 255
#: ``type/subtype`` (RFC 9110 tokens), then any parameters in printable ASCII.
_CONTENT_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*;[\x20-\x7e]*)?", re.ASCII)


def new_blob_id() -> str:
    """``blob_<32 hex>``."""
    return f"blob_{uuid.uuid4().hex}"


def session_blobs(workspace_id: str, session_id: str) -> dict[str, Any]:
    """The filter on ``fs.files`` of one session's blobs (a prefix of both blob indexes)."""
    return {"metadata.workspace_id": workspace_id, "metadata.session_id": session_id}


def blob_key(workspace_id: str, session_id: str, blob_id: str) -> dict[str, Any]:
    """The filter that finds one blob, only in its own session of its own workspace."""
    return {**session_blobs(workspace_id, session_id), "metadata.blob_id": blob_id}


def blob_read(stored: StoredFile) -> BlobRead:
    return BlobRead(
        blob_id=stored.blob_id,
        size=stored.size,
        sha256=stored.sha256,
        content_type=stored.content_type,
        created_at=stored.created_at,
    )


def check_content_type(value: str | None) -> str:
    """The Content-Type to store, as given (``application/octet-stream`` when absent), or 422."""
    if value is None or not value.strip():
        return DEFAULT_CONTENT_TYPE
    value = value.strip()
    if len(value) > MAX_CONTENT_TYPE_CHARS or _CONTENT_TYPE.fullmatch(value) is None:
        raise Invalid(
            f"Content-Type {value[:100]!r} is not a media type",
            errors=[FieldError(field="content_type", message="expected type/subtype, at most 255 characters")],
        )
    return value


def _blob_not_found(session_id: str, blob_id: str) -> NotFound:
    return NotFound(f"blob {blob_id} not found in session {session_id}")


def _too_large(settings: Settings) -> TooLarge:
    return TooLarge(f"the blob is over {settings.max_blob_bytes:,} bytes (HANDOFF_MAX_BLOB_BYTES)")


# Upload ------------------------------------------------------------------------------------------------------


async def upload_blob(
    workspace_id: str,
    session_id: str,
    body: AsyncIterable[bytes],
    *,
    content_type: str | None,
    declared_size: int | None,
    settings: Settings,
) -> BlobRead:
    """Store ``body`` as a new blob of an open session; see the module docstring for the order of things."""
    content_type = check_content_type(content_type)
    if declared_size is not None and declared_size > settings.max_blob_bytes:
        raise _too_large(settings)
    session = await store.load(workspace_id, session_id, {"_id": 0, "status": 1})
    if is_ended(session["status"]):
        raise store.ended(session_id, session["status"])
    held = Reservation(workspace_id, session_id, settings=settings)
    key = {"workspace_id": workspace_id, "session_id": session_id, "blob_id": new_blob_id()}
    limit = settings.max_blob_bytes
    stored: StoredFile | None = None
    try:
        await held.ensure(declared_size or 0)
        stored = await upload.receive(
            held.hold_ahead(body, limit=limit), limit=limit, key=key, content_type=content_type, file_id=held.file_id
        )
        await held.settle(stored.size)
    except BaseException as exc:
        await held.release()
        if stored is not None:
            await storage.delete(stored.file_id)
        if isinstance(exc, upload.OverLimit):
            raise _too_large(settings) from None
        raise
    metrics.blob_bytes_in(stored.size)
    return blob_read(stored)


# Reads -------------------------------------------------------------------------------------------------------


async def get_blob(workspace_id: str, session_id: str, blob_id: str) -> StoredFile:
    """One blob's files document, or 404."""
    doc = await storage.files().find_one(blob_key(workspace_id, session_id, blob_id))
    if doc is None:
        raise _blob_not_found(session_id, blob_id)
    return StoredFile.from_document(doc)


@dataclass(frozen=True, slots=True)
class Download:
    """What a GET or HEAD of a blob answers: the status, the headers, and (for a GET) the bytes."""

    stored: StoredFile
    part: delivery.ByteRange | None
    status: int
    headers: dict[str, str]

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The bytes, read from GridFS chunk by chunk as they are sent (and counted as they go)."""
        part = self.part or delivery.ByteRange(0, self.stored.size - 1)
        # ``aclosing``: closing this generator (a download cut off) must close the read, which holds the cursor.
        async with contextlib.aclosing(storage.read(self.stored, part.first, part.last)) as chunks:
            async for chunk in chunks:
                yield chunk
                metrics.blob_bytes_out(len(chunk))


async def download(workspace_id: str, session_id: str, blob_id: str, *, range_header: str | None) -> Download:
    """A blob ready to send: all of it (200), or the part ``range_header`` names (206); 404, 416."""
    stored = await get_blob(workspace_id, session_id, blob_id)
    part = delivery.byte_range(range_header, stored.size)
    return Download(
        stored=stored,
        part=part,
        status=206 if part else 200,
        headers=delivery.headers(
            blob_id=stored.blob_id,
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
            part=part,
        ),
    )


async def list_blobs(workspace_id: str, session_id: str, *, offset: int, limit: int) -> tuple[list[BlobRead], int]:
    """A page of the session's blobs, oldest first, and how many it has; 404 for a session not of the workspace."""
    await store.load(workspace_id, session_id, {"_id": 1})
    query = session_blobs(workspace_id, session_id)
    total = await storage.files().count_documents(query)
    cursor = storage.files().find(query).sort([("uploadDate", 1), ("metadata.blob_id", 1)]).skip(offset).limit(limit)
    return [blob_read(StoredFile.from_document(doc)) async for doc in cursor], total


async def check_blob_refs(workspace_id: str, session_id: str, blob_ids: Iterable[str | None]) -> None:
    """Raise :class:`Invalid` (field ``blob_id``) unless every id given is a blob of this session.

    For appends whose entries reference blobs: ``None`` (no reference) is skipped; one covered read of the
    blob index answers for any number of ids.
    """
    wanted = {blob_id for blob_id in blob_ids if blob_id is not None}
    if not wanted:
        return
    cursor = storage.files().find(
        {**session_blobs(workspace_id, session_id), "metadata.blob_id": {"$in": sorted(wanted)}},
        {"_id": 0, "metadata.blob_id": 1},
    )
    found = {doc["metadata"]["blob_id"] async for doc in cursor}
    missing = sorted(wanted - found)
    if missing:
        raise Invalid(
            f"blob {missing[0]} is not a blob of session {session_id}",
            errors=[
                FieldError(field="blob_id", message=f"{blob_id} is not a blob of this session") for blob_id in missing
            ],
        )


# Deletes -----------------------------------------------------------------------------------------------------


async def delete_blob(workspace_id: str, session_id: str, blob_id: str) -> None:
    """Delete one blob (any session status: erasure) and take its bytes out of the session's count; else 404."""
    doc = await storage.files().find_one(blob_key(workspace_id, session_id, blob_id), {"_id": 1, "length": 1})
    if doc is None or not await storage.delete(doc["_id"]):  # a concurrent delete won: only one uncounts it
        raise _blob_not_found(session_id, blob_id)
    size = int(doc["length"])
    await store.sessions().update_one(
        store.key(workspace_id, session_id),
        {"$inc": {"payload_bytes": -size, "stored_bytes.blobs": -size}, "$set": {"updated_at": clock.now()}},
    )


async def delete_session_blobs(
    workspace_id: str, session_id: str, *, reservations: Mapping[str, Mapping[str, Any]] | None = None
) -> int:
    """Delete every blob of a session; returns how many. Call it after the session document is deleted.

    The session's counters are not touched (the session is gone). Run after the session's deletion, an upload
    still arriving cannot outlive the cascade: its closing update finds no session, and it deletes itself.
    ``reservations``: the deleted document's uploads in progress, whose files (chunks without a files document
    yet, or those of a dead upload) go too: a live one fails anyway, its session gone.
    """
    uploads = [held["file_id"] for held in (reservations or {}).values() if isinstance(held.get("file_id"), ObjectId)]
    await storage.delete_ids(uploads)
    return await storage.delete_matching(session_blobs(workspace_id, session_id))
