"""Claiming a waiting handoff exactly once, renewing and releasing the lease, and reading claims.

A claim is one transaction (the bundled mongod is a replica set): find the oldest waiting handoff (``waiting``,
the definition analytics shares), end any lapsed claim of it, insert the new claim (the unique
``one_holding_claim_per_handoff`` index makes a second claimer of the same handoff conflict), open the replay
session through ``sessions.service.replay_session``, and mark the handoff's document with the claim
(``Session.claim``, guarded by the mark the search saw). If anything fails in between, nothing is committed and
the handoff is still waiting. Racing claimers conflict on the index or the mark; ``with_transaction`` retries the
transient write conflicts, and a duplicate key or a moved mark starts the search again, so every claimer ends
with a distinct handoff or with nothing.

Ending a claim (release, an expired lease, the sweep) clears the mark and writes ``Session.last_claim`` in the
same transaction; the change stream turns those two fields into ``handoff.claimed``, ``handoff.released`` and
``handoff.waiting`` (``events.mapping``), so every worker streams them, resumably, and nothing is published here.
"""

from __future__ import annotations

import secrets
from contextlib import suppress
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from handoff import clock, metrics
from handoff.claims import views, waiting
from handoff.claims.models import Claim, ClaimState, EndedState
from handoff.claims.schemas import ClaimCreated, ClaimRead, ClaimRequest, Heartbeat
from handoff.config import Settings
from handoff.errors import Conflict, FieldError, Invalid, NotFound, SessionEnded
from handoff.idempotency import service as idempotency
from handoff.sessions import service as sessions
from handoff.sessions import store
from handoff.sessions.models import SessionStatus
from handoff.sessions.schemas import SessionRead
from handoff.workspaces.schemas import Principal

#: How many times a claimer searches again after another claimer took the handoff it chose.
CLAIM_ATTEMPTS = 100


def claims() -> AsyncCollection[dict[str, Any]]:
    return Claim.get_pymongo_collection()


def new_claim_id() -> str:
    """``clm_<24 hex>``."""
    return f"clm_{secrets.token_hex(12)}"


class _Taken(Exception):
    """The handoff chosen is no longer the one the search saw (another claimer marked it first): look again."""


def _filters(data: ClaimRequest) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if data.agent_type is not None:
        match["agent_type"] = data.agent_type
    if data.plan is not None:
        match["plan"] = data.plan
    return match


def _mark(claim: dict[str, Any], replay: SessionRead) -> dict[str, Any]:
    """What the handoff's document keeps of the claim that holds it (``Session.claim``): enough for the
    ``handoff.claimed`` event to carry the claim as its first answer gave it."""
    kept = {name: claim.get(name) for name in ("claim_id", "session_id", "agent_type", "claimed_at", "lease_seconds")}
    return kept | {"lease_expires_at": views.lease_expires_at(claim, {"last_active_at": replay.last_active_at})}


async def _fail_replay(workspace_id: str, session_id: str | None, summary: str, txn: AsyncClientSession) -> None:
    """End a lapsed or released claim's replay session as ``POST /fail`` would, saying why (when still open)."""
    if session_id is None:
        return
    with suppress(SessionEnded, NotFound):  # the agent ended it (or erased it) itself: nothing left to fail
        await sessions.end(workspace_id, session_id, status=SessionStatus.FAILED, summary=summary, txn=txn)


async def _end_claim(
    claim: dict[str, Any],
    replay: dict[str, Any] | None,
    state: EndedState,
    reason: str,
    txn: AsyncClientSession,
    *,
    let_go: bool = True,
) -> dict[str, Any] | None:
    """Stop ``claim`` holding its handoff (as ``expired`` or ``released``) and fail its replay: the claim as it
    ended (``Session.last_claim``), or ``None`` if it no longer held it. ``let_go``: also clear the handoff's mark
    (a claim of it again sets the mark itself, in the same update)."""
    now = clock.now()
    workspace_id = claim["workspace_id"]
    result = await claims().update_one(
        {"workspace_id": workspace_id, "claim_id": claim["claim_id"], "holds": True, "ended_state": None},
        {"$set": {"holds": False, "ended_state": state, "ended_at": now, "reason": reason}},
        session=txn,
    )
    if result.modified_count == 0:
        return None
    await _fail_replay(workspace_id, claim.get("session_id"), reason, txn)
    ended_claim = {**claim, "ended_state": state, "ended_at": now}
    ended = views.claim_read(ended_claim, replay, now).model_dump() | {"reason": reason}
    if let_go:
        await store.sessions().update_one(
            {**store.key(workspace_id, claim["handoff_session_id"]), "claim.claim_id": claim["claim_id"]},
            {"$set": {"last_claim": ended}, "$unset": {"claim": ""}},
            session=txn,
        )
    return ended


async def _claim_once(
    principal: Principal, data: ClaimRequest, claim_id: str, settings: Settings, txn: AsyncClientSession
) -> tuple[dict[str, Any], sessions.Created, EndedState | None] | None:
    """The claim transaction's body: ``(claim, replay, how this call ended a lapsed claim of the handoff)``, or
    ``None`` when nothing waits."""
    found = await waiting.find(principal.workspace_id, limit=1, now=clock.now(), match=_filters(data), txn=txn)
    if not found:
        return None
    candidate = found[0]
    ended: dict[str, Any] | None = None
    state: EndedState | None = None
    state_of_lapsed: EndedState
    if candidate.lapsed is not None:
        why = "lease expired" if candidate.lapsed_state == "expired" else "replay session failed"
        state_of_lapsed = "expired" if candidate.lapsed_state == "expired" else "released"
        reason = f"claim {candidate.lapsed['claim_id']} ended ({why}); the handoff was claimed again"
        ended = await _end_claim(candidate.lapsed, candidate.replay, state_of_lapsed, reason, txn, let_go=False)
        state = state_of_lapsed if ended is not None else None
    now = clock.now()
    claim = Claim(
        claim_id=claim_id,
        workspace_id=principal.workspace_id,
        handoff_session_id=candidate.session_id,
        agent_type=data.agent_type,
        claimed_at=now,
        renewed_at=now,
        lease_seconds=data.lease_seconds or settings.claim_lease_seconds,
    )
    await claim.insert(session=txn)
    replay = await sessions.replay_session(
        principal, candidate.session_id, agent_type=data.agent_type, settings=settings, txn=txn
    )
    await claims().update_one(
        {"workspace_id": principal.workspace_id, "claim_id": claim.claim_id},
        {"$set": {"session_id": replay.session.session_id}},
        session=txn,
    )
    stored = claim.model_dump(exclude={"id", "revision_id"}) | {"session_id": replay.session.session_id}
    # The mark on the handoff, guarded by the one the search saw: a claimer that marked it since makes this match
    # nothing (or conflict), and the search starts again. No updated_at: the handoff's Session body is unchanged.
    marked = await store.sessions().update_one(
        {
            **store.key(principal.workspace_id, candidate.session_id),
            "status": SessionStatus.PAUSED.value,
            "claim.claim_id": candidate.marked_by,
            "claim.completed_at": None,
        },
        {"$set": {"claim": _mark(stored, replay.session), **({"last_claim": ended} if ended else {})}},
        session=txn,
    )
    if marked.matched_count == 0:
        raise _Taken
    return stored, replay, state


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
        except (DuplicateKeyError, _Taken):  # another claimer committed this handoff (or claim id) first: look again
            continue
        if done is None:
            metrics.claim("empty")
            return None, False
        claim, replay, lapsed = done
        if lapsed is not None:  # counted here, once: an end by the sweep meanwhile makes this call look again
            metrics.claim(lapsed)
        metrics.claim("claimed")
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
        replay = await store.sessions().find_one(store.key(workspace_id, claim["session_id"]), waiting.REPLAY_FIELDS)
    return claim, replay


async def settle_completed(claim: dict[str, Any], derived: views.Derived) -> bool:
    """Store a completion the first time a read (or the sweep) derives it, so it is counted once; true if this
    call stored it. The handoff's mark first (``claim.completed_at`` takes it out of the waiting search for good),
    then the claim: a crash in between leaves the claim unsettled, and the next read finishes."""
    if derived.state != "completed" or claim.get("ended_state"):
        return False
    workspace_id = claim["workspace_id"]
    await store.sessions().update_one(
        {
            **store.key(workspace_id, claim["handoff_session_id"]),
            "claim.claim_id": claim["claim_id"],
            "claim.completed_at": None,
        },
        {"$set": {"claim.completed_at": derived.ended_at}},
    )
    result = await claims().update_one(
        {"workspace_id": workspace_id, "claim_id": claim["claim_id"], "ended_state": None},
        {"$set": {"ended_state": "completed", "ended_at": derived.ended_at}},
    )
    if result.modified_count:
        metrics.claim("completed")
    return bool(result.modified_count)


async def get_claim(workspace_id: str, claim_id: str) -> ClaimRead:
    """One claim of the workspace, its state as of now, or 404."""
    claim, replay = await _load(workspace_id, claim_id)
    read = views.claim_read(claim, replay, clock.now())
    await settle_completed(claim, views.derive(claim, replay, clock.now()))
    return read


def _encode_cursor(claim: dict[str, Any]) -> str:
    return f"{int(clock.as_utc(claim['claimed_at']).timestamp() * 1_000_000)}.{claim['claim_id']}"


def _decode_cursor(cursor: str) -> dict[str, Any]:
    micros, _, claim_id = cursor.partition(".")
    if not micros.isdigit() or not claim_id:
        raise Invalid("cursor is not one this API issued", errors=[FieldError("cursor", "invalid cursor")])
    return _after(datetime.fromtimestamp(int(micros) / 1_000_000, tz=clock.now().tzinfo), claim_id)


def _after(at: datetime, claim_id: str) -> dict[str, Any]:
    """The claims after ``(at, claim_id)`` in newest-first order."""
    return {"$or": [{"claimed_at": {"$lt": at}}, {"claimed_at": at, "claim_id": {"$lt": claim_id}}]}


def _stored_state(state: ClaimState | None) -> dict[str, Any]:
    """What the query can filter of ``state``: a claim that has ended is stored with its state; one that has not
    (``ended_state`` null) may be any state now (a lease runs out, a replay ends), so it is read and derived."""
    if state is None:
        return {}
    if state == "active":
        return {"ended_state": None}
    return {"ended_state": {"$in": [state, None]}}


async def _reads(workspace_id: str, docs: list[dict[str, Any]]) -> list[ClaimRead]:
    """The bodies of stored claims as of now, their replays read in one query."""
    replay_ids = [doc["session_id"] for doc in docs if doc.get("session_id")]
    replays = {
        doc["session_id"]: doc
        async for doc in store.sessions().find(
            {"workspace_id": workspace_id, "session_id": {"$in": replay_ids}}, waiting.REPLAY_FIELDS
        )
    }
    now = clock.now()
    return [views.claim_read(doc, replays.get(doc.get("session_id") or ""), now) for doc in docs]


async def list_claims(
    workspace_id: str, *, state: ClaimState | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[ClaimRead], str | None]:
    """A page of the workspace's claims, newest first, only those in ``state`` (as derived now) when it is given.

    The query filters on the stored state, so a page is full however many claims of other states are newer; only
    claims that have not ended are derived here and may be passed over (read on until the page is full), and
    those are few: the sweep settles each one whose lease ran out or whose replay ended."""
    query: dict[str, Any] = {"workspace_id": workspace_id, **_stored_state(state)}
    after = _decode_cursor(cursor) if cursor is not None else {}
    found: list[tuple[dict[str, Any], ClaimRead]] = []  # one more than the page: whether a next page exists
    while True:
        docs = (
            await claims()
            .find(query | after, {"_id": 0})
            .sort([("claimed_at", DESCENDING), ("claim_id", DESCENDING)])
            .limit(limit + 1)
            .to_list()
        )
        found += [
            (doc, item)
            for doc, item in zip(docs, await _reads(workspace_id, docs), strict=True)
            if state is None or item.state == state
        ]
        if len(found) > limit or len(docs) <= limit:
            page = found[:limit]
            return [item for _, item in page], _encode_cursor(page[-1][0]) if len(found) > limit else None
        after = _after(clock.as_utc(docs[-1]["claimed_at"]), docs[-1]["claim_id"])


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
    if await end_claim(claim, replay, "released", summary) is None:
        raise Conflict(f"claim {claim_id} ended while this request ran")
    return await get_claim(workspace_id, claim_id)


async def end_claim(
    claim: dict[str, Any], replay: dict[str, Any] | None, state: EndedState, reason: str
) -> dict[str, Any] | None:
    """End a holding claim as ``released`` or ``expired`` in one transaction (its replay fails, its handoff waits
    again, ``handoff.released`` follows from the change); ``None`` when it had ended already (counted once)."""
    async with store.sessions().database.client.start_session() as txn:
        ended: dict[str, Any] | None = await txn.with_transaction(
            lambda txn: _end_claim(claim, replay, state, reason, txn)
        )
    if ended is not None:
        metrics.claim(state)
    return ended
