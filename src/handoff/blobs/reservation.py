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

Not covered: a process killed mid-upload leaves its reservation counted in the session (at most the declared
length, or one step ahead of what had arrived) until the session is deleted or its blobs recounted
(``handoff import --blobs`` sets a session's blob bytes from GridFS).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from handoff import clock, quotas
from handoff.config import Settings
from handoff.errors import Conflict, QuotaExceeded, SessionFull
from handoff.sessions import misses, store
from handoff.sessions.lifecycle import Operation, accepted_statuses, is_ended

#: How far ahead of the bytes received a streamed upload reserves (one guarded update per step).
RESERVE_STEP = 8 * 1024 * 1024
#: How often a guarded update is tried when a concurrent write moved the session between it and its diagnosis.
MAX_ATTEMPTS = 3


class Reservation:
    """Bytes held in one session's counters for an upload in progress; see the module docstring."""

    def __init__(self, workspace_id: str, session_id: str, *, settings: Settings) -> None:
        self.workspace_id = workspace_id
        self.session_id = session_id
        self.settings = settings
        self.reserved = 0

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

    async def settle(self, size: int) -> None:
        """Count the stored blob at its exact ``size`` in place of the reservation, the session still open."""
        await self.ensure(size)  # a body longer than it declared: the rest is held to the cap too
        await self._guarded_inc(size - self.reserved)
        self.reserved = 0

    async def release(self) -> None:
        """Give the reservation back (the upload failed); runs to the end even if the task is being cancelled."""
        amount, self.reserved = self.reserved, 0
        if amount:
            await asyncio.shield(self._inc({**store.key(self.workspace_id, self.session_id)}, -amount))

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

    async def _guarded_inc(self, amount: int) -> None:
        """``$inc`` the session's blob bytes by ``amount`` while it is open, paged and (growing) within the cap."""
        cap = self.settings.max_session_bytes
        guard: dict[str, Any] = {
            **store.key(self.workspace_id, self.session_id),
            "status": {"$in": accepted_statuses(Operation.WRITE)},
            **store.PAGED,
        }
        if cap and amount > 0:
            guard["payload_bytes"] = {"$lte": cap - amount}
        for _ in range(MAX_ATTEMPTS):
            if await self._inc(guard, amount):
                return
            await self._explain_miss(amount)
        raise Conflict(f"session {self.session_id} changed while the blob was stored; upload it again")

    async def _inc(self, query: dict[str, Any], amount: int) -> bool:
        now = clock.now()
        result = await store.sessions().update_one(
            query,
            {
                "$inc": {"payload_bytes": amount, "stored_bytes.blobs": amount},
                "$set": {"last_active_at": now, "updated_at": now},
            },
        )
        return bool(result.matched_count)

    async def _explain_miss(self, amount: int) -> None:
        """Raise why the guarded update matched nothing; return (to try again) once an old layout is migrated."""
        view = await store.sessions().find_one(
            store.key(self.workspace_id, self.session_id),
            {"_id": 0, "status": 1, "payload_bytes": 1, "pages_version": 1},
        )
        if view is None:
            raise store.not_found(self.session_id)
        if is_ended(view["status"]):
            raise store.ended(self.session_id, view["status"])
        if "pages_version" not in view:  # stored before the paged layout: migrate it, then count the blob there
            await misses.explain_miss(self.workspace_id, self.session_id, settings=self.settings)
            return
        cap = self.settings.max_session_bytes
        if cap and view.get("payload_bytes", 0) > cap - amount:
            raise store.full(self.session_id, cap)
