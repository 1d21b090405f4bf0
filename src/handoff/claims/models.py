"""The stored claim: which handoff it holds, the replay session it opened, and how it ended.

A claim's state is mostly derived when it is read (``service.state_of``): the lease runs out by itself and a
replay session that completes ends its claim, so no background job is needed for correctness. ``holds`` is what
the unique index guards: at most one claim per handoff holds it, which is what makes two claimers unable to take
the same handoff; a new claim of an expired handoff sets the old claim's ``holds`` to false in its transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

from handoff import clock

ClaimState = Literal["active", "expired", "released", "completed"]
#: The states a claim is stored in once it has ended (``active`` and a lapsed lease are derived at read time).
EndedState = Literal["expired", "released", "completed"]


class Claim(Document):
    """One claim of one handoff session by one agent."""

    claim_id: str
    workspace_id: str
    handoff_session_id: str
    #: The replay session the claim opened; set in the claim's own transaction.
    session_id: str | None = None
    agent_type: str | None = None
    claimed_at: datetime = Field(default_factory=clock.now)
    #: The last heartbeat (``claimed_at`` at first); the lease runs from it or the replay's last write, the later.
    renewed_at: datetime = Field(default_factory=clock.now)
    lease_seconds: int
    holds: bool = True
    ended_state: EndedState | None = None
    ended_at: datetime | None = None
    reason: str | None = None

    class Settings:
        name = "claims"
        use_state_management = False
        indexes = [
            IndexModel([("workspace_id", pymongo.ASCENDING), ("claim_id", pymongo.ASCENDING)], unique=True),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("handoff_session_id", pymongo.ASCENDING)],
                name="one_holding_claim_per_handoff",
                unique=True,
                partialFilterExpression={"holds": True},
            ),
            IndexModel(
                [("workspace_id", pymongo.ASCENDING), ("claimed_at", pymongo.DESCENDING), ("claim_id", 1)],
                name="claims_newest_first",
            ),
            # list_claims by state: the claims stored in one state (or not ended), newest first.
            IndexModel(
                [
                    ("workspace_id", pymongo.ASCENDING),
                    ("ended_state", pymongo.ASCENDING),
                    ("claimed_at", pymongo.DESCENDING),
                    ("claim_id", pymongo.DESCENDING),
                ],
                name="claims_by_state_newest_first",
            ),
            IndexModel([("workspace_id", pymongo.ASCENDING), ("session_id", pymongo.ASCENDING)]),
            # The sweep (handoff.claims.sweep): every workspace's unsettled claims, least recently renewed first.
            IndexModel(
                [("ended_state", pymongo.ASCENDING), ("renewed_at", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
                name="unsettled_claims",
                partialFilterExpression={"holds": True},
            ),
        ]
