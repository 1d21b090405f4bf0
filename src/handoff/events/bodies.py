"""The Session body an event carries, read once per change on a worker however many streams send it.

An event of :data:`~handoff.events.mapping.WITH_SESSION` (``session.updated``) carries the Session body as
``GET /v1/sessions/{id}`` answers it, which the change itself does not hold, and a ``handoff.waiting`` of a claim
that let go carries the handoff notes from it (``mapping.needs_body``): :class:`Bodies` reads it once per
change on this worker, however many subscribers hear of it, and only when one of them wants the event. It is the
session *as read when the event was first sent*: a later write may already show in it (its ``changes`` are
exactly this change's), and it is ``null`` when the session was deleted in between. A resumed stream meeting a
change the hub's stream already sent (within the last :data:`BODIES_KEPT` changes) sends the same body.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from pymongo.errors import PyMongoError

from handoff import clock
from handoff.sessions import store, views

#: How many changes' Session bodies a worker keeps, so a resumed stream sends the body the hub's stream sent.
BODIES_KEPT = 1_024


class BodyReadFailed(PyMongoError):
    """The read of a Session body failed: the stream reopens before its change (its position is not lost, unlike
    an ``OperationFailure`` of the change stream itself)."""


class Bodies:
    """The Session body of each change whose events carry one, read once per change on this worker.

    Keyed by the change's resume token, so the hub's stream and resumed streams that meet the same change share
    one read (the first to meet it reads, the others wait for that read) and send the same body.
    """

    def __init__(self, kept: int = BODIES_KEPT) -> None:
        self.kept = kept
        self._read: OrderedDict[str, asyncio.Future[dict[str, Any] | None]] = OrderedDict()

    async def of(self, token: str, workspace_id: str, session_id: str) -> dict[str, Any] | None:
        """The body for the change of ``token``: the session as read now, or ``None`` once it is deleted."""
        found = self._read.get(token)
        if found is None:
            found = asyncio.ensure_future(_session_body(workspace_id, session_id))
            self._read[token] = found
            if len(self._read) > self.kept:
                self._read.popitem(last=False)
        try:
            return await asyncio.shield(found)  # a stream that stops waiting does not cancel the others' read
        except PyMongoError as exc:
            if self._read.get(token) is found:  # not remembered: the next stream to meet the change reads again
                del self._read[token]
            raise BodyReadFailed(f"reading the session for an event failed: {exc}") from exc


async def _session_body(workspace_id: str, session_id: str) -> dict[str, Any] | None:
    doc = await store.sessions().find_one(store.key(workspace_id, session_id), store.SESSION_PROJECTION)
    return None if doc is None else views.session_read(doc, clock.now()).model_dump(mode="json")
