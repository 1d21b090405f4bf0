"""The background retention task each worker runs; the one holding the lease does the deleting.

Every ``HANDOFF_RETENTION_INTERVAL_SECONDS`` (300 by default; 0 turns it off) the task tries the ``retention``
lease. Its holder deletes, for each workspace with a retention, the ended sessions past it, in batches of
``HANDOFF_RETENTION_BATCH_SIZE``, renewing the lease and pausing briefly after each batch, so requests never wait
behind it: each deletion is one awaited transaction like a client's ``DELETE``. With no workspace that sets a
retention a pass is one small query. A failure (the database away) is logged and the next pass tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from pymongo.errors import PyMongoError

from handoff import clock
from handoff.config import Settings
from handoff.retention import lease
from handoff.retention.service import cutoff, prune, workspaces_with_retention

logger = logging.getLogger("handoff.retention")

LEASE = "retention"
PAUSE_AFTER_BATCH_SECONDS = 0.05
MIN_LEASE_SECONDS = 60.0


class LeaseLost(Exception):
    """Another process holds the lease now (this one was too slow to renew it): stop and leave the work to it."""


def lease_seconds(settings: Settings) -> float:
    """Long enough to outlive the holder's sleep between passes, so only a dead holder loses it."""
    return max(MIN_LEASE_SECONDS, 3 * settings.retention_interval_seconds)


async def run_pass(settings: Settings, owner: str) -> int:
    """Delete what every workspace's retention lets go, while holding the lease; the sessions deleted."""
    seconds = lease_seconds(settings)

    async def renew(_: int) -> None:
        if not await lease.acquire(LEASE, owner, now=clock.now(), seconds=seconds):
            raise LeaseLost
        await asyncio.sleep(PAUSE_AFTER_BATCH_SECONDS)  # leave the database to the requests for a moment

    if not await lease.acquire(LEASE, owner, now=clock.now(), seconds=seconds):
        return 0
    deleted = 0
    for workspace in await workspaces_with_retention():
        days = workspace.retention_ended_after_days
        assert days is not None  # the query selects only workspaces that set it
        result = await prune(
            workspace.workspace_id,
            ended_before=cutoff(days, now=clock.now()),
            batch_size=settings.retention_batch_size,
            after_batch=renew,
        )
        if result.deleted:
            logger.info(
                "retention: deleted %d sessions of %s ended over %d days ago", result.deleted, workspace.slug, days
            )
        deleted += result.deleted
    return deleted


async def _loop(settings: Settings, owner: str) -> None:
    while True:
        await asyncio.sleep(settings.retention_interval_seconds)
        try:
            await run_pass(settings, owner)
        except LeaseLost:
            logger.info("retention: another process took over the lease")
        except Exception:  # the next pass retries; a background task must not die of a database hiccup
            logger.warning(
                "retention pass failed; retrying in %g s", settings.retention_interval_seconds, exc_info=True
            )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    """Run the retention loop for as long as the block (the app's lifespan) lasts; released on the way out."""
    if settings.retention_interval_seconds <= 0:
        yield
        return
    owner = lease.new_owner()
    task = asyncio.create_task(_loop(settings, owner), name="handoff-retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(PyMongoError):  # the database may be gone at shutdown; the lease then runs out
            await lease.release(LEASE, owner)
