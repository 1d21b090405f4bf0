"""Reading one change stream into deliveries: what the hub's stream and each resumed stream do alike.

Each change is mapped (``mapping.events_of``) into its events, each with the :class:`Position` a stream resumes
from after it, completed with the Session body where it carries one (``bodies.Bodies``), and handed to the
consumer in order; the resume token after the last change delivered in full is kept in a :class:`Cursor`, from
which a stream that failed reopens. Under a steady flow of writes the stream reads in gulps
(:data:`GATHER_SECONDS`) rather than one round trip to mongod per change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream

from handoff import clock
from handoff.events.bodies import Bodies
from handoff.events.mapping import Event, Position, events_of, needs_body, split_key, with_body

#: How long a stream that has just delivered changes waits before asking the server for more: under a steady flow
#: of writes one getMore then brings the changes of this long instead of one each (a round trip to mongod per
#: change costs the service and mongod more CPU than fanning the change out); an idle stream still hears of a
#: change as soon as it is made, since its getMore waits on the server. 50 ms measured cheaper still (the hub's
#: idle stream -0.02-0.08 ms of CPU per append at 200 appends/s against 0.18-0.26 at 10 ms), but one of its runs
#: had a p99 of 270 ms, over the 250 ms goal and unexplained: 10 ms until more runs say otherwise.
GATHER_SECONDS = 0.01


@dataclass(slots=True)
class Delivery:
    """An event and the position a stream resumes from after it (its SSE ``id:``).

    The hub hands the same delivery to every subscriber of its event, so what is derived from it alone is derived
    once: ``encoded`` is its server-sent-event message, set by the first stream that sends it
    (``controller.encoded``) and sent as it is by the others.
    """

    event: Event
    position: Position
    encoded: bytes | None = field(default=None, compare=False, repr=False)


def deliveries(change: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[Delivery]:
    """The events of ``change`` with their positions; ``before`` is the stream's resume token just before it."""
    events = events_of(change, clock.now())
    last = len(events) - 1
    token = change["_id"]["_data"]
    if before is None and last > 0:  # cannot happen on a stream that has answered once; resume at the change
        before = change["_id"]
    return [
        Delivery(event, Position(token) if i == last else Position(before["_data"], i + 1))  # type: ignore[index]
        for i, event in enumerate(events)
    ]


@dataclass(slots=True)
class Cursor:
    """The resume token after the last change a stream delivered in full: where to reopen it after a failure."""

    token: Mapping[str, Any] | None = None


async def pump(
    stream: AsyncChangeStream[Any],
    deliver: Callable[[Delivery], Awaitable[None]],
    running: Callable[[], bool],
    *,
    heard: Callable[[str, str], bool],
    wanted: Callable[[Event], bool],
    bodies: Bodies,
    cursor: Cursor,
    skip: int = 0,
) -> None:
    """Read ``stream`` while ``running()``, handing each change's deliveries to ``deliver`` (the first ``skip`` of
    the first change are ones the subscriber already has), with the Session body of those ``wanted`` that carry
    one. A change is delivered whole or not at all: a failed read of its body leaves ``cursor`` before it.

    A change of a session nobody follows (``heard(workspace_id, session_id)`` false) is not even mapped: most
    writes of a busy service are to sessions no stream follows, and mapping renders every entry they append.
    """
    cursor.token = stream.resume_token
    while running() and stream.alive:
        change = await stream.try_next()
        if change is not None:
            key = split_key(change.get("documentKey", {}).get("_id"))
            found = deliveries(change, cursor.token)[skip:] if key is not None and heard(*key) else []
            for i, delivery in enumerate(found):
                event = delivery.event
                if needs_body(event) and wanted(event):
                    body = await bodies.of(change["_id"]["_data"], event.workspace_id, event.session_id)
                    found[i] = replace(delivery, event=with_body(event, body))
            for delivery in found:
                await deliver(delivery)
            skip = 0
            if not _buffered(stream):  # the next read is a getMore: let the changes of the next moments gather
                await asyncio.sleep(GATHER_SECONDS)
        cursor.token = stream.resume_token


def _buffered(stream: AsyncChangeStream[Any]) -> bool:
    """Whether ``stream`` holds changes it has not returned yet (its next ``try_next`` needs no round trip).

    pymongo (4.20) has no public way to ask, and its one public hint does not tell: the stream's ``resume_token``
    after a batch's last change is the batch's ``postBatchResumeToken``, which mongod 6.0 made equal to that
    change's own id at 78 of 78 batch ends measured. So this reads the cursor's batch, says ``True`` (no
    gathering, as before it) should that attribute ever go, and ``tests/test_events_pump.py`` pins the reading to
    the installed driver, so that an upgrade which moves it fails there instead of turning the gathering off.
    """
    return bool(getattr(getattr(stream, "_cursor", None), "_data", True))
