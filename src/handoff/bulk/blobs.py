"""``handoff export --blobs DIR`` and ``handoff import --blobs DIR``: a session's blobs beside its JSON Lines.

A move of sessions keeps their content. The directory holds one file per blob, ``<session_id>/<blob_id>``, and a
manifest, ``blobs.jsonl``: one line per blob with its session, id, size, sha256, content type and creation time.
Both sides stream (a blob is never held whole) and are kept apart from the session rows, so the JSON Lines stay
what they were and an export without ``--blobs`` is unchanged.

The import runs after the sessions' import, into the same workspace: a blob goes in under its own id when its
session is there and it is not (a re-run skips what it already brought), its bytes must hash to the manifest's
sha256, and then each session's blob bytes are set from what GridFS holds (``stored_bytes.blobs`` and
``payload_bytes``, one pipeline update a session), so a re-run or an ``--on-conflict replace`` of the sessions
leaves the counts exact. The session byte cap is not applied: an import restores what a service already held.
An import killed midway leaves the chunks of the blob it was writing; its next run deletes them first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bson import ObjectId

from handoff import clock
from handoff.blobs import service as blobs
from handoff.blobs import storage, upload
from handoff.config import Settings
from handoff.sessions import store
from handoff.sessions.models import SessionStatus
from handoff.workspaces import service as workspaces

MANIFEST = "blobs.jsonl"
READ_BYTES = 1024 * 1024
_BLOB_ID = re.compile(r"blob_[0-9a-f]{32}")


def _blob_path(directory: Path, session_id: str, blob_id: str) -> Path:
    # Session ids are printable ASCII: quote what a file system would read as a separator.
    safe = session_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    if safe.startswith("."):  # never "." or "..": a manifest cannot point outside the directory
        safe = "%2E" + safe[1:]
    return directory / safe / blob_id


async def export_blobs(
    directory: str | Path, *, workspace: str | None = None, status: SessionStatus | str | None = None
) -> int:
    """Write the blobs of the sessions ``handoff export`` writes (same workspace and status); returns how many."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a CLI's export: nothing else waits on this loop
    query: dict[str, Any] = {}
    if workspace is not None:
        query["workspace_id"] = (await workspaces.get_workspace(workspace)).workspace_id
    if status is not None:
        query["status"] = SessionStatus(status).value
    count = 0
    with (root / MANIFEST).open("w", encoding="utf-8") as manifest:
        sessions = store.sessions().find(query, {"_id": 0, "workspace_id": 1, "session_id": 1})
        async for session in sessions.sort([("workspace_id", 1), ("session_id", 1)]):
            files = storage.files().find(blobs.session_blobs(session["workspace_id"], session["session_id"]))
            async for doc in files.sort([("uploadDate", 1), ("metadata.blob_id", 1)]):
                stored = storage.StoredFile.from_document(doc)
                target = _blob_path(root, session["session_id"], stored.blob_id)
                target.parent.mkdir(exist_ok=True)
                with target.open("wb") as out:
                    async for chunk in storage.read(stored, 0, stored.size - 1):
                        out.write(chunk)
                line = {
                    "session_id": session["session_id"],
                    "blob_id": stored.blob_id,
                    "size": stored.size,
                    "sha256": stored.sha256,
                    "content_type": stored.content_type,
                    "created_at": stored.created_at.isoformat(),
                }
                manifest.write(json.dumps(line) + "\n")
                count += 1
    return count


@dataclass
class BlobImport:
    """What ``import --blobs`` did: blobs stored, already there, refused (with why), sessions recounted."""

    imported: int = 0
    present: int = 0
    rejected: list[str] = field(default_factory=list)
    sessions: int = 0

    def summary(self) -> str:
        return (
            f"blobs: {self.imported} imported, {self.present} already there, {len(self.rejected)} rejected, "
            f"{self.sessions} sessions recounted"
        )


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while piece := file.read(READ_BYTES):
        yield piece


async def import_blobs(directory: str | Path, *, workspace: str, settings: Settings) -> BlobImport:
    """Read back what :func:`export_blobs` wrote into the workspace with slug ``workspace``."""
    root = Path(directory)
    workspace_id = (await workspaces.get_workspace(workspace)).workspace_id
    result = BlobImport()
    touched: set[str] = set()
    with (root / MANIFEST).open(encoding="utf-8") as manifest:
        for number, raw in enumerate(manifest, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                session_id, blob_id = str(line["session_id"]), str(line["blob_id"])
                sha256, content_type = str(line["sha256"]), blobs.check_content_type(line.get("content_type"))
            except (ValueError, KeyError, TypeError) as exc:
                result.rejected.append(f"{MANIFEST} line {number}: {exc}")
                continue
            reason = await _import_one(
                root, workspace_id, session_id, blob_id, sha256=sha256, content_type=content_type, settings=settings
            )
            if reason == "present":
                result.present += 1
            elif reason is None:
                result.imported += 1
            else:
                result.rejected.append(f"{MANIFEST} line {number} ({blob_id}): {reason}")
                continue
            touched.add(session_id)
    for session_id in sorted(touched):
        result.sessions += await recount(workspace_id, session_id)
    return result


async def _import_one(
    root: Path, workspace_id: str, session_id: str, blob_id: str, *, sha256: str, content_type: str, settings: Settings
) -> str | None:
    """Store one blob; ``None`` when stored, ``"present"`` when it already was, else why it was refused."""
    if (refused := await _refusal(workspace_id, session_id, blob_id)) is not None:
        return refused
    path = _blob_path(root, session_id, blob_id)
    key = {"workspace_id": workspace_id, "session_id": session_id, "blob_id": blob_id}
    file_id = _file_id(key)
    await storage.chunks().delete_many({"files_id": file_id})  # what a killed run of this import wrote of it
    try:
        with path.open("rb") as file:
            await upload.receive(
                _chunks(file),
                limit=settings.max_blob_bytes,
                key=key,
                content_type=content_type,
                expected_sha256=sha256,
                file_id=file_id,
            )
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except upload.OverLimit:
        return f"over HANDOFF_MAX_BLOB_BYTES ({settings.max_blob_bytes:,} bytes)"
    except ValueError as exc:
        return str(exc)
    return None


def _file_id(key: Mapping[str, str]) -> ObjectId:
    """The GridFS file id an imported blob is written under, the same in every run of the import: a run killed
    midway (no ``abort`` runs then) leaves chunks under it, and the next run of the import deletes them before it
    writes the blob again. Only while the blob is absent, so never a stored blob's chunks."""
    name = "/".join((key["workspace_id"], key["session_id"], key["blob_id"]))
    return ObjectId(hashlib.sha256(name.encode()).digest()[:12])


async def _refusal(workspace_id: str, session_id: str, blob_id: str) -> str | None:
    """Why a manifest line is not imported (``"present"``: it was already), before its file is read."""
    if _BLOB_ID.fullmatch(blob_id) is None:
        return "not a blob id"
    if await store.sessions().count_documents(store.key(workspace_id, session_id), limit=1) == 0:
        return f"session {session_id} is not in the workspace (import the sessions first)"
    if await storage.files().count_documents(blobs.blob_key(workspace_id, session_id, blob_id), limit=1):
        return "present"
    return None


async def recount(workspace_id: str, session_id: str) -> int:
    """Set a session's blob bytes to what GridFS holds for it (one update; 1 when the session was there)."""
    totals = await storage.files().aggregate(
        [{"$match": blobs.session_blobs(workspace_id, session_id)}, {"$group": {"_id": None, "n": {"$sum": "$length"}}}]
    )
    total = next(iter([doc["n"] async for doc in totals]), 0)
    update = [
        {
            "$set": {
                "payload_bytes": {
                    "$add": [
                        {"$subtract": [{"$ifNull": ["$payload_bytes", 0]}, {"$ifNull": ["$stored_bytes.blobs", 0]}]},
                        total,
                    ]
                },
                "stored_bytes.blobs": total,
                "updated_at": clock.now(),
            }
        }
    ]
    result = await store.sessions().update_one({**store.key(workspace_id, session_id), **store.PAGED}, update)
    return result.matched_count
