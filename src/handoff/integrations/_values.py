"""What the adapters' entries are made of, without I/O: ids made from a framework's keys, and packed values.

Entry ids are at most 64 characters of ``[A-Za-z0-9_.:-]`` (the REST contract), so a framework's own keys are
hashed into them where they do not fit. A packed value (``_entries.pack``) is ``{"type", "b64"}`` inline or
``{"type", "blob_id"}`` for one stored as a blob. Apart from ``_entries`` (async I/O) so that its generated
blocking twin, ``_entries_sync``, shares these instead of carrying copies.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

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


def packed_fields(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields of an entry's ``data`` that :func:`pack` made."""
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, dict) and "type" in value and ("b64" in value or "blob_id" in value)
    }


def blob_ids(data: dict[str, Any]) -> list[str]:
    """The blobs an entry's values stand on (none when all are inline)."""
    return [value["blob_id"] for value in packed_fields(data).values() if "blob_id" in value]


def referencing(entry: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with the ``blob_id`` of its main value, so the service checks the blob is stored and readers see it."""
    return {**entry, "blob_id": value["blob_id"]} if "blob_id" in value else entry
