"""What a waiting handoff is: the one definition the claim search and ``GET /v1/analytics/handoffs`` share.

A handoff waits when its session is paused with handoff notes, no session continues it (a claim's replay does
not: a claim that let go failed its replay, and a claim that holds the handoff is the next rule), and no claim
holds it now. The handoff's own document says which claim marks it (``Session.claim``, set and cleared in the
claims' transactions); a marking claim holds unless its lease ran out or its replay failed, which is derived at
read time (``views.derive``), so a lapsed claim that nobody has ended yet hides nothing.

Both reads walk the partial index ``waiting_handoffs``: the handoffs no claim marks, in ``paused_at`` order, in
keyset pages with ``$limit`` ahead of the lookups (so the query layer fetches about one page of documents, not
every candidate), and the few an open claim marks (the claims in flight), each checked against its claim and
replay. A claim whose replay completed is recorded on the handoff (``claim.completed_at``) and never read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from handoff.claims import views
from handoff.claims.models import ClaimState
from handoff.sessions import store
from handoff.sessions.models import SessionStatus

#: The partial index both reads walk (``Session.Settings.indexes``).
INDEX = "waiting_handoffs"
#: The smallest keyset page: a claim wants one handoff, but a page of one would cost a round trip per continued one.
MIN_PAGE = 16
#: What a claim's state is derived from (``views.derive``), of the claim and of its replay session.
CLAIM_FIELDS = {
    "_id": 0,
    "claim_id": 1,
    "workspace_id": 1,
    "handoff_session_id": 1,
    "session_id": 1,
    "agent_type": 1,
    "claimed_at": 1,
    "renewed_at": 1,
    "lease_seconds": 1,
    "ended_state": 1,
    "ended_at": 1,
}
REPLAY_FIELDS = {"_id": 0, "session_id": 1, "status": 1, "last_active_at": 1, "ended_at": 1}
#: The fields of a waiting handoff both readers need (analytics shapes its rows from them).
HANDOFF_FIELDS = ("session_id", "agent_type", "plan", "handoff_notes", "paused_at", "updated_at", "claim")


@dataclass(frozen=True, slots=True)
class Waiting:
    """A waiting handoff: its fields, and the lapsed claim that still marks it (to end when claiming it again)."""

    handoff: dict[str, Any]
    lapsed: dict[str, Any] | None = None
    lapsed_state: ClaimState | None = None
    replay: dict[str, Any] | None = None  # the lapsed claim's replay session (``REPLAY_FIELDS``)

    @property
    def session_id(self) -> str:
        return str(self.handoff["session_id"])

    @property
    def marked_by(self) -> str | None:
        """The claim id the handoff's document names (what a claim of it must find there, in its guard)."""
        return (self.handoff.get("claim") or {}).get("claim_id")

    @property
    def order(self) -> tuple[bool, float, str]:
        """Longest waiting first: ``paused_at`` (none, for a session paused before it was recorded, first)."""
        paused = self.handoff.get("paused_at")
        return (paused is not None, paused.timestamp() if paused else 0.0, self.session_id)


def _base(workspace_id: str, match: dict[str, Any], *, marked: bool) -> dict[str, Any]:
    """The index's partial filter and keys: unclaimed handoffs (``marked`` false) or those an open claim marks."""
    return {
        "workspace_id": workspace_id,
        "status": SessionStatus.PAUSED.value,
        "handoff_notes": {"$type": "object"},
        "claim.completed_at": None,
        "claim.claim_id": {"$type": "string"} if marked else None,
        **match,
    }


def _after(last: dict[str, Any]) -> dict[str, Any]:
    """The keyset filter of the page after ``last`` in ``(paused_at, session_id)`` order (missing ``paused_at``
    sorts first)."""
    paused, session_id = last.get("paused_at"), last["session_id"]
    if paused is None:
        return {"$or": [{"paused_at": None, "session_id": {"$gt": session_id}}, {"paused_at": {"$type": "date"}}]}
    return {"$or": [{"paused_at": {"$gt": paused}}, {"paused_at": paused, "session_id": {"$gt": session_id}}]}


def _continued(workspace_id: str) -> dict[str, Any]:
    """At most one session that continues the handoff: replayed from it, and no claim's replay."""
    return {
        "$lookup": {
            "from": "sessions",
            "localField": "session_id",
            "foreignField": "replayed_from",
            "pipeline": [
                {"$match": {"workspace_id": workspace_id}},
                {"$project": {"_id": 0, "session_id": 1}},
                {
                    "$lookup": {
                        "from": "claims",
                        "localField": "session_id",
                        "foreignField": "session_id",
                        "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": {"_id": 1}}],
                        "as": "claims",
                    }
                },
                {"$match": {"claims": {"$size": 0}}},
                {"$limit": 1},
            ],
            "as": "continued",
        }
    }


def unclaimed_page(
    workspace_id: str, match: dict[str, Any], *, size: int, after: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One keyset page of the handoffs no claim marks, longest waiting first, each with ``continued`` (empty when
    nothing continues it). ``match``: more conditions (agent type, plan, a ``started_at`` window)."""
    first = _base(workspace_id, match, marked=False)
    if after is not None:
        first = {"$and": [first, _after(after)]}
    return [
        {"$match": first},
        {"$sort": {"paused_at": 1, "session_id": 1}},
        {"$limit": size},
        {"$project": {"_id": 0, **dict.fromkeys(HANDOFF_FIELDS, 1)}},
        _continued(workspace_id),
    ]


def marked(workspace_id: str, match: dict[str, Any]) -> list[dict[str, Any]]:
    """The handoffs an open claim marks, each with that claim (``holder``), its replay and ``continued``."""
    return [
        {"$match": _base(workspace_id, match, marked=True)},
        {"$project": {"_id": 0, **dict.fromkeys(HANDOFF_FIELDS, 1)}},
        {
            "$lookup": {
                "from": "claims",
                "localField": "claim.claim_id",
                "foreignField": "claim_id",
                "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": CLAIM_FIELDS}],
                "as": "holder",
            }
        },
        {
            "$lookup": {
                "from": "sessions",
                "localField": "claim.session_id",
                "foreignField": "session_id",
                "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": REPLAY_FIELDS}],
                "as": "replay",
            }
        },
        _continued(workspace_id),
    ]


def judge_marked(row: dict[str, Any], now: datetime) -> Waiting | None:
    """A marked handoff waits when its claim has lapsed (lease run out, or replay failed) and nothing continues it."""
    if row["continued"]:
        return None
    holder = row["holder"][0] if row["holder"] else None
    if holder is None:  # the claim is gone (its workspace erased meanwhile): the mark holds nothing
        return Waiting(_handoff(row))
    replay = row["replay"][0] if row["replay"] else None
    state = views.derive(holder, replay, now).state
    if state in ("active", "completed"):
        return None
    return Waiting(_handoff(row), holder, state, replay)


def _handoff(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in HANDOFF_FIELDS}


async def _rows(
    pipeline: list[dict[str, Any]], txn: AsyncClientSession | None, max_time_ms: int | None
) -> list[dict[str, Any]]:
    # Hinted: on a small collection the planner may prefer an id index and sort in memory (the plans tie).
    options: dict[str, Any] = {"hint": INDEX, **({"maxTimeMS": max_time_ms} if max_time_ms else {})}
    cursor = await store.sessions().aggregate(pipeline, session=txn, **options)
    return await cursor.to_list(None)


async def find(
    workspace_id: str,
    *,
    limit: int,
    now: datetime,
    match: dict[str, Any] | None = None,
    txn: AsyncClientSession | None = None,
    max_time_ms: int | None = None,
) -> list[Waiting]:
    """The ``limit`` longest-waiting handoffs of the workspace (``match``: more conditions), read in ``txn``."""
    match = match or {}
    found = [w for row in await _rows(marked(workspace_id, match), txn, max_time_ms) if (w := judge_marked(row, now))]
    size = max(limit, MIN_PAGE)
    after: dict[str, Any] | None = None
    unclaimed = 0
    while unclaimed < limit:
        page = await _rows(unclaimed_page(workspace_id, match, size=size, after=after), txn, max_time_ms)
        waiting = [Waiting(_handoff(row)) for row in page if not row["continued"]]
        found += waiting
        unclaimed += len(waiting)
        if len(page) < size:
            break
        after = page[-1]
    return sorted(found, key=lambda waiting: waiting.order)[:limit]
