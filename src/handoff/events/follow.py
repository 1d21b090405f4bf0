"""Following a selection of events in-process, across drops: what ``handoff tail`` reads, without HTTP.

The REST routes hand a :class:`~handoff.events.hub.Subscriber`'s queue to one client, which reconnects with
``Last-Event-ID`` when it is dropped. A consumer in the same process does the same thing without the wire:
:func:`follow` subscribes to the :class:`~handoff.events.hub.Hub`, and when the hub drops it (a full queue),
resumes from the position of the last event it yielded, so each event is yielded once, in order. It ends when
the hub closes (the app stopping): there is nothing left to resume from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from handoff.events.hub import Delivery, Hub, Selection
from handoff.events.mapping import Position


async def follow(
    hub: Hub,
    selection: Selection,
    position: Position | None = None,
    *,
    subscribed: Callable[[], object] | None = None,
) -> AsyncIterator[Delivery]:
    """Every event of ``selection`` from now (or after ``position``), until the caller stops or the hub closes.

    ``subscribed`` is called each time the hub has taken the subscription (its change stream open): from the first
    call on, no later write is missed, which a caller that must not miss the next change waits for.

    Raises :class:`~handoff.errors.Gone` when the position to resume from is too old for the oplog, and
    :class:`~handoff.errors.Unavailable` when the database has no change streams (a standalone mongod).
    """
    while not hub.closing:
        subscriber = await (hub.subscribe(selection) if position is None else hub.resume(selection, position))
        if subscribed is not None:
            subscribed()
        try:
            while (delivery := await subscriber.queue.get()) is not None:
                position = delivery.position
                yield delivery
        finally:
            hub.unsubscribe(subscriber)
