"""Claiming a waiting handoff exactly once, renewing and releasing the lease, and reading claims.

A claim is one transaction (the bundled mongod is a replica set): find the oldest waiting handoff, end any
lapsed claim of it, insert the new claim (the unique ``one_holding_claim_per_handoff`` index makes a second
claimer of the same handoff conflict), and open the replay session through ``sessions.service.replay_session``.
If anything fails in between, nothing is committed and the handoff is still waiting. Racing claimers conflict on
the index; ``with_transaction`` retries the transient write conflicts, and a duplicate key (the other claim
committed first) starts the search again, so every claimer ends with a distinct handoff or with nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from handoff import clock, metrics
from handoff.claims import views
from handoff.claims.models import Claim, ClaimState
from handoff.claims.schemas import ClaimCreated, ClaimRead, ClaimRequest, Heartbeat
from handoff.config import Settings
from handoff.errors import Conflict, FieldError, Invalid, NotFound
from handoff.idempotency import service as idempotency
from handoff.sessions import service as sessions
from handoff.sessions import store
from handoff.sessions.lifecycle import Operation, accepted_statuses
from handoff.sessions.models import SessionStatus
from handoff.sessions.schemas import SessionRead
from handoff.workspaces.schemas import Principal

#: How many times a claimer searches again after another claimer took the handoff it chose.
CLAIM_ATTEMPTS = 100
#: The replay session's fields a claim's state is derived from.
_REPLAY_FIELDS = {"_id": 0, "session_id": 1, "status": 1, "last_active_at": 1, "ended_at": 1}


def claims() -> AsyncCollection[dict[str, Any]]:
    return Claim.get_pymongo_collection()


def new_claim_id() -> str:
    """``clm_<24 hex>``."""
    return f"clm_{secrets.token_hex(12)}"


def publish_claim_event(event_type: str, claim: dict[str, Any]) -> None:
    """The hook where ``handoff.claimed`` / ``handoff.released`` / ``handoff.waiting`` events are published.

    A no-op until the events half of issue 15 lands: it is called after the change is committed, with the
    stored claim document, so the events code can fan it out (or watch the ``claims`` collection instead).
    """
    del event_type, claim


@dataclass(frozen=True, slots=True)
class _Candidate:
    handoff_session_id: str
    lapsed: dict[str, Any] | None  # the holding claim whose lease ran out (or whose replay failed), to end


def _waiting_pipeline(workspace_id: str, data: ClaimRequest) -> list[dict[str, Any]]:
    """Paused sessions with handoff notes, oldest pause first, with their claims (and each claim's replay) and the
    sessions that continue them; which of these still wait is decided in :func:`_waiting`."""
    match: dict[str, Any] = {"workspace_id": workspace_id, "status": "paused", "handoff_notes": {"$type": "object"}}
    if data.agent_type is not None:
        match["agent_type"] = data.agent_type
    if data.plan is not None:
        match["plan"] = data.plan
    return [
        {"$match": match},
        {"$sort": {"paused_at": 1, "session_id": 1}},
        {"$project": {"_id": 0, "session_id": 1}},
        {
            "$lookup": {
                "from": "claims",
                "localField": "session_id",
                "foreignField": "handoff_session_id",
                "pipeline": [
                    {"$match": {"workspace_id": workspace_id}},
                    {
                        "$lookup": {
                            "from": "sessions",
                            "localField": "session_id",
                            "foreignField": "session_id",
                            "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": _REPLAY_FIELDS}],
                            "as": "replay",
                        }
                    },
                ],
                "as": "claims",
            }
        },
        {
            "$lookup": {
                "from": "sessions",
                "localField": "session_id",
                "foreignField": "replayed_from",
                "pipeline": [{"$match": {"workspace_id": workspace_id}}, {"$project": {"_id": 0, "session_id": 1}}],
                "as": "continued",
            }
        },
    ]


def _waiting(row: dict[str, Any], now: datetime) -> _Candidate | None:
    """The handoff of ``row`` if it waits: no replay but its claims' continues it, and no claim holds it now."""
    claim_replays = {claim.get("session_id") for claim in row["claims"]}
    if any(other["session_id"] not in claim_replays for other in row["continued"]):
        return None
    lapsed = None
    for claim in row["claims"]:
        if not claim["holds"]:
            continue
        replay = claim["replay"][0] if claim["replay"] else None
        state = views.derive(claim, replay, now).state
        if state in ("active", "completed"):
            return None
        lapsed = {**claim, "derived_state": state}
    return _Candidate(row["session_id"], lapsed)


async def _find_waiting(workspace_id: str, data: ClaimRequest, txn: AsyncClientSession) -> _Candidate | None:
    now = clock.now()
    cursor = await store.sessions().aggregate(_waiting_pipeline(workspace_id, data), session=txn)
    async for row in cursor:
        candidate = _waiting(row, now)
        if candidate is not None:
            await cursor.close()
            return candidate
    return None


async def _fail_replay(workspace_id: str, session_id: str | None, summary: str, txn: AsyncClientSession) -> None:
    """End a lapsed or released claim's replay session as failed, saying why (when it is still open)."""
    if session_id is None:
        return
    now = clock.now()
    await store.sessions().update_one(
        {**store.key(workspace_id, session_id), "status": {"$in": accepted_statuses(Operation.END)}},
        {
            "$set": {
                "status": SessionStatus.FAILED.value,
                "final_summary": summary,
                "ended_at": now,
                "updated_at": now,
                "paused_at": None,
            }
        },
        session=txn,
    )


async def _end_claim(claim: dict[str, Any], state: ClaimState, reason: str, txn: AsyncClientSession) -> bool:
    """Stop ``claim`` holding its handoff (as ``expired`` or ``released``) and fail its replay; false if it no
    longer held it."""
    now = clock.now()
    result = await claims().update_one(
        {"workspace_id": claim["workspace_id"], "claim_id": claim["claim_id"], "holds": True},
        {"$set": {"holds": False, "ended_state": state, "ended_at": now, "reason": reason}},
        session=txn,
    )
    if result.modified_count == 0:
        return False
    await _fail_replay(claim["workspace_id"], claim.get("session_id"), reason, txn)
    return True


async def _claim_once(
    principal: Principal, data: ClaimRequest, claim_id: str, settings: Settings, txn: AsyncClientSession
) -> tuple[dict[str, Any], sessions.Created, dict[str, Any] | None] | None:
    """The claim transaction's body: ``(claim, replay, lapsed claim ended)``, or ``None`` when nothing waits."""
    candidate = await _find_waiting(principal.workspace_id, data, txn)
    if candidate is None:
        return None
    if candidate.lapsed is not None:
        why = "lease expired" if candidate.lapsed["derived_state"] == "expired" else "replay session failed"
        state: ClaimState = "expired" if candidate.lapsed["derived_state"] == "expired" else "released"
        reason = f"claim {candidate.lapsed['claim_id']} ended ({why}); the handoff was claimed again"
        await _end_claim(candidate.lapsed, state, reason, txn)
    now = clock.now()
    claim = Claim(
        claim_id=claim_id,
        workspace_id=principal.workspace_id,
        handoff_session_id=candidate.handoff_session_id,
        agent_type=data.agent_type,
        claimed_at=now,
        renewed_at=now,
        lease_seconds=data.lease_seconds or settings.claim_lease_seconds,
    )
    await claim.insert(session=txn)
    replay = await sessions.replay_session(
        principal, candidate.handoff_session_id, agent_type=data.agent_type, settings=settings, txn=txn
    )
    await claims().update_one(
        {"workspace_id": principal.workspace_id, "claim_id": claim.claim_id},
        {"$set": {"session_id": replay.session.session_id}},
        session=txn,
    )
    stored = claim.model_dump(exclude={"id", "revision_id"}) | {"session_id": replay.session.session_id}
    return stored, replay, candidate.lapsed


def _created(claim: dict[str, Any], session: SessionRead) -> ClaimCreated:
    return ClaimCreated(
        claim_id=claim["claim_id"],
        handoff_session_id=claim["handoff_session_id"],
        session=session,
        lease_expires_at=views.lease_expires_at(claim, {"last_active_at": session.last_active_at}),
    )


async def _made_earlier(workspace_id: str, claim_id: str) -> ClaimCreated | None:
    """The claim an earlier request with the same Idempotency-Key made, if it committed."""
    claim = await claims().find_one({"workspace_id": workspace_id, "claim_id": claim_id}, {"_id": 0})
    if claim is None or claim.get("session_id") is None:
        return None
    return _created(claim, await sessions.get_session(workspace_id, claim["session_id"]))


async def claim_handoff(
    principal: Principal, data: ClaimRequest, *, idempotency_key: str | None = None, settings: Settings
) -> tuple[ClaimCreated | None, bool]:
    """Claim the oldest waiting handoff matching ``data`` and open its replay: ``(claim, made by this call)``, or
    ``(None, False)`` when nothing waits. A repeated ``Idempotency-Key`` returns the claim it made (``False``)."""
    claim_id = new_claim_id()
    if idempotency_key is not None:
        claim_id = await idempotency.claim(
            principal.workspace_id,
            scope="claim",
            key=idempotency_key,
            body=data.model_dump(mode="json"),
            proposed_session_id=claim_id,
            ttl_hours=settings.idempotency_ttl_hours,
        )
    client = store.sessions().database.client
    for _ in range(CLAIM_ATTEMPTS):
        if idempotency_key is not None and (earlier := await _made_earlier(principal.workspace_id, claim_id)):
            return earlier, False
        try:
            async with client.start_session() as txn:
                done = await txn.with_transaction(lambda txn: _claim_once(principal, data, claim_id, settings, txn))
        except DuplicateKeyError:  # another claimer committed this handoff (or this claim id) first: look again
            continue
        if done is None:
            metrics.claim("empty")
            return None, False
        claim, replay, lapsed = done
        if lapsed is not None:
            metrics.claim("expired" if lapsed["derived_state"] == "expired" else "released")
            publish_claim_event("handoff.released", lapsed)
        metrics.claim("claimed")
        publish_claim_event("handoff.claimed", claim)
        return _created(claim, replay.session), True
    raise Conflict("too many claimers raced for the same handoffs; retry the claim")


# Reads and the lease ---------------------------------------------------------------------------------------------


async def _load(workspace_id: str, claim_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A claim of the workspace and its replay session, or 404."""
    claim = await claims().find_one({"workspace_id": workspace_id, "claim_id": claim_id}, {"_id": 0})
    if claim is None:
        raise NotFound(f"claim {claim_id} not found")
    replay = None
    if claim.get("session_id"):
        replay = await store.sessions().find_one(store.key(workspace_id, claim["session_id"]), _REPLAY_FIELDS)
    return claim, replay


async def _settle_completed(claim: dict[str, Any], derived: views.Derived) -> None:
    """Store a completion the first time a read derives it, so it is counted once."""
    if derived.state != "completed" or claim.get("ended_state"):
        return
    result = await claims().update_one(
        {"workspace_id": claim["workspace_id"], "claim_id": claim["claim_id"], "ended_state": None},
        {"$set": {"ended_state": "completed", "ended_at": derived.ended_at}},
    )
    if result.modified_count:
        metrics.claim("completed")
        publish_claim_event("handoff.completed", claim)


async def get_claim(workspace_id: str, claim_id: str) -> ClaimRead:
    """One claim of the workspace, its state as of now, or 404."""
    claim, replay = await _load(workspace_id, claim_id)
    read = views.claim_read(claim, replay, clock.now())
    await _settle_completed(claim, views.derive(claim, replay, clock.now()))
    return read


def _encode_cursor(claim: dict[str, Any]) -> str:
    return f"{int(clock.as_utc(claim['claimed_at']).timestamp() * 1_000_000)}.{claim['claim_id']}"


def _decode_cursor(cursor: str) -> dict[str, Any]:
    micros, _, claim_id = cursor.partition(".")
    if not micros.isdigit() or not claim_id:
        raise Invalid("cursor is not one this API issued", errors=[FieldError("cursor", "invalid cursor")])
    at = datetime.fromtimestamp(int(micros) / 1_000_000, tz=clock.now().tzinfo)
    return {"$or": [{"claimed_at": {"$lt": at}}, {"claimed_at": at, "claim_id": {"$lt": claim_id}}]}


async def list_claims(
    workspace_id: str, *, state: ClaimState | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[ClaimRead], str | None]:
    """A page of the workspace's claims, newest first (``state`` filters the page as derived now)."""
    query: dict[str, Any] = {"workspace_id": workspace_id}
    if cursor is not None:
        query |= _decode_cursor(cursor)
    docs = (
        await claims()
        .find(query, {"_id": 0})
        .sort([("claimed_at", DESCENDING), ("claim_id", DESCENDING)])
        .limit(limit + 1)
        .to_list()
    )
    more, docs = len(docs) > limit, docs[:limit]
    replay_ids = [doc["session_id"] for doc in docs if doc.get("session_id")]
    replays = {
        doc["session_id"]: doc
        async for doc in store.sessions().find(
            {"workspace_id": workspace_id, "session_id": {"$in": replay_ids}}, _REPLAY_FIELDS
        )
    }
    now = clock.now()
    items = [views.claim_read(doc, replays.get(doc.get("session_id") or ""), now) for doc in docs]
    if state is not None:
        items = [item for item in items if item.state == state]
    return items, _encode_cursor(docs[-1]) if more else None


async def heartbeat(workspace_id: str, claim_id: str) -> Heartbeat:
    """Renew an active claim's lease from now; a claim that has ended is a 409 that says how."""
    claim, replay = await _load(workspace_id, claim_id)
    now = clock.now()
    derived = views.derive(claim, replay, now)
    if derived.state != "active":
        raise Conflict(f"claim {claim_id} is {derived.state}; claim the handoff again to continue it")
    await claims().update_one(
        {"workspace_id": workspace_id, "claim_id": claim_id, "holds": True, "ended_state": None},
        {"$max": {"renewed_at": now}},
    )
    return Heartbeat(claim_id=claim_id, lease_expires_at=views.lease_expires_at({**claim, "renewed_at": now}, replay))


async def release(workspace_id: str, claim_id: str, reason: str | None) -> ClaimRead:
    """Give an active claim back: its replay session fails (saying why) and the handoff waits again."""
    claim, replay = await _load(workspace_id, claim_id)
    derived = views.derive(claim, replay, clock.now())
    if derived.state != "active":
        raise Conflict(f"claim {claim_id} is {derived.state}; only an active claim can be released")
    summary = f"claim {claim_id} released" + (f": {reason}" if reason else "")
    async with store.sessions().database.client.start_session() as txn:
        released = await txn.with_transaction(lambda txn: _end_claim(claim, "released", summary, txn))
    if not released:
        raise Conflict(f"claim {claim_id} ended while this request ran")
    metrics.claim("released")
    publish_claim_event("handoff.released", claim)
    return await get_claim(workspace_id, claim_id)
