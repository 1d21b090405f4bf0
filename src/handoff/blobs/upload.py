"""Receiving a blob: a stream of bytes into a new GridFS file, hashed and counted on the way.

The stream is read piece by piece as it arrives (an HTTP body, a file being imported), so memory holds the
writer's few chunks whatever the size. Past ``limit`` bytes it stops at once with :class:`OverLimit`. However it
ends other than complete (over the limit, the client gone, the database failing, the task cancelled), the chunks
written so far are deleted before the error goes on: an upload leaves a whole blob or nothing. A worker killed
mid-stream deletes nothing; an upload's file is named in its session's reservation for that case
(``reservation.reclaim_lapsed`` deletes its chunks once the reservation lapses).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, Mapping

from bson import ObjectId

from handoff import clock
from handoff.blobs.storage import ChunkWriter, StoredFile


class OverLimit(Exception):
    """The stream passed the byte limit it was received under."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


async def receive(
    stream: AsyncIterable[bytes],
    *,
    limit: int,
    key: Mapping[str, str],
    content_type: str,
    expected_sha256: str | None = None,
    file_id: ObjectId | None = None,
) -> StoredFile:
    """Store ``stream`` as a new GridFS file whose metadata is ``key`` (workspace, session, blob id) and its type.

    ``expected_sha256``: the content must hash to it (an import), else :class:`ValueError` and nothing is kept.
    ``file_id``: the GridFS file's id, when the caller has named it beforehand (an upload's reservation does, so
    that the chunks of an upload whose worker died can be found; see ``reservation.reclaim_lapsed``).
    """
    writer = ChunkWriter(file_id=file_id)
    digest = hashlib.sha256()
    try:
        async for piece in stream:
            if writer.size + len(piece) > limit:
                raise OverLimit(limit)
            digest.update(piece)
            await writer.write(piece)
        sha256 = digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise ValueError(f"the content hashes to sha256 {sha256}, not {expected_sha256}")
        document = await writer.close(
            filename=key["blob_id"],
            metadata={**key, "sha256": sha256, "content_type": content_type},
            upload_date=clock.now(),
        )
    except BaseException:
        await writer.abort()
        raise
    return StoredFile.from_document(document)
