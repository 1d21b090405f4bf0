"""One worker at a time: a lease in MongoDB, taken and renewed by one guarded upsert.

Several processes (the workers of ``handoff serve --workers N``, or several hosts) run the same background loop;
the one that holds the lease does the work, the others skip their turn. The holder renews the lease as it goes;
if it dies, the lease runs out and another process takes it over. The work itself is idempotent too (a session
deleted twice is deleted once), so a holder that is slow to notice it lost its lease does no harm.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from handoff.retention.models import Lease


def new_owner() -> str:
    """A name for this process's claims: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


async def acquire(name: str, owner: str, *, now: datetime, seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; False while another owner holds it."""
    try:
        held = await Lease.get_pymongo_collection().find_one_and_update(
            {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}]},
            {"$set": {"owner": owner, "expires_at": now + timedelta(seconds=seconds)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:  # the lease exists and is another's: the upsert's insert collided with it
        return False
    return held is not None


async def release(name: str, owner: str) -> None:
    """Give the lease up at once (only if this owner still holds it)."""
    await Lease.get_pymongo_collection().delete_one({"_id": name, "owner": owner})
