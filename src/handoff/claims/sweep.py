"""The periodic sweep of lapsed claims: tidying, never needed for correctness.

A claim's state is derived when it is read, so a lease that ran out frees its handoff by itself (the next claim
or analytics sees it waiting). What only a write does is tell the world: the sweep ends each lapsed claim as
``expired`` (or ``released``, when its agent failed the replay), failing its replay with a ``final_summary`` that
says why, and the change stream carries ``handoff.released`` and ``handoff.waiting`` to every subscriber; it also
settles completed claims, which takes their handoffs out of the waiting search for good.

Every ``HANDOFF_CLAIM_SWEEP_INTERVAL_SECONDS`` (0 turns it off) the worker holding the ``claim-sweep`` lease reads
the unsettled claims ``BATCH_SIZE`` at a time (``unsettled_claims`` index), pausing after each batch so requests
never wait behind it. Each end is ``service.end_claim``, one guarded transaction like a client's release: two
sweepers (a holder slow to notice it lost the lease) end a claim once and count it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handoff import clock
from handoff.claims import service, views, waiting
from handoff.config import Settings
from handoff.retention import lease
from handoff.sessions import store

logger = logging.getLogger("handoff.claims")

LEASE = "claim-sweep"
BATCH_SIZE = 100
PAUSE_AFTER_BATCH_SECONDS = 0.05


@dataclass(slots=True)
class SweepResult:
    """What one pass did: claims ended as expired or released, and completions settled."""

    expired: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)


def _after(claim: dict[str, Any]) -> dict[str, Any]:
    renewed = claim["renewed_at"]
    return {"$or": [{"renewed_at": {"$gt": renewed}}, {"renewed_at": renewed, "_id": {"$gt": claim["_id"]}}]}


async def _replays(batch: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The replay sessions of a batch of claims, by (workspace, session id), in one read."""
    keys = [store.key(claim["workspace_id"], claim["session_id"]) for claim in batch if claim.get("session_id")]
    if not keys:
        return {}
    cursor = store.sessions().find({"$or": keys}, {**waiting.REPLAY_FIELDS, "workspace_id": 1})
    return {(doc["workspace_id"], doc["session_id"]): doc async for doc in cursor}


async def _settle(claim: dict[str, Any], replay: dict[str, Any] | None, now: datetime, result: SweepResult) -> None:
    derived = views.derive(claim, replay, now)
    claim_id = claim["claim_id"]
    if derived.state == "expired":
        reason = (
            f"claim {claim_id} expired: no heartbeat and no write to this session for {claim['lease_seconds']} s "
            f"(lease ran out at {derived.lease_expires_at.isoformat()}); the handoff waits again"
        )
        if await service.end_claim(claim, replay, "expired", reason):
            result.expired.append(claim_id)
    elif derived.state == "released":  # the agent failed its replay: the claim lets go, the summary stays the agent's
        reason = f"claim {claim_id} released: its replay session failed; the handoff waits again"
        if await service.end_claim(claim, replay, "released", reason):
            result.released.append(claim_id)
    elif derived.state == "completed" and await service.settle_completed(claim, derived):
        result.completed.append(claim_id)


async def sweep(*, batch_size: int = BATCH_SIZE, pause: float = PAUSE_AFTER_BATCH_SECONDS) -> SweepResult:
    """End every lapsed claim of every workspace and settle every completed one, ``batch_size`` at a time."""
    result = SweepResult()
    fields = {**waiting.CLAIM_FIELDS, "_id": 1}
    after: dict[str, Any] | None = None
    while True:
        query: dict[str, Any] = {"holds": True, "ended_state": None, **(_after(after) if after else {})}
        batch = (
            await service.claims()
            .find(query, fields)
            .sort([("renewed_at", 1), ("_id", 1)])
            .hint("unsettled_claims")
            .to_list(batch_size)
        )
        replays = await _replays(batch)
        now = clock.now()
        for claim in batch:
            await _settle(claim, replays.get((claim["workspace_id"], claim.get("session_id") or "")), now, result)
        if len(batch) < batch_size:
            return result
        after = batch[-1]
        await asyncio.sleep(pause)  # leave the database to the requests for a moment


async def run_pass(settings: Settings, owner: str) -> SweepResult | None:
    """One pass if this process holds (or takes) the lease; ``None`` when another does."""
    if not await lease.acquire(
        LEASE, owner, now=clock.now(), seconds=lease.seconds_for(settings.claim_sweep_interval_seconds)
    ):
        return None
    result = await sweep()
    if result.expired or result.released:
        logger.info("claim sweep: %d expired, %d released", len(result.expired), len(result.released))
    return result


def running(settings: Settings) -> contextlib.AbstractAsyncContextManager[None]:
    """Run the sweep for as long as the block (the app's lifespan) lasts; the lease is given up on the way out."""
    return lease.periodically(
        LEASE,
        settings.claim_sweep_interval_seconds,
        lambda owner: run_pass(settings, owner),
        label="claim sweep",
        logger=logger,
    )
