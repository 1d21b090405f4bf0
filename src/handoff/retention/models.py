"""The lease document: which process does a piece of background work right now."""

from __future__ import annotations

from datetime import datetime

from beanie import Document


class Lease(Document):
    """A named lease (its ``_id``), held by ``owner`` until ``expires_at`` unless renewed."""

    id: str  # type: ignore[assignment]  # the lease's name is its _id: one document per kind of work
    owner: str
    expires_at: datetime

    class Settings:
        name = "leases"
