"""What the hub's stream relies on from the driver: which change of a batch is its last.

``pump`` waits a moment (``GATHER_SECONDS``) before a getMore, never between the changes of a batch it already
holds, and pymongo has no public way to say which is which (``AsyncChangeStream`` shows ``alive``,
``resume_token``, ``try_next``, ``next`` and ``close``; its resume token after a batch's last change is the
batch's ``postBatchResumeToken``, which mongod 6.0 makes equal to that change's own id, so it cannot tell either).
``pump._buffered`` reads the driver's batch instead; this pins that reading to the installed driver, against a real
server, so that an upgrade that moves it fails here rather than silently turning the gathering off.
"""

from __future__ import annotations

from handoff.db import MongoDatabase
from handoff.events.pump import _buffered


async def test_the_stream_holds_the_rest_of_its_batch_until_the_last_change(database: MongoDatabase) -> None:
    collection = database["events_pump_probe"]
    async with await collection.watch(max_await_time_ms=1000) as stream:
        await collection.insert_many([{"n": n} for n in range(3)], ordered=True)
        seen: list[tuple[int, bool]] = []
        while len(seen) < 3:
            change = await stream.try_next()  # the first is a getMore that brings all three
            if change is not None:
                seen.append((change["fullDocument"]["n"], _buffered(stream)))
    assert seen == [(0, True), (1, True), (2, False)]
