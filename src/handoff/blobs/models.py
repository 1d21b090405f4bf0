"""The GridFS collections blobs live in, declared as documents so their indexes are created with the others.

A blob is a GridFS file of the service's database, in the default bucket (``fs.files`` and ``fs.chunks``, chunks
of GridFS's default 255 KiB), so any driver's ``GridFSBucket`` and MongoDB's own tools read it. Who it belongs to
is in the file's ``metadata`` (``workspace_id``, ``session_id``, ``blob_id``) with its ``sha256`` and
``content_type``, and every read names all three keys, workspace first, through :data:`BLOB_KEY_INDEX`.

The documents exist for their collections and indexes (``handoff.db.DOCUMENT_MODELS`` creates them at start-up);
files and chunks are written and read as raw GridFS documents (``storage.py``), never through Beanie.
"""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document
from bson import Int64, ObjectId
from pydantic import BaseModel, ConfigDict
from pymongo import IndexModel

BUCKET = "fs"

#: The index every blob read goes through: a blob is found only by its workspace, session and id.
BLOB_KEY_INDEX = "workspace_session_blob_unique"
#: A session's blobs in upload order: listings, and the cascade when a session is deleted.
BLOB_LISTING_INDEX = "workspace_session_uploaded"


class BlobMetadata(BaseModel):
    """What a blob's GridFS file says about it: whose it is and what it holds."""

    model_config = ConfigDict(extra="allow")

    workspace_id: str
    session_id: str
    blob_id: str
    sha256: str
    content_type: str


class BlobFile(Document):
    """A GridFS file document (``fs.files``) holding one blob."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    length: Int64 | int
    chunkSize: int  # noqa: N815 - GridFS's own field names
    uploadDate: datetime  # noqa: N815
    filename: str
    metadata: BlobMetadata

    class Settings:
        name = f"{BUCKET}.files"
        use_state_management = False
        indexes = [
            IndexModel(
                [
                    ("metadata.workspace_id", pymongo.ASCENDING),
                    ("metadata.session_id", pymongo.ASCENDING),
                    ("metadata.blob_id", pymongo.ASCENDING),
                ],
                name=BLOB_KEY_INDEX,
                unique=True,
            ),
            IndexModel(
                [
                    ("metadata.workspace_id", pymongo.ASCENDING),
                    ("metadata.session_id", pymongo.ASCENDING),
                    ("uploadDate", pymongo.ASCENDING),
                    ("metadata.blob_id", pymongo.ASCENDING),
                ],
                name=BLOB_LISTING_INDEX,
            ),
            # The index the GridFS specification asks drivers to create, so a bucket's by-name reads stay indexed.
            IndexModel(
                [("filename", pymongo.ASCENDING), ("uploadDate", pymongo.ASCENDING)], name="filename_1_uploadDate_1"
            ),
        ]


class BlobChunk(Document):
    """One chunk of a GridFS file (``fs.chunks``): ``data`` is bytes ``n * chunkSize`` onwards of the file."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    files_id: ObjectId
    n: int
    data: bytes

    class Settings:
        name = f"{BUCKET}.chunks"
        use_state_management = False
        # GridFS's own unique index (the name every driver gives it): a chunk's place is its file and number.
        indexes = [
            IndexModel([("files_id", pymongo.ASCENDING), ("n", pymongo.ASCENDING)], name="files_id_1_n_1", unique=True)
        ]
