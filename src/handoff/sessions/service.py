"""Session rules: creation (get-or-create, idempotent), lifecycle transitions, context, handoff, replay.

Every mutation is one guarded ``find_one_and_update``: the filter carries the workspace, the id and the
statuses the lifecycle table accepts, so two racing transitions cannot both win; when it matches nothing,
``store.explain_miss`` says why. Appends live in ``appends.py``, array reads in ``queries.py``. The API, the
CLI, the importer and the MCP tools all call these functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure

from handoff import clock, quotas
from handoff.analytics.rollup import days as rollup_days
from handoff.blobs import service as blobs
from handoff.blobs.reservation import RESERVATIONS
from handoff.config import Settings
from handoff.errors import Conflict, FieldError, Invalid
from handoff.idempotency import service as idempotency
from handoff.plans import service as plans
from handoff.schemas import check_free_form
from handoff.sessions import appends, misses, newest_notables, paging, purges, queries, seals, store, views
from handoff.sessions.lifecycle import Operation, accepted_statuses, moves_to
from handoff.sessions.limits import stored_size
from handoff.sessions.models import ENTRY_KINDS, ArtifactAction, Session, SessionStatus, session_key
from handoff.sessions.schemas import (
    ActionCreate,
    ArtifactCreate,
    HandoffRequest,
    SessionCreate,
    SessionRead,
    WorkLogCreate,
)
from handoff.workspaces.schemas import Principal


@dataclass(frozen=True, slots=True)
class Created:
    """A session returned by a create or replay, and whether this call made it (201) or found it (200)."""

    session: SessionRead
    created: bool


def new_session_id() -> str:
    """``sess_<uuid4>``."""
    return f"sess_{uuid.uuid4()}"


def new_replay_id(now: datetime) -> str:
    """``ses_replay_<YYYYmmdd_HHMMSS>_<random>``: unique even for many replays in one second."""
    return f"ses_replay_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(8)}"


def _read(doc: dict[str, Any]) -> SessionRead:
    return views.session_read(doc, clock.now())


# Creation ----------------------------------------------------------------------------------------------------


async def _insert_or_find(session: Session, txn: AsyncClientSession | None = None) -> tuple[dict[str, Any], bool]:
    """Insert; if the id (reserved by an idempotency key) or the external id is taken, return that session.

    ``txn``: the transaction the insert belongs to (a handoff claim's), which the read back must see too."""
    try:
        await session.insert(session=txn)
    except DuplicateKeyError:
        existing = await store.sessions().find_one(
            {
                "workspace_id": session.workspace_id,
                "$or": [{"session_id": session.session_id}]
                + ([{"external_id": session.external_id}] if session.external_id else []),
            },
            store.SESSION_PROJECTION,
        )
        if existing is None:  # pragma: no cover - a duplicate that vanished (deleted) in between
            raise
        return existing, False
    doc = await store.sessions().find_one(
        store.key(session.workspace_id, session.session_id), store.SESSION_PROJECTION, session=txn
    )
    if doc is None:  # pragma: no cover - deleted between the insert and the read
        raise store.not_found(session.session_id)
    return doc, True


async def _idempotent(
    principal: Principal,
    *,
    scope: str,
    idempotency_key: str | None,
    body: Any,
    proposed_id: str,
    settings: Settings,
) -> str:
    """The session id to create: the proposed one, or the one an earlier request with this key reserved."""
    if idempotency_key is None:
        return proposed_id
    return await idempotency.claim(
        principal.workspace_id,
        scope=scope,
        key=idempotency_key,
        body=body,
        proposed_session_id=proposed_id,
        ttl_hours=settings.idempotency_ttl_hours,
    )


async def _open(
    principal: Principal,
    session_id: str,
    *,
    now: datetime,
    settings: Settings,
    txn: AsyncClientSession | None = None,
    **fields: Any,
) -> Created:
    """Insert a new active session of the caller's (or find the one its id or external id already names), within
    the workspace's quotas."""
    await quotas.check_can_create(principal.workspace_id, adds_bytes=fields.get("payload_bytes", 0), settings=settings)
    # An id used before (an idempotency key's, a replay's) may name an erased session whose pages are still being
    # deleted: the new one numbers its pages above them.
    if first := await purges.floor(principal.workspace_id, session_id):
        fields |= {"pages_version": first, "pages_from": dict.fromkeys(ENTRY_KINDS, first)}
    session = Session(
        id=session_key(principal.workspace_id, session_id),
        workspace_id=principal.workspace_id,
        session_id=session_id,
        agent_api_key_id=principal.api_key_id,
        started_at=now,
        last_active_at=now,
        created_at=now,
        updated_at=now,
        **fields,
    )
    doc, inserted = await _insert_or_find(session, txn)
    if inserted and (late := await purges.floor(principal.workspace_id, session_id)) > first:
        # An erasure of the id committed between the floor's read and the insert.
        await seals.number_above(principal.workspace_id, session_id, version=first, floor=late, session=txn)
    # Whoever inserts answers 201: the first request, or a repeat completing a first one that died after its
    # claim. Racing requests with one key then see exactly one 201, whichever of them reaches the insert first.
    return Created(_read(doc), created=inserted)


async def create_session(
    principal: Principal, data: SessionCreate, *, idempotency_key: str | None = None, settings: Settings
) -> Created:
    """Open a session; an existing ``external_id`` or a repeated ``Idempotency-Key`` returns the existing one."""
    if data.plan is not None and await plans.find_plan(principal.workspace_id, data.plan) is None:
        raise Invalid(f"unknown plan {data.plan!r}", errors=[FieldError(field="plan", message="no such plan")])
    if data.external_id is not None:
        existing = await store.sessions().find_one(
            {"workspace_id": principal.workspace_id, "external_id": data.external_id}, store.SESSION_PROJECTION
        )
        if existing is not None:
            return Created(_read(existing), created=False)
    session_id = await _idempotent(
        principal,
        scope="create",
        idempotency_key=idempotency_key,
        body=data.model_dump(mode="json"),
        proposed_id=new_session_id(),
        settings=settings,
    )
    return await _open(
        principal,
        session_id,
        now=clock.now(),
        settings=settings,
        external_id=data.external_id,
        plan=data.plan,
        agent_type=data.agent_type,
        context_summary=data.context_summary,
    )


async def replay_session(
    principal: Principal,
    session_id: str,
    *,
    agent_type: str | None,
    idempotency_key: str | None = None,
    settings: Settings,
    txn: AsyncClientSession | None = None,
) -> Created:
    """Continue a session (any status) in a new active one that starts from its last checkpoint.

    ``txn``: a transaction the new session's insert joins (a handoff claim opens its replay in its own)."""
    original = await queries.replay_view(principal.workspace_id, session_id, with_lists=False)
    now = clock.now()
    new_id = await _idempotent(
        principal,
        scope=f"replay:{session_id}",
        idempotency_key=idempotency_key,
        body={"agent_type": agent_type},
        proposed_id=new_replay_id(now),
        settings=settings,
    )
    seed = views.replay_seed(original, now=now, replay_entry_id=appends.new_entry_id())
    size = sum(stored_size(entry) for entry in seed["work_log"])
    return await _open(
        principal,
        new_id,
        now=now,
        settings=settings,
        plan=original.get("plan"),
        agent_type=agent_type or original.get("agent_type"),
        payload_bytes=size,
        stored_bytes={"work_log": size, "artifacts": 0, "blobs": 0},
        open_bytes={"work_log": size, "artifacts": 0},
        txn=txn,
        **seed,
    )


# Reads -------------------------------------------------------------------------------------------------------


async def get_session(workspace_id: str, session_id: str) -> SessionRead:
    """One session of the workspace, or 404."""
    return _read(await store.load(workspace_id, session_id))


def _encode_cursor(doc: dict[str, Any]) -> str:
    started = clock.as_utc(doc["started_at"])
    raw = json.dumps([int(started.timestamp() * 1000), doc["session_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        millis, session_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromtimestamp(int(millis) / 1000, tz=UTC), str(session_id)
    except (ValueError, TypeError, OverflowError, OSError, binascii.Error) as exc:  # a time out of range included
        raise Invalid("cursor is not one this API issued", errors=[FieldError("cursor", "invalid cursor")]) from exc


async def list_sessions(
    workspace_id: str,
    *,
    status: SessionStatus | None = None,
    agent_type: str | None = None,
    plan: str | None = None,
    external_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[SessionRead], str | None]:
    """A page of sessions, newest ``started_at`` first, and the cursor of the next page (keyset pagination)."""
    query: dict[str, Any] = {"workspace_id": workspace_id}
    for name, value in (("status", status), ("agent_type", agent_type), ("plan", plan), ("external_id", external_id)):
        if value is not None:
            query[name] = str(value)
    if cursor is not None:
        started, last_id = _decode_cursor(cursor)
        query["$or"] = [{"started_at": {"$lt": started}}, {"started_at": started, "session_id": {"$lt": last_id}}]
    docs = (
        await store.sessions()
        .find(query, store.SESSION_PROJECTION)
        .sort([("started_at", DESCENDING), ("session_id", DESCENDING)])
        .limit(limit + 1)
        .to_list(limit + 1)
    )
    next_cursor = _encode_cursor(docs[limit - 1]) if len(docs) > limit else None
    return [_read(doc) for doc in docs[:limit]], next_cursor


async def list_plan_sessions(workspace_id: str, slug: str) -> list[SessionRead]:
    """Every session working on a plan, newest first (the plan must exist)."""
    await plans.get_plan(workspace_id, slug)
    docs = (
        await store.sessions()
        .find({"workspace_id": workspace_id, "plan": slug}, store.SESSION_PROJECTION)
        .sort([("started_at", DESCENDING), ("session_id", DESCENDING)])
        .to_list(None)
    )
    return [_read(doc) for doc in docs]


async def delete_session(workspace_id: str, session_id: str) -> None:
    """Erase a session with its work log, artifacts, pages and notable entries, whatever its status, and take its
    share out of the artifacts rollup.

    The session document, its rollup share and the purge document that names its pages go in one small
    transaction: from its commit on the session is gone for every route. Its pages and notable documents are then
    deleted in batches (``purges.py``: a log of any length; a session re-created with this id meanwhile starts
    above them), then its blobs (GridFS writes cannot join the transaction)."""

    reservations: dict[str, Any] = {}  # its uploads in progress, whose chunks go with its blobs

    async def erase(session: AsyncClientSession) -> int:
        erased = await store.sessions().find_one_and_delete(
            store.key(workspace_id, session_id),
            {"_id": 0, "started_at": 1, "rollup_snapshot": 1, "pages_version": 1, RESERVATIONS: 1},
            session=session,
        )
        if erased is None:
            return 0
        reservations.update(erased.get(RESERVATIONS) or {})
        await newest_notables.forget(workspace_id, session_id, session=session)
        await rollup_days.forget_session(workspace_id, erased, session=session)
        if erased.get("pages_version"):
            # Every page it has is numbered below its next version; a re-created session starts there
            # (``purges.floor``), above every version this one had (``appends.known_versions``).
            below = erased["pages_version"] + 1
            await purges.mark(workspace_id, session_id, dict.fromkeys(ENTRY_KINDS, below), session=session)
        return 1

    async with store.sessions().database.client.start_session() as session:
        deleted: int = await session.with_transaction(erase)
    # On a 404 too: a retried delete finishes what an earlier attempt was cut off in.
    await purges.purge(workspace_id, session_id)
    # After the session: an upload still arriving then finds no session to count in and removes itself.
    await blobs.delete_session_blobs(workspace_id, session_id, reservations=reservations)
    if deleted == 0:
        raise store.not_found(session_id)


# Transitions -------------------------------------------------------------------------------------------------


async def _transition(
    workspace_id: str,
    session_id: str,
    operation: Operation,
    update: dict[str, Any] | list[dict[str, Any]],
    txn: AsyncClientSession | None = None,
) -> SessionRead:
    guard = {**store.key(workspace_id, session_id), **store.PAGED, "status": {"$in": accepted_statuses(operation)}}
    for _ in range(2):  # a second time only after migrating a session stored in the old layout
        try:
            doc = await store.sessions().find_one_and_update(
                guard, update, projection=store.SESSION_PROJECTION, return_document=ReturnDocument.AFTER, session=txn
            )
        except OperationFailure as exc:
            # A write that would pass MongoDB's 16 MiB (open pages near their bound plus a huge context): the same
            # 409 as a full append, and nothing is written.
            if exc.code in appends.DOCUMENT_TOO_LARGE_CODES:
                raise store.full(session_id) from exc
            raise
        if doc is not None:
            return _read(doc)
        await misses.explain_miss(workspace_id, session_id)
    raise Conflict(f"session {session_id} changed while this request ran; retry it")


async def touch(workspace_id: str, session_id: str) -> SessionRead:
    """Mark the session active now."""
    now = clock.now()
    return await _transition(
        workspace_id, session_id, Operation.WRITE, {"$set": {"last_active_at": now, "updated_at": now}}
    )


async def pause(workspace_id: str, session_id: str) -> SessionRead:
    """Pause (pausing a paused session keeps it paused and its pause time)."""
    now = clock.now()
    return await _transition(
        workspace_id,
        session_id,
        Operation.PAUSE,
        [
            {
                "$set": {
                    "paused_at": {"$cond": [{"$eq": ["$status", "paused"]}, "$paused_at", now]},
                    "status": moves_to(Operation.PAUSE).value,
                    "updated_at": now,
                }
            }
        ],
    )


async def resume(workspace_id: str, session_id: str) -> SessionRead:
    """Make the session active again."""
    now = clock.now()
    return await _transition(
        workspace_id,
        session_id,
        Operation.RESUME,
        {
            "$set": {
                "status": moves_to(Operation.RESUME).value,
                "last_active_at": now,
                "updated_at": now,
                "paused_at": None,
            }
        },
    )


async def end(
    workspace_id: str,
    session_id: str,
    *,
    status: SessionStatus,
    summary: str | None,
    txn: AsyncClientSession | None = None,
) -> SessionRead:
    """End the session as completed or failed; it accepts nothing afterwards.

    ``txn``: a transaction the end joins (a claim that lets go fails its replay in its own, exactly as ``/fail``)."""
    if status not in (SessionStatus.COMPLETED, SessionStatus.FAILED):
        raise Invalid("status must be completed or failed", errors=[FieldError("status", "completed or failed")])
    now = clock.now()
    elapsed_ms = {"$subtract": [now, "$started_at"]}
    return await _transition(
        workspace_id,
        session_id,
        Operation.END,
        [
            {
                "$set": {
                    "status": status.value,
                    "ended_at": now,
                    "updated_at": now,
                    "paused_at": None,
                    "final_summary": {"$literal": summary},
                    "duration_minutes": {"$max": [0, {"$floor": {"$divide": [elapsed_ms, 60_000]}}]},
                }
            }
        ],
        txn,
    )


async def set_context(workspace_id: str, session_id: str, context: dict[str, Any], *, replace: bool) -> SessionRead:
    """Replace the context map, or merge keys into it; keys that MongoDB would interpret are refused."""
    for name in context:
        if not name or "." in name or name.startswith("$") or "\x00" in name:
            raise Invalid(
                f"context key {name!r} may not be empty, contain '.' or NUL, or start with '$'",
                errors=[FieldError(field=f"context.{name}", message="invalid key")],
            )
    try:
        check_free_form(context)
    except ValueError as exc:
        raise Invalid(str(exc), errors=[FieldError(field="context", message=str(exc))]) from exc
    now = clock.now()
    merged: Any = {"$literal": context}
    if not replace:
        merged = {"$mergeObjects": [{"$ifNull": ["$context_summary", {}]}, {"$literal": context}]}
    return await _transition(
        workspace_id,
        session_id,
        Operation.WRITE,
        [{"$set": {"context_summary": merged, "last_active_at": now, "updated_at": now}}],
    )


async def record_handoff(workspace_id: str, session_id: str, notes: HandoffRequest) -> SessionRead:
    """Leave handoff notes for the next agent and pause the session."""
    now = clock.now()
    return await _transition(
        workspace_id,
        session_id,
        Operation.HANDOFF,
        [
            {
                "$set": {
                    "handoff_notes": {"$literal": notes.model_dump(mode="json")},
                    "paused_at": {"$cond": [{"$eq": ["$status", "paused"]}, {"$ifNull": ["$paused_at", now]}, now]},
                    "status": moves_to(Operation.HANDOFF).value,
                    "last_active_at": now,
                    "updated_at": now,
                }
            }
        ],
    )


# Appends -----------------------------------------------------------------------------------------------------


async def log_action(
    workspace_id: str, session_id: str, data: ActionCreate, *, settings: Settings
) -> tuple[dict[str, Any], bool]:
    """Append an action entry; returns the stored entry and whether this call stored it."""
    entry = {
        "id": data.id or appends.new_entry_id(),
        "action": data.action,
        "details": data.details,
        **blob_ref(data.blob_id),
    }
    return await _append_one(workspace_id, session_id, "work_log", entry, settings)


def blob_ref(blob_id: str | None) -> dict[str, Any]:
    """An entry's reference to a blob, stored only when it has one (entries without keep their old shape)."""
    return {"blob_id": blob_id} if blob_id is not None else {}


def typed_entry(data: WorkLogCreate) -> dict[str, Any]:
    """The stored form of a typed entry request."""
    return {
        "id": data.id or appends.new_entry_id(),
        "message": data.message,
        "type": data.type.value,
        "data": data.data if data.data is not None else {},
        **blob_ref(data.blob_id),
    }


async def log_work(
    workspace_id: str, session_id: str, data: WorkLogCreate, *, settings: Settings
) -> tuple[dict[str, Any], bool]:
    """Append a typed entry; returns the stored entry and whether this call stored it."""
    return await _append_one(workspace_id, session_id, "work_log", typed_entry(data), settings)


async def log_work_batch(
    workspace_id: str, session_id: str, entries: list[WorkLogCreate], *, settings: Settings
) -> appends.AppendOutcome:
    """Append typed entries in one update, skipping those already stored."""
    return await appends.append(
        workspace_id, session_id, array="work_log", entries=[typed_entry(e) for e in entries], settings=settings
    )


async def record_artifact(
    workspace_id: str, session_id: str, data: ArtifactCreate, *, settings: Settings
) -> tuple[dict[str, Any], bool]:
    """Record an artifact; returns the stored entry and whether this call stored it."""
    entry = {
        "id": data.id or appends.new_entry_id(),
        "path": data.path,
        "action": ArtifactAction(data.action).value,
        "metadata": data.metadata,
        **blob_ref(data.blob_id),
    }
    return await _append_one(workspace_id, session_id, "artifacts", entry, settings)


async def _append_one(
    workspace_id: str, session_id: str, array: paging.Kind, entry: dict[str, Any], settings: Settings
) -> tuple[dict[str, Any], bool]:
    outcome = await appends.append(workspace_id, session_id, array=array, entries=[entry], settings=settings)
    if outcome.appended:
        return outcome.appended[0], True
    return outcome.duplicates[0], False
