"""A claim's state, derived at read time from the stored claim and its replay session (pure, no I/O).

Deriving rather than storing is what lets a lease run out, and a completed replay end its claim, without any
background job: whoever reads the claim (a claimer looking for work included) sees the truth as of now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from handoff import clock
from handoff.claims.models import ClaimState
from handoff.claims.schemas import ClaimRead
from handoff.sessions.models import SessionStatus


@dataclass(frozen=True, slots=True)
class Derived:
    """What a claim is now."""

    state: ClaimState
    lease_expires_at: datetime
    ended_at: datetime | None


def lease_expires_at(claim: dict[str, Any], replay: dict[str, Any] | None) -> datetime:
    """The later of the last heartbeat and the replay session's last write, plus the lease."""
    renewed = clock.as_utc(claim["renewed_at"])
    if replay is not None and replay.get("last_active_at") is not None:
        renewed = max(renewed, clock.as_utc(replay["last_active_at"]))
    return renewed + timedelta(seconds=claim["lease_seconds"])


def derive(claim: dict[str, Any], replay: dict[str, Any] | None, now: datetime) -> Derived:
    """The claim's state: as stored once ended, else completed or released by its replay's end, else the lease's."""
    expires = lease_expires_at(claim, replay)
    if claim.get("ended_state"):
        return Derived(claim["ended_state"], expires, clock.as_utc(claim["ended_at"]))
    status = replay.get("status") if replay else None
    ended = clock.as_utc(replay["ended_at"]) if replay and replay.get("ended_at") else None
    if status == SessionStatus.COMPLETED.value:
        return Derived("completed", expires, ended)
    if status == SessionStatus.FAILED.value:  # the agent gave up: the handoff may be claimed again
        return Derived("released", expires, ended)
    if now >= expires:
        return Derived("expired", expires, expires)
    return Derived("active", expires, None)


def claim_read(claim: dict[str, Any], replay: dict[str, Any] | None, now: datetime) -> ClaimRead:
    """The body of a claim as of ``now``."""
    derived = derive(claim, replay, now)
    return ClaimRead(
        claim_id=claim["claim_id"],
        handoff_session_id=claim["handoff_session_id"],
        session_id=claim.get("session_id"),
        agent_type=claim.get("agent_type"),
        state=derived.state,
        claimed_at=clock.as_utc(claim["claimed_at"]),
        lease_expires_at=derived.lease_expires_at,
        ended_at=derived.ended_at,
    )
