"""One worker at a time: a lease in MongoDB, taken and renewed by one guarded upsert.

Several processes (the workers of ``handoff serve --workers N``, or several hosts) run the same background loop;
the one that holds the lease does the work, the others skip their turn. The holder renews the lease as it goes;
if it dies, the lease runs out and another process takes it over. The work itself is idempotent too (a session
deleted twice is deleted once), so a holder that is slow to notice it lost its lease does no harm.
:func:`periodically` is that loop, for every background job (retention, the claim sweep, the artifacts rollup);
a long pass calls :func:`keep` between its batches, which renews the lease or stops the pass with :class:`LeaseLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from handoff import clock
from handoff.retention.models import Lease

MIN_SECONDS = 60.0


class LeaseLost(Exception):
    """Another process holds the lease now (this one was too slow to renew it): stop and leave the work to it."""


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


async def keep(name: str, owner: str, *, seconds: float, pause: float) -> None:
    """Between two batches of a long pass: renew the lease (or raise :class:`LeaseLost`), then sleep ``pause``
    seconds to leave the database to the requests for a moment."""
    if not await acquire(name, owner, now=clock.now(), seconds=seconds):
        raise LeaseLost
    await asyncio.sleep(pause)


def seconds_for(interval: float) -> float:
    """A lease long enough to outlive its holder's sleep between passes, so only a dead holder loses it."""
    return max(MIN_SECONDS, 3 * interval)


@contextlib.asynccontextmanager
async def periodically(
    name: str, interval: float, run_pass: Callable[[str], Awaitable[object]], *, label: str, logger: logging.Logger
) -> AsyncIterator[None]:
    """Call ``run_pass(owner)`` every ``interval`` seconds for as long as the block (an app's lifespan) lasts, then
    give the lease ``name`` up; ``interval`` 0 runs nothing. The pass takes the lease itself (it knows how long its
    work holds it); a pass that loses it midway ends quietly, one that fails is logged as ``label`` and the next one
    tries again."""
    if interval <= 0:
        yield
        return
    owner = new_owner()

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_pass(owner)
            except LeaseLost:
                logger.info("%s: another process took over the lease", label)
            except Exception:  # the next pass retries; a background task must not die of a database hiccup
                logger.warning("%s failed; retrying in %g s", label, interval, exc_info=True)

    task = asyncio.create_task(loop(), name=f"handoff-{name}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(PyMongoError):  # the database may be gone at shutdown; the lease then runs out
            await release(name, owner)
