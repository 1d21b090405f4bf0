"""The claims REST bodies (api.md, "Handoff claims")."""

from __future__ import annotations

from pydantic import Field

from handoff.claims.models import ClaimState
from handoff.schemas import InputModel, OutputModel, UtcDatetime
from handoff.sessions.schemas import SessionRead


class ClaimRequest(InputModel):
    """``POST /v1/handoffs/claim``: which waiting handoffs to consider, and how long the lease lasts."""

    agent_type: str | None = Field(default=None, min_length=1, max_length=255)
    plan: str | None = Field(default=None, min_length=1, max_length=255)
    lease_seconds: int | None = Field(default=None, ge=10, le=86400)


class ReleaseRequest(InputModel):
    """``POST /v1/claims/{claim_id}/release``."""

    reason: str | None = Field(default=None, max_length=2000)


class ClaimCreated(OutputModel):
    """A claim just made: the replay session the caller works in, and until when the lease holds."""

    claim_id: str
    handoff_session_id: str
    session: SessionRead
    lease_expires_at: UtcDatetime


class ClaimRead(OutputModel):
    """A claim as read: its state derived now."""

    claim_id: str
    handoff_session_id: str
    session_id: str | None
    agent_type: str | None
    state: ClaimState
    claimed_at: UtcDatetime
    lease_expires_at: UtcDatetime
    ended_at: UtcDatetime | None


class ClaimList(OutputModel):
    """A page of claims, newest first."""

    items: list[ClaimRead]
    next_cursor: str | None


class Heartbeat(OutputModel):
    """A renewed lease."""

    claim_id: str
    lease_expires_at: UtcDatetime
