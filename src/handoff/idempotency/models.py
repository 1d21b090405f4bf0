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
    """A key seen in a workspace, bound to the request it came with: the operation (``scope``) and its body.

    Keys are scoped to the workspace (api.md): one key names one request, so the same key on another operation
    or another session's replay is a reuse with a different request, refused like a different body.
    """

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
                [("workspace_id", pymongo.ASCENDING), ("key", pymongo.ASCENDING)],
                name="workspace_key_unique",
                unique=True,
            ),
            IndexModel([("expires_at", pymongo.ASCENDING)], name="expiry_ttl", expireAfterSeconds=0),
        ]
