"""The background retention task each worker runs; the one holding the lease does the deleting.

Every ``HANDOFF_RETENTION_INTERVAL_SECONDS`` (300 by default; 0 turns it off) the task tries the ``retention``
lease. Its holder deletes, for each workspace with a retention, the ended sessions past it, in batches of
``HANDOFF_RETENTION_BATCH_SIZE``, renewing the lease and pausing briefly after each batch, so requests never wait
behind it: each deletion is one awaited transaction like a client's ``DELETE``. With no workspace that sets a
retention a pass is one small query, and one per workspace for the uploads in progress: the holder also takes back
what uploads whose worker died left (``blobs.reservation.reclaim_everywhere``: the bytes their reservations hold
and the GridFS chunks they wrote, once a reservation has gone ``HANDOFF_BLOB_RESERVATION_LEASE_SECONDS`` without
word), so those go by themselves even from a session nobody writes to again. Each pass also finishes the purges of
cleared logs and erased sessions that a dead process left (``handoff.sessions.purges``). A failure (the database
away) is logged and the next pass tries again.
"""

from __future__ import annotations

import contextlib
import logging

from handoff import clock
from handoff.blobs.reservation import reclaim_everywhere
from handoff.config import Settings
from handoff.retention import lease
from handoff.retention.service import cutoff, prune, workspaces_with_retention
from handoff.sessions import purges

logger = logging.getLogger("handoff.retention")

LEASE = "retention"
PAUSE_AFTER_BATCH_SECONDS = 0.05


async def run_pass(settings: Settings, owner: str) -> int:
    """Delete what every workspace's retention lets go, while holding the lease; the sessions deleted."""
    seconds = lease.seconds_for(settings.retention_interval_seconds)

    async def renew(_: int) -> None:
        await lease.keep(LEASE, owner, seconds=seconds, pause=PAUSE_AFTER_BATCH_SECONDS)

    if not await lease.acquire(LEASE, owner, now=clock.now(), seconds=seconds):
        return 0
    if reclaimed := await reclaim_everywhere(settings):
        logger.info("retention: reclaimed %d lapsed blob reservations and their chunks", reclaimed)
    # The clears and erasures whose process died before their batches were done (``sessions.purges``).
    await purges.purge_pending(after_batch=lambda: renew(0))
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


def running(settings: Settings) -> contextlib.AbstractAsyncContextManager[None]:
    """Run the retention loop for as long as the block (the app's lifespan) lasts; released on the way out."""
    return lease.periodically(
        LEASE,
        settings.retention_interval_seconds,
        lambda owner: run_pass(settings, owner),
        label="retention pass",
        logger=logger,
    )
