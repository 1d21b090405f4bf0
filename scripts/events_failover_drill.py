"""Events drill: a stream and a Last-Event-ID resume stay exact while the replica set's primary steps down.

    .venv/bin/python scripts/events_failover_drill.py    # elections in about a second; about 30 s in all

It starts a 3-member replica set of the bundled mongod (as ``failover_drill.py --short`` does), ``handoff serve``
against it, one writer appending to one session (retrying the *same* id until acknowledged, as a client may) and
two followers of that session's events, each reconnecting with ``Last-Event-ID`` whenever its stream ends:

* ``live`` stays connected throughout;
* ``resumed`` reads some events, disconnects *before* the step-down, and resumes with its last id once the new
  primary is elected (the token was written by the old primary's oplog).

Then the writer stops, the session's log is read back through the API, and each follower must have received
exactly its entries, in that order, every event id once: no gap, no duplicate. It prints a last JSON line and
exits non-zero otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _bench_common import create_key, serve
from failover_drill import (
    SHORT,
    Tally,
    Timeline,
    _step_down,
    _until_acknowledged,
    drill_replica_set,
    get_when_available,
)
from handoff.localdb import ReplicaSet

DATABASE = "events_drill"
CATCH_UP_SECONDS = 60


@dataclass
class Follower:
    """What one follower received: ``(event id, entry id)`` per ``work_log.appended``, and how it went."""

    name: str
    received: list[tuple[str, str]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    connections: int = 0
    ended: list[str] = field(default_factory=list)
    #: Set once its first stream is open (the service subscribes it before it answers 200).
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_id(self) -> str | None:
        return self.event_ids[-1] if self.event_ids else None


async def follow(http: httpx.AsyncClient, session_id: str, follower: Follower, until: Callable[[], bool]) -> None:
    """Read the session's events until ``until()``, reconnecting with the last id whenever the stream ends."""
    while not until():
        headers = {"Last-Event-ID": follower.last_id} if follower.last_id else {}
        try:
            async with http.stream("GET", f"/v1/sessions/{session_id}/events", headers=headers) as response:
                follower.connections += 1
                if response.status_code != 200:
                    follower.ended.append(f"HTTP {response.status_code}")
                    await asyncio.sleep(0.5)
                    continue
                follower.connected.set()
                fields: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif not line and "event" in fields:
                        if fields["event"] == "error":
                            follower.ended.append(json.loads(fields["data"])["detail"])
                            break
                        follower.event_ids.append(fields["id"])
                        if fields["event"] == "work_log.appended":
                            follower.received.append((fields["id"], json.loads(fields["data"])["entry"]["id"]))
                        fields = {}
                    if until():
                        return
        except httpx.TransportError as exc:
            follower.ended.append(type(exc).__name__)
            await asyncio.sleep(0.5)


async def drill(replicas: ReplicaSet, base: str, secret: str) -> dict[str, Any]:
    tally, timeline, stop = Tally(), Timeline(), asyncio.Event()
    headers = {"Authorization": f"Bearer {secret}"}
    timeout = httpx.Timeout(connect=5, read=30, write=10, pool=10)
    acknowledged: list[str] = []
    stored: list[str] | None = None
    live, resumed = Follower("live"), Follower("resumed")

    def caught_up(follower: Follower) -> Callable[[], bool]:
        return lambda: stored is not None and len(follower.received) >= len(stored)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as http:
        created, _ = await _until_acknowledged(http, "POST", "/v1/sessions", {"agent_type": "drill"}, tally)
        session_id = created.json()["session_id"]

        async def write() -> None:
            number = 0
            while not stop.is_set():
                body = {"id": f"e{number:06d}", "message": f"note {number}"}
                await _until_acknowledged(http, "POST", f"/v1/sessions/{session_id}/work-log", body, tally)
                acknowledged.append(body["id"])
                number += 1
                await asyncio.sleep(0.02)

        following = asyncio.create_task(follow(http, session_id, live, caught_up(live)))
        leaving = asyncio.create_task(follow(http, session_id, resumed, lambda: len(resumed.received) >= 20))
        # The writer starts once both are subscribed: a stream opened without Last-Event-ID starts from now, so an
        # append acknowledged before a follower's subscription never reaches it (on a loaded host the first
        # appends did, and the drill counted them lost).
        await asyncio.wait_for(asyncio.gather(live.connected.wait(), resumed.connected.wait()), CATCH_UP_SECONDS)
        writing = asyncio.create_task(write())
        timeline.note("followers subscribed, writer started")
        await leaving
        timeline.note(f"'resumed' left after {len(resumed.received)} entries")
        await asyncio.sleep(SHORT.warmup)
        old = await asyncio.to_thread(_step_down, replicas, 15)
        began = time.monotonic()
        timeline.note(f"replSetStepDown on {old}")
        new = await asyncio.to_thread(replicas.primary, 120)
        timeline.note(f"new primary 127.0.0.1:{new.port} after {time.monotonic() - began:.1f} s")
        resuming = asyncio.create_task(follow(http, session_id, resumed, caught_up(resumed)))
        timeline.note("'resumed' reconnects with its Last-Event-ID")
        await asyncio.sleep(SHORT.pause)
        stop.set()
        await writing
        timeline.note(f"writer stopped after {len(acknowledged)} acknowledged appends")
        page = await get_when_available(http, f"/v1/sessions/{session_id}/work-log", offset=0, limit=1000)
        stored = [item["id"] for item in page["items"]]
        try:
            await asyncio.wait_for(asyncio.gather(following, resuming), CATCH_UP_SECONDS)
        except TimeoutError:
            following.cancel()
            resuming.cancel()
        timeline.note("followers caught up (or gave up)")

    def check(follower: Follower) -> dict[str, Any]:
        entries = [entry for _, entry in follower.received]
        return {
            "received": len(entries),
            "exact": entries == stored,
            "lost": len(set(stored or ()) - set(entries)),
            "duplicated": len(entries) - len(set(entries)),
            "duplicate_event_ids": len(follower.event_ids) - len(set(follower.event_ids)),
            "connections": follower.connections,
            "ended": follower.ended[:10],
        }

    return {
        "acknowledged": len(acknowledged),
        "stored": len(stored or ()),
        "acknowledged_missing": len(set(acknowledged) - set(stored or ())),
        "http_500": tally.statuses.get("500", 0),
        "live": check(live),
        "resumed": check(resumed),
        "timeline": [[round(at, 1), what] for at, what in timeline.events],
    }


def passed(result: dict[str, Any]) -> bool:
    return (
        result["acknowledged"] > 0
        and result["acknowledged_missing"] == 0
        and result["http_500"] == 0
        and all(result[name]["exact"] and result[name]["duplicate_event_ids"] == 0 for name in ("live", "resumed"))
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="events-drill-") as tmp:
        replicas = drill_replica_set(Path(tmp), SHORT.election_timeout_ms, name="evdrill")
        log = Path(tmp) / "service.log"
        try:
            secret = asyncio.run(create_key(replicas.url, DATABASE)).secret
            with serve(
                replicas.url,
                DATABASE,
                log=log,
                server_selection_timeout_ms=SHORT.server_selection_timeout_ms,
                events_heartbeat_seconds=1,
            ) as service:
                result = asyncio.run(drill(replicas, service.base, secret))
        finally:
            replicas.stop()
        server_log = log.read_text(errors="replace")
    for name in ("live", "resumed"):
        print(f"{name}: {result[name]}")
    if "Traceback" in server_log:
        print(f"the service logged a traceback; its last lines:\n{server_log[-2000:]}")
    print(f"RESULT: {'PASS' if passed(result) else 'FAIL'} (each follower: every stored entry once, in order)")
    print(json.dumps(result))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
