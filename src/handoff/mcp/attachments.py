"""An ``attach_file`` retried with the id it used before: the stored artifact when it is the same file.

``record_artifact`` is idempotent by id (the same id and body answer the artifact stored first), but
``attach_file`` uploads its content before it records the artifact, so a retry names a *new* blob and its body
differs from the stored one in ``blob_id`` alone. When such an artifact is refused and one is stored under its
id (:func:`recorded`), :func:`records_same_file` tells a retry from a reuse: the same path, action and metadata
and a stored blob with the same bytes (the same sha256, hashed as it streams, never held) answer the artifact
stored first; anything else is a clear 422. The blob the retry uploaded is deleted by the caller either way.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

from handoff.blobs.schemas import BlobRead
from handoff.client.errors import HandoffClientError
from handoff.errors import HandoffError
from handoff.mcp.backend import HandoffBackend
from handoff.sessions.schemas import Artifact


class _Sha256Sink(io.BytesIO):
    """A binary file that keeps only the sha256 of what is written to it (a download hashed, not held)."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()

    def write(self, data: Any, /) -> int:
        view = memoryview(data)
        self.digest.update(view)
        return view.nbytes


async def _blob_sha256(backend: HandoffBackend, session_id: str, blob_id: str) -> str | None:
    """The sha256 of a blob's bytes, or ``None`` when it cannot be read (deleted since)."""
    sink = _Sha256Sink()
    try:
        await backend.download_blob(session_id, blob_id, to=sink)
    except (HandoffClientError, HandoffError):
        return None
    return sink.digest.hexdigest()


async def recorded(backend: HandoffBackend, session_id: str, entry_id: str) -> Artifact | None:
    """The artifact stored under ``entry_id``, or ``None`` (then the refusal was not about the id)."""
    try:
        return await backend.get_artifact(session_id, entry_id)
    except (HandoffClientError, HandoffError):
        return None


async def records_same_file(
    backend: HandoffBackend,
    artifact: Artifact,
    *,
    session_id: str,
    path: str,
    action: str,
    metadata: Mapping[str, Any] | None,
    uploaded: BlobRead,
) -> bool:
    """Whether ``artifact`` records this same file: the same path, action and metadata, and a blob whose bytes
    are those of ``uploaded`` (the retry's upload)."""
    same_record = (artifact.path, artifact.action.value, artifact.metadata or {}) == (path, action, metadata or {})
    if not same_record or artifact.blob_id is None:
        return False
    return await _blob_sha256(backend, session_id, artifact.blob_id) == uploaded.sha256


def reused_id(entry_id: str) -> str:
    """The tool error of an id already used for another file."""
    return (
        f"422 Invalid: artifact id {entry_id!r} is already recorded for another file (its path, action, metadata "
        "or content differ); retry with the same arguments, or use a new id"
    )
