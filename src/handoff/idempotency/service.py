"""Claiming an ``Idempotency-Key``: the first request reserves the id of what it will create.

The record binds the key (unique in its workspace) to a fingerprint of the request, its operation and body,
and to the session id the first request chose. A repeat of the same request gets that id back (and the caller
answers 200 with that session); the key with another body, or on another operation, is a 422. Because the id
is reserved before anything is created, a first request that died half-way is completed by its retry with the
very same id, never duplicated.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from handoff import clock
from handoff.errors import FieldError, Invalid
from handoff.idempotency.models import IdempotencyRecord


def fingerprint(body: Any) -> str:
    """A stable hash of a request body (canonical JSON)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


async def claim(workspace_id: str, *, scope: str, key: str, body: Any, proposed_session_id: str, ttl_hours: int) -> str:
    """Reserve ``proposed_session_id`` for this key and return it, or return what an earlier request reserved.

    Which request then answers 201 is decided by the session's insert, not here: the reservation only makes
    every request with the key create (or find) the very same session.
    """
    digest = fingerprint({"operation": scope, "body": body})
    now = clock.now()
    record = IdempotencyRecord(
        workspace_id=workspace_id,
        scope=scope,
        key=key,
        request_sha256=digest,
        session_id=proposed_session_id,
        created_at=now,
        expires_at=now + timedelta(hours=ttl_hours),
    )
    try:
        await record.insert()
    except DuplicateKeyError:
        existing = await IdempotencyRecord.find_one(
            IdempotencyRecord.workspace_id == workspace_id, IdempotencyRecord.key == key
        )
        if existing is None:  # expired between the two calls: this request is the first again
            return await claim(
                workspace_id,
                scope=scope,
                key=key,
                body=body,
                proposed_session_id=proposed_session_id,
                ttl_hours=ttl_hours,
            )
        if existing.request_sha256 != digest:
            raise Invalid(
                "Idempotency-Key was already used with a different request (another body or operation)",
                errors=[FieldError(field="Idempotency-Key", message="reused with a different request")],
            ) from None
        return existing.session_id or proposed_session_id
    return proposed_session_id
