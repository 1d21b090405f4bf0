"""The bytes of the MCP blob resource, bounded: an MCP resource is one message, never a stream.

A resource read answers all of its content at once (base64 in one JSON-RPC message, a third larger than the
bytes), so the blob resource serves blobs up to :data:`MAX_RESOURCE_BLOB_BYTES` and refuses a larger one with a
clear error naming the REST route that streams it (with ``Range``) instead. The blob is read into a buffer that
refuses to grow past the bound, so a read of a larger blob stops (and frees its cursor or connection) as soon as
it passes it: the memory of a read is the bound, whatever the blob's size.
"""

from __future__ import annotations

import io
from typing import Any

from handoff.mcp.backend import HandoffBackend

#: The largest blob the resource serves (about 11 MB of base64 in the answer).
MAX_RESOURCE_BLOB_BYTES = 8 * 1024 * 1024


class BlobTooLargeForResource(Exception):
    """The blob is larger than a resource read serves."""

    def __init__(self, session_id: str, blob_id: str, limit: int) -> None:
        super().__init__(
            f"413 Too large: blob {blob_id} is over the {limit:,} bytes the MCP resource serves; download it "
            f"from the REST API (GET /v1/sessions/{session_id}/blobs/{blob_id}, with Range for a part)"
        )


class _BoundedBuffer(io.BytesIO):
    """A buffer that raises :class:`OverflowError` rather than hold more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any, /) -> int:
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise OverflowError(self.limit)
        return super().write(data)


async def read_blob(backend: HandoffBackend, session_id: str, blob_id: str, *, limit: int) -> bytes:
    """The blob's bytes when it has at most ``limit``, else :class:`BlobTooLargeForResource`."""
    buffer = _BoundedBuffer(limit)
    try:
        await backend.download_blob(session_id, blob_id, to=buffer)
    except OverflowError:
        raise BlobTooLargeForResource(session_id, blob_id, limit) from None
    return buffer.getvalue()
