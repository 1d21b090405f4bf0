"""Shared by the adapters: deterministic entry ids, values split into parts, paging through a log by anchors.

Entry ids are at most 64 characters of ``[A-Za-z0-9_.:-]`` (the REST contract), so a framework's own keys are
hashed into them where they do not fit. A value is stored base64 inside its entry while it fits well under the
service's 64 KiB per-entry payload bound; a larger one is split into ``info`` entries of ``PART_CHARS`` that
share an id prefix, read back with one ``id_prefix`` query (the blobs routes, once on main, are the place for
them instead).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from handoff.client import AsyncHandoffClient
from handoff.sessions.schemas import TypedEntry

PART_CHARS = 48_000  # base64 characters per entry: under HANDOFF_MAX_PAYLOAD_BYTES (64 KiB) with its JSON around it
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


def pack(key: str, kind: str, payload: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A serialized value as an entry field, and the part entries to store before it when it is large."""
    text = base64.b64encode(payload).decode("ascii")
    if len(text) <= PART_CHARS:
        return {"type": kind, "b64": text}, []
    prefix = part_prefix(key)
    chunks = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)]
    parts = [
        {
            "id": f"{prefix}{n:05d}",
            "type": "info",
            "message": f"part {n + 1} of {len(chunks)} of a large value",
            "data": {"b64": chunk},
        }
        for n, chunk in enumerate(chunks)
    ]
    return {"type": kind, "parts": len(chunks), "key": key}, parts


def part_prefix(key: str) -> str:
    return f"pt.{digest(key, 24)}."


async def unpack(client: AsyncHandoffClient, session_id: str, value: dict[str, Any]) -> tuple[str, bytes]:
    """The ``(type, bytes)`` a :func:`pack` field stands for, reading its parts in one prefix query when split."""
    if "b64" in value:
        return value["type"], base64.b64decode(value["b64"])
    chunks = [entry.data["b64"] async for entry in entries(client, session_id, id_prefix=part_prefix(value["key"]))]
    if len(chunks) != value["parts"]:
        raise ValueError(f"a stored value has {len(chunks)} of its {value['parts']} parts")
    return value["type"], base64.b64decode("".join(chunks))


def part_ids(value: dict[str, Any]) -> list[str]:
    """The ids of the part entries a packed field was split into (none when inline)."""
    if "parts" not in value:
        return []
    prefix = part_prefix(value["key"])
    return [f"{prefix}{n:05d}" for n in range(value["parts"])]


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

    Each batch is atomic; callers put the entry that makes a value visible last, so a reader never finds a
    checkpoint whose parts are not all stored.
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
