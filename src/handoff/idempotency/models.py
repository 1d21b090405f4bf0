"""The record of one ``Idempotency-Key``: which request it came with and which session it produced.

A TTL index on ``expires_at`` lets MongoDB forget keys after ``Settings.idempotency_ttl_hours`` (24 h or more).
"""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from handoff import clock


class IdempotencyRecord(Document):
    """A key seen in a workspace for one operation (``scope``), bound to the request's fingerprint."""

    workspace_id: str
    scope: str
    key: str
    request_sha256: str
    session_id: str | None = None
    created_at: datetime = Field(default_factory=clock.now)
    expires_at: datetime

    class Settings:
        name = "idempotency_keys"
        use_state_management = False
        indexes = [
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("scope", pymongo.ASCENDING), ("key", pymongo.ASCENDING)],
                name="workspace_scope_key_unique",
                unique=True,
            ),
            IndexModel([("expires_at", pymongo.ASCENDING)], name="expiry_ttl", expireAfterSeconds=0),
        ]
