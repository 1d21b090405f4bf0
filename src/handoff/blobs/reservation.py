"""An upload's bytes, reserved in its session before they are stored, so concurrent uploads never pass a cap.

Checking the room a session has and counting the blob once it is stored leaves a window: two uploads that each
fit pass the check together and, stored, pass ``HANDOFF_MAX_SESSION_BYTES`` together. So an upload *reserves*
its bytes first, in the same counters its bytes end in (``payload_bytes`` and ``stored_bytes.blobs``), with one
guarded ``$inc`` whose filter carries the cap (``payload_bytes <= cap - n``), the open status and the paged
layout: MongoDB applies two such updates one after the other, and the second one sees the first's bytes. Every
other write to the session (an append, another upload) is held to the cap with the reservation counted, and the
workspace's usage (the sum of ``payload_bytes``) includes it.

A body of declared length reserves it at once; a streamed one reserves :data:`RESERVE_STEP` bytes at a time
ahead of what arrives (no more than the blob limit lets it still need; near the cap, all the room left, so that of
streamed uploads racing for the last room one gets it whole rather than each a part and none enough; near the
quota, just what each piece needs). Each step passes :func:`handoff.quotas.check_can_write` first, so the
workspace's quota is taken step by step too. When the blob is stored, :meth:`Reservation.settle` turns the
reservation into the blob's exact size in one guarded update (the session still open); whatever else happens
(over the limit, the client gone, the session ended or deleted, the task cancelled), :meth:`Reservation.release`
gives it back.

Each reservation is also named in the session, ``blob_reservations.<id>: {bytes, renewed_at, file_id}``, and
renewed every third of ``HANDOFF_BLOB_RESERVATION_LEASE_SECONDS`` while its upload runs, so the bytes of an upload
whose worker died (nothing left to settle or release them) are not counted for ever: once a reservation has gone a
lease without word, :func:`reclaim_lapsed` takes it out of the session and its bytes out of the counters, in one
pipeline update computed on the server (no rewrite of what was read), and then deletes the GridFS chunks the
upload had written (``file_id`` is the id of its GridFS file, named before its first chunk; the chunks have no
files document, so nothing else finds them). It runs when the cap is what stops a write (an upload's step here,
an append in ``sessions.appends``), which then tries again, and for every session with an upload in progress on
the retention pass (:func:`reclaim_everywhere`), so a dead upload's bytes and chunks go by themselves within a
lease and a pass. Every update of a reservation names the bytes its holder knows it has
(``blob_reservations.<id>.bytes``), so a reservation reclaimed under a live upload (its loop stalled for a whole
lease) is never given back twice or settled as if it still held bytes: that upload is refused with a 409 and
deletes its own file. The session's update comes before the chunks' delete for that reason: once it has matched,
no upload can settle the file whose chunks go; a live upload renewing in time is never reclaimed.

Not covered: a worker killed between the session's update and the chunks' delete leaves those chunks behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from handoff import clock, quotas
from handoff.blobs import storage
from handoff.config import Settings
from handoff.errors import Conflict, QuotaExceeded, SessionFull
from handoff.sessions import misses, store
from handoff.sessions.lifecycle import Operation, accepted_statuses, is_ended
from handoff.sessions.models import UPLOADS_IN_PROGRESS_INDEX
from handoff.workspaces.models import Workspace

#: How far ahead of the bytes received a streamed upload reserves (one guarded update per step).
RESERVE_STEP = 8 * 1024 * 1024
#: How often a guarded update is tried when a concurrent write moved the session between it and its diagnosis.
MAX_ATTEMPTS = 3
#: The session's field of the reservations in progress.
RESERVATIONS = "blob_reservations"


class Reservation:
    """Bytes held in one session's counters for an upload in progress; see the module docstring."""

    def __init__(self, workspace_id: str, session_id: str, *, settings: Settings) -> None:
        self.workspace_id = workspace_id
        self.session_id = session_id
        self.settings = settings
        self.reserved = 0
        self.field = f"{RESERVATIONS}.{uuid.uuid4().hex}"
        #: The GridFS file the upload writes (``upload.receive(file_id=...)``), named in the reservation.
        self.file_id = ObjectId()
        self._renewing: asyncio.Task[None] | None = None

    async def ensure(self, total: int, *, ahead: int = 0) -> None:
        """Hold at least ``total`` bytes (up to ``total + ahead`` when the cap has room); else the 409 why not."""
        need = total - self.reserved
        if need <= 0:
            return
        if ahead:
            try:
                await self._take(need + ahead)
                return
            except QuotaExceeded:
                pass  # near the workspace's quota: just what this piece needs
            except SessionFull:
                # Near the cap: all the room left, so that of uploads racing for it one is whole, not all cut short.
                room = await self._room()
                if room > need and await self._try_take(min(room, need + ahead)):
                    return
        await self._take(need)

    async def _room(self) -> int:
        view = await store.sessions().find_one(
            store.key(self.workspace_id, self.session_id), {"_id": 0, "payload_bytes": 1}
        )
        return max(0, self.settings.max_session_bytes - int((view or {}).get("payload_bytes", 0)))

    async def _try_take(self, amount: int) -> bool:
        try:
            await self._take(amount)
        except (SessionFull, QuotaExceeded):
            return False
        return True

    async def _take(self, amount: int) -> None:
        await quotas.check_can_write(self.workspace_id, adds_bytes=amount, settings=self.settings)
        await self._guarded_inc(amount)
        self.reserved += amount
        if self._renewing is None:
            self._renewing = asyncio.create_task(self._renew())

    async def settle(self, size: int) -> None:
        """Count the stored blob at its exact ``size`` in place of the reservation, the session still open."""
        await self.ensure(size)  # a body longer than it declared: the rest is held to the cap too
        await self._guarded_inc(size - self.reserved, settles=True)
        self.reserved = 0
        await self._stop_renewing()

    async def release(self) -> None:
        """Give the reservation back (the upload failed); runs to the end even if the task is being cancelled."""
        amount, self.reserved = self.reserved, 0
        await asyncio.shield(self._give_back(amount))

    async def _give_back(self, amount: int) -> None:
        await self._stop_renewing()
        if amount:  # matches nothing when the reservation lapsed and was reclaimed: its bytes are given back already
            await self._inc(
                {**store.key(self.workspace_id, self.session_id), **self._as_held(amount)}, -amount, ends=True
            )

    def hold_ahead(self, body: AsyncIterable[bytes], *, limit: int) -> AsyncIterator[bytes]:
        """``body``, each piece reserved before it is passed on (:data:`RESERVE_STEP` ahead, never past
        ``limit`` bytes in all: the blob limit, which the receiver enforces)."""
        return self._held(body, limit)

    async def _held(self, body: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
        received = 0
        async for piece in body:
            received += len(piece)
            if received > self.reserved:
                await self.ensure(min(received, limit), ahead=max(0, min(RESERVE_STEP, limit - received)))
            yield piece

    async def _renew(self) -> None:
        """Tell the session the upload is alive, every third of the lease, until it is settled or released."""
        every = self.settings.blob_reservation_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(PyMongoError):  # a missed renewal is made up by the next (two are left)
                await store.sessions().update_one(
                    {**store.key(self.workspace_id, self.session_id), self.field: {"$exists": True}},
                    {"$set": {f"{self.field}.renewed_at": clock.now()}},
                )

    async def _stop_renewing(self) -> None:
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    def _as_held(self, amount: int) -> dict[str, Any]:
        """The filter on this reservation as its holder knows it: absent before its first bytes, else ``amount``."""
        return {f"{self.field}.bytes": amount} if amount else {self.field: {"$exists": False}}

    async def _guarded_inc(self, amount: int, *, settles: bool = False) -> None:
        """``$inc`` the session's blob bytes by ``amount`` while it is open, paged and (growing) within the cap, and
        the reservation by as much (or, ``settles``, remove it: its bytes are the blob's now)."""
        cap = self.settings.max_session_bytes
        guard: dict[str, Any] = {
            **store.key(self.workspace_id, self.session_id),
            "status": {"$in": accepted_statuses(Operation.WRITE)},
            **store.PAGED,
            **self._as_held(self.reserved),
        }
        if cap and amount > 0:
            guard["payload_bytes"] = {"$lte": cap - amount}
        for _ in range(MAX_ATTEMPTS):
            if await self._inc(guard, amount, ends=settles):
                return
            await self._explain_miss(amount)
        raise Conflict(f"session {self.session_id} changed while the blob was stored; upload it again")

    async def _inc(self, query: dict[str, Any], amount: int, *, ends: bool) -> bool:
        """One update of the counters by ``amount``; the reservation grows by as much and is renewed, or it ``ends``
        (settled or released)."""
        now = clock.now()
        update: dict[str, Any] = {
            "$inc": {"payload_bytes": amount, "stored_bytes.blobs": amount},
            "$set": {"last_active_at": now, "updated_at": now},
        }
        if ends:
            update["$unset"] = {self.field: ""}
        else:
            update["$inc"][f"{self.field}.bytes"] = amount
            update["$set"][f"{self.field}.renewed_at"] = now
            update["$set"][f"{self.field}.file_id"] = self.file_id
        result = await store.sessions().update_one(query, update)
        return bool(result.matched_count)

    async def _explain_miss(self, amount: int) -> None:
        """Raise why the guarded update matched nothing; return (to try again) once an old layout is migrated or
        lapsed reservations are reclaimed."""
        view = await store.sessions().find_one(
            store.key(self.workspace_id, self.session_id),
            {"_id": 0, "status": 1, "payload_bytes": 1, "pages_version": 1, self.field: 1},
        )
        if view is None:
            raise store.not_found(self.session_id)
        if is_ended(view["status"]):
            raise store.ended(self.session_id, view["status"])
        if "pages_version" not in view:  # stored before the paged layout: migrate it, then count the blob there
            await misses.explain_miss(self.workspace_id, self.session_id, settings=self.settings)
            return
        held = view.get(RESERVATIONS, {}).get(self.field.partition(".")[2], {}).get("bytes", 0)
        if held != self.reserved:
            raise Conflict(
                f"the upload to session {self.session_id} gave no word for HANDOFF_BLOB_RESERVATION_LEASE_SECONDS "
                "and its reserved bytes were reclaimed; upload it again"
            )
        cap = self.settings.max_session_bytes
        if cap and view.get("payload_bytes", 0) > cap - amount:
            if await reclaim_lapsed(self.workspace_id, self.session_id, settings=self.settings):
                return
            raise store.full(self.session_id, cap)


def _reservations() -> dict[str, Any]:
    return {"$objectToArray": {"$ifNull": [f"${RESERVATIONS}", {}]}}


def _lapsed_before(cutoff: datetime) -> dict[str, Any]:
    """The ``$expr`` of a session with a reservation renewed before ``cutoff``."""
    return {"$anyElementTrue": [{"$map": {"input": _reservations(), "as": "r", "in": _renewed_before("r", cutoff)}}]}


def _renewed_before(item: str, cutoff: datetime) -> dict[str, Any]:
    return {"$lt": [f"$${item}.v.renewed_at", cutoff]}


def _has_lapsed(held: Mapping[str, Any], cutoff: datetime) -> bool:
    """:func:`_renewed_before` read in Python (a missing date is before any, as the server orders them)."""
    renewed = held.get("renewed_at")
    return renewed is None or clock.as_utc(renewed) < cutoff


async def reclaim_lapsed(workspace_id: str, session_id: str, *, settings: Settings) -> int:
    """Take the reservations of a session that gave no word for a lease out of it and their bytes out of its
    counters, in one update computed on the server, then delete the chunks their uploads wrote; how many there
    were (a write stopped by the cap may then try again)."""
    cutoff = clock.now() - timedelta(seconds=settings.blob_reservation_lease_seconds)
    lapsed_ones = {"$filter": {"input": _reservations(), "as": "r", "cond": _renewed_before("r", cutoff)}}
    before = await store.sessions().find_one_and_update(
        {**store.key(workspace_id, session_id), "$expr": _lapsed_before(cutoff)},
        [
            {"$set": {"_lapsed": lapsed_ones}},
            {
                "$set": {
                    "payload_bytes": {"$subtract": ["$payload_bytes", {"$sum": "$_lapsed.v.bytes"}]},
                    "stored_bytes.blobs": {"$subtract": ["$stored_bytes.blobs", {"$sum": "$_lapsed.v.bytes"}]},
                    RESERVATIONS: {
                        "$arrayToObject": {
                            "$filter": {
                                "input": _reservations(),
                                "as": "r",
                                "cond": {"$not": [_renewed_before("r", cutoff)]},
                            }
                        }
                    },
                }
            },
            {"$unset": "_lapsed"},
        ],
        projection={"_id": 0, RESERVATIONS: 1},
        return_document=ReturnDocument.BEFORE,
    )
    if before is None:
        return 0
    # The document the update matched, so exactly the reservations it took out; none of them can settle now.
    lapsed = [held for held in (before.get(RESERVATIONS) or {}).values() if _has_lapsed(held, cutoff)]
    # Reservations written before they named their file (``file_id``) are given back without their chunks.
    await storage.delete_ids([held["file_id"] for held in lapsed if isinstance(held.get("file_id"), ObjectId)])
    return len(lapsed)


async def reclaim_everywhere(settings: Settings) -> int:
    """:func:`reclaim_lapsed` in every session, of every workspace, with an upload in progress (the partial index
    :data:`~handoff.sessions.models.UPLOADS_IN_PROGRESS_INDEX` holds only those); the reservations reclaimed."""
    cutoff = clock.now() - timedelta(seconds=settings.blob_reservation_lease_seconds)
    reclaimed = 0
    async for workspace in Workspace.get_pymongo_collection().find({}, {"_id": 0, "workspace_id": 1}):
        in_progress = store.sessions().find(
            {"workspace_id": workspace["workspace_id"], RESERVATIONS: {"$gt": {}}},
            {"_id": 0, "session_id": 1, RESERVATIONS: 1},
            hint=UPLOADS_IN_PROGRESS_INDEX,
        )
        async for session in in_progress:
            if any(_has_lapsed(held, cutoff) for held in session[RESERVATIONS].values()):
                reclaimed += await reclaim_lapsed(workspace["workspace_id"], session["session_id"], settings=settings)
    return reclaimed
