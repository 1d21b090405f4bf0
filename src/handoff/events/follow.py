"""Following a selection of events in-process, across drops: what ``handoff tail`` reads, without HTTP.

The REST routes hand a :class:`~handoff.events.hub.Subscriber`'s queue to one client, which reconnects with
``Last-Event-ID`` when it is dropped. A consumer in the same process does the same thing without the wire:
:func:`follow` subscribes to the :class:`~handoff.events.hub.Hub`, and when the hub drops it (a full queue),
resumes from the position of the last event it yielded, so each event is yielded once, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from handoff.events.hub import Delivery, Hub, Selection
from handoff.events.mapping import Position


async def follow(hub: Hub, selection: Selection, position: Position | None = None) -> AsyncIterator[Delivery]:
    """Every event of ``selection`` from now (or after ``position``), until the caller stops iterating.

    Raises :class:`~handoff.errors.Gone` when the position to resume from is too old for the oplog, and
    :class:`~handoff.errors.Unavailable` when the database has no change streams (a standalone mongod).
    """
    while True:
        subscriber = await (hub.subscribe(selection) if position is None else hub.resume(selection, position))
        try:
            while (delivery := await subscriber.queue.get()) is not None:
                position = delivery.position
                yield delivery
        finally:
            hub.unsubscribe(subscriber)
