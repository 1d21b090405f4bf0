"""Shared by the adapters: deterministic entry ids, values inline or as blobs, paging through a log by anchors.

Entry ids are at most 64 characters of ``[A-Za-z0-9_.:-]`` (the REST contract), so a framework's own keys are
hashed into them where they do not fit. A serialized value is stored base64 inside its entry while it fits well
under the service's 64 KiB per-entry payload bound; a larger one is uploaded first as one blob of the session
(``application/octet-stream``) and the entry carries its ``blob_id``, so the service refuses an entry whose blob
is not stored and a reader never meets a value that is half there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from handoff.client import AsyncHandoffClient, NotFound
from handoff.sessions.schemas import TypedEntry

INLINE_CHARS = 48_000  # base64 characters in an entry: under HANDOFF_MAX_PAYLOAD_BYTES (64 KiB) with its JSON around it
BLOB_CONTENT_TYPE = "application/octet-stream"  # serde output is opaque bytes; its type is in the entry
BATCH_CHARS = 700_000  # base64 characters per batch request: under the 1 MiB request body limit
BATCH_ENTRIES = 1000  # the batch route's bound
PAGE = 1000  # the work-log route's largest page

_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")


def digest(text: str, length: int) -> str:
    """A short, stable hex token for a key that cannot be used as it is."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def safe_token(value: str, length: int) -> str:
    """``value`` itself when it is of the id alphabet and short enough, else a hash of it of that length."""
    if len(value) <= length and _SAFE_ID.fullmatch(value):
        return value
    return "h" + digest(value, length - 1)


def external_id(framework: str, key: str) -> str:
    """The session ``external_id`` of a framework's own id: readable when it can be, a hash when not."""
    candidate = f"{framework}:{key}"
    if len(candidate) <= 255 and _PRINTABLE.fullmatch(candidate):
        return candidate
    return f"{framework}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


async def pack(client: AsyncHandoffClient, session_id: str, kind: str, payload: bytes) -> dict[str, Any]:
    """A serialized value as an entry field: inline when small, else uploaded as a blob the field names."""
    text = base64.b64encode(payload).decode("ascii")
    if len(text) <= INLINE_CHARS:
        return {"type": kind, "b64": text}
    blob = await client.upload_blob(session_id, payload, content_type=BLOB_CONTENT_TYPE)
    return {"type": kind, "blob_id": blob.blob_id}


async def unpack(client: AsyncHandoffClient, session_id: str, value: dict[str, Any]) -> tuple[str, bytes]:
    """The ``(type, bytes)`` a :func:`pack` field stands for, downloading its blob when it has one."""
    if "b64" in value:
        return value["type"], base64.b64decode(value["b64"])
    buffer = io.BytesIO()
    await client.download_blob(session_id, value["blob_id"], to=buffer)
    return value["type"], buffer.getvalue()


def _packed(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields of an entry's ``data`` that :func:`pack` made."""
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, dict) and "type" in value and ("b64" in value or "blob_id" in value)
    }


def blob_ids(data: dict[str, Any]) -> list[str]:
    """The blobs an entry's values stand on (none when all are inline)."""
    return [value["blob_id"] for value in _packed(data).values() if "blob_id" in value]


def referencing(entry: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with the ``blob_id`` of its main value, so the service checks the blob is stored and readers see it."""
    return {**entry, "blob_id": value["blob_id"]} if "blob_id" in value else entry


async def delete_blobs(client: AsyncHandoffClient, session_id: str, ids: Sequence[str]) -> None:
    """Remove blobs no entry stands on any more (one already gone is fine: the client settles its 404)."""
    for blob_id in ids:
        await client.delete_blob(session_id, blob_id)


async def remove(client: AsyncHandoffClient, session_id: str, removed: Sequence[TypedEntry]) -> None:
    """Delete entries, then the blobs their values stood on (entries first, so nobody reads a missing blob)."""
    for entry in removed:
        with contextlib.suppress(NotFound):
            await client.delete_work_log_entry(session_id, entry.id)
    await delete_blobs(client, session_id, [blob for entry in removed for blob in blob_ids(entry.data)])


async def delete_all_blobs(client: AsyncHandoffClient, session_id: str) -> None:
    """Remove every blob of a session whose log was cleared (the session itself stays)."""
    while True:
        page = await client.list_blobs(session_id, limit=PAGE)
        await delete_blobs(client, session_id, [blob.blob_id for blob in page.items])
        if len(page.items) < PAGE:
            return


async def copied(client: AsyncHandoffClient, source: str, target: str, entry: TypedEntry) -> dict[str, Any]:
    """An entry of ``source`` to append to ``target``: each of its blobs uploaded there (a blob is per session)."""
    data = dict(entry.data)
    renamed: dict[str, str] = {}
    for key, value in _packed(entry.data).items():
        if "blob_id" in value:
            data[key] = await pack(client, target, *await unpack(client, source, value))
            renamed[value["blob_id"]] = data[key]["blob_id"]
    item = {"id": entry.id, "type": entry.type, "message": entry.message, "data": data}
    return {**item, "blob_id": renamed[entry.blob_id]} if entry.blob_id in renamed else item


async def entries(
    client: AsyncHandoffClient,
    session_id: str,
    *,
    id_prefix: str | None = None,
    order: Literal["asc", "desc"] = "asc",
    before: str | None = None,
    page: int = PAGE,
) -> AsyncIterator[TypedEntry]:
    """The typed entries of a session's work log, page by page, each page an index seek from the last id seen."""
    after: str | None = None
    while True:
        result = await client.get_work_log(
            session_id, id_prefix=id_prefix, order=order, limit=page, before=before, after=after
        )
        for item in result.items:
            if isinstance(item, TypedEntry):
                yield item
        if len(result.items) < page:
            return
        # In descending order "before" an entry means older, the direction of travel.
        if order == "desc":
            before, after = result.items[-1].id, None
        else:
            before, after = None, result.items[-1].id


async def append_in_batches(client: AsyncHandoffClient, session_id: str, items: Sequence[dict[str, Any]]) -> None:
    """Append entries in order, in as few batch requests as the body and batch bounds allow.

    Each batch is atomic; the order of the entries is kept across batches.
    """
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        weight = len(str(item.get("data", "")))
        if batch and (size + weight > BATCH_CHARS or len(batch) >= BATCH_ENTRIES):
            await client.log_work_batch(session_id, batch)
            batch, size = [], 0
        batch.append(item)
        size += weight
    if batch:
        await client.log_work_batch(session_id, batch)
