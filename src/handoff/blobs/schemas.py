"""The blobs API's bodies: what an upload answers and what a listing holds."""

from __future__ import annotations

from pydantic import Field

from handoff.schemas import OutputModel, UtcDatetime, items_field


class BlobRead(OutputModel):
    """A stored blob, as the upload answers it and the listing shows it."""

    blob_id: str = Field(description="The blob's id in its session: `blob_` and 32 hex digits.")
    size: int = Field(ge=0, description="Its length in bytes.")
    sha256: str = Field(description="The SHA-256 of its bytes, hex; also its ETag.")
    content_type: str = Field(description="The Content-Type it was uploaded with, as given.")
    created_at: UtcDatetime


class BlobPage(OutputModel):
    """A page of a session's blobs, oldest first, and how many the session has."""

    items: list[BlobRead] = items_field("The blobs of this page.")
    total: int = Field(ge=0)
