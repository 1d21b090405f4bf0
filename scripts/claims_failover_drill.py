"""Claims failover drill: no handoff claimed twice and none lost while the primary is stepped down, killed and
restarted.

    .venv/bin/python scripts/claims_failover_drill.py           # the recorded run (default election timeout)
    .venv/bin/python scripts/claims_failover_drill.py --short   # the suite's version: elections in ~1 s

The sibling of ``failover_drill.py`` (same 3-member replica set on loopback, same ``handoff serve`` against all
three members, same disruption: ``replSetStepDown``, SIGKILL of the new primary, restart), with a queue instead of
appends. A producer hands off a new session every ``PRODUCE_EVERY`` seconds; ``CLAIMERS`` agents loop: claim
(``POST /v1/handoffs/claim`` with an Idempotency-Key of their own per attempt, resent unchanged on any failure
until the service answers 201, 200 or 204, as api.md promises a client may), append one entry to the replay
session, complete it. After the disruption the producer stops and the claimers drain the queue.

Then it counts, through the API and the database (majority reads): a handoff that more than one claim completed,
or that two claims held at once, is a *double claim*; a handoff acknowledged by its ``/handoff`` call that no claim
completed, or that ``GET /v1/analytics/handoffs`` still lists, is *lost*; a claim the service answered 201/200
for that the database does not hold is a *lost claim*. It prints the timeline and a last JSON line, and exits
non-zero unless 0 double claims, 0 lost handoffs, 0 lost claims and no HTTP 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from pymongo.read_concern import ReadConcern

from _bench_common import create_key, serve
from failover_drill import (
    DRAIN_TIMEOUT_SECONDS,
    FULL,
    SHORT,
    Plan,
    Tally,
    Timeline,
    disrupt,
    drill_replica_set,
    get_when_available,
)
from handoff.localdb import ReplicaSet

DATABASE = "claims_drill"
CLAIMERS = 6
PRODUCE_EVERY = 0.05
#: Consecutive 204s (per claimer) after which the drained queue counts as empty.
EMPTY_IN_A_ROW = 5


@dataclass
class Queue:
    """What the producer and the claimers were told by the service."""

    handoffs: list[str] = field(default_factory=list)  # sessions whose /handoff was acknowledged
    claims: list[dict[str, Any]] = field(default_factory=list)  # every 201/200 claim answer
    completed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # handoff -> claim ids


async def until_answered(
    http: httpx.AsyncClient, method: str, url: str, body: Any, tally: Tally, *, ok: tuple[int, ...], **kwargs: Any
) -> httpx.Response:
    """Send, and the same request again on any failure, until the service answers one of ``ok``."""
    while True:
        try:
            response = await http.request(method, url, json=body, **kwargs)
        except httpx.TransportError as exc:
            tally.statuses[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        tally.statuses[str(response.status_code)] += 1
        if response.status_code in ok:
            return response
        if response.status_code == 503:
            if "retry-after" not in response.headers or "problem+json" not in response.headers.get("content-type", ""):
                tally.unexpected.append(f"{method} {url} -> 503 without Retry-After or problem+json")
            await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 2.0))
            continue
        tally.unexpected.append(f"{method} {url} -> {response.status_code}: {response.text[:200]}")
        await asyncio.sleep(0.2)


async def produce(http: httpx.AsyncClient, queue: Queue, stop: asyncio.Event, tally: Tally) -> None:
    """Hand off a new session at a steady pace until told to stop (the one in flight is finished)."""
    number = 0
    while not stop.is_set():
        created = await until_answered(
            http, "POST", "/v1/sessions", {"agent_type": "drill"}, tally, ok=(200, 201),
            headers={"Idempotency-Key": f"produce-{number}"},
        )  # fmt: skip
        sid = created.json()["session_id"]
        notes = {"summary": f"handoff {number}", "next_steps": ["finish it"]}
        await until_answered(http, "POST", f"/v1/sessions/{sid}/handoff", notes, tally, ok=(200,))
        queue.handoffs.append(sid)
        number += 1
        await asyncio.sleep(PRODUCE_EVERY)


async def finish(http: httpx.AsyncClient, claim: dict[str, Any], tally: Tally) -> None:
    """Work in the replay (one entry, retried by its id) and complete it (a retry finding it completed is done)."""
    replay = claim["session"]["session_id"]
    entry = {"id": f"work-{claim['claim_id']}", "message": "did the work", "type": "success"}
    await until_answered(http, "POST", f"/v1/sessions/{replay}/work-log", entry, tally, ok=(200, 201))
    while True:
        done = await until_answered(
            http, "POST", f"/v1/sessions/{replay}/complete", {"summary": "done"}, tally, ok=(200, 409)
        )
        if done.status_code == 200:
            return
        session = await get_when_available(http, f"/v1/sessions/{replay}")
        if session["status"] == "completed":  # an earlier try completed it; its answer was lost
            return
        tally.unexpected.append(f"replay {replay} of {claim['claim_id']} is {session['status']}, not completed")
        return


async def claim_loop(
    http: httpx.AsyncClient, number: int, queue: Queue, producing: asyncio.Event, tally: Tally
) -> None:
    """Claim, work, complete; until the producer has stopped and the queue has stayed empty a while."""
    attempt = empty = 0
    while True:
        key = f"claimer-{number}-{attempt}"
        attempt += 1
        answer = await until_answered(
            http, "POST", "/v1/handoffs/claim", {}, tally, ok=(200, 201, 204), headers={"Idempotency-Key": key}
        )
        if answer.status_code == 204:
            empty += 1
            if not producing.is_set() and empty >= EMPTY_IN_A_ROW:
                return
            await asyncio.sleep(0.1)
            continue
        empty = 0
        claim = answer.json()
        queue.claims.append(claim)
        await finish(http, claim, tally)
        queue.completed[claim["handoff_session_id"]].append(claim["claim_id"])


def stored_claims(url: str) -> list[dict[str, Any]]:
    """Every claim the database holds, read at majority."""
    with MongoClient(url, serverSelectionTimeoutMS=30_000, tz_aware=True) as client:
        claims = client[DATABASE].get_collection("claims", read_concern=ReadConcern("majority"))
        return list(claims.find({}, {"_id": 0}))


async def drill(replicas: ReplicaSet, base: str, secret: str, plan: Plan) -> dict[str, Any]:
    tally, queue, timeline = Tally(), Queue(), Timeline()
    stop, producing = asyncio.Event(), asyncio.Event()
    producing.set()
    timeout = httpx.Timeout(connect=5, read=plan.server_selection_timeout_ms / 1000 * 3, write=10, pool=10)
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=CLAIMERS + 4)
    ) as http:
        producer = asyncio.create_task(produce(http, queue, stop, tally))
        claimers = [asyncio.create_task(claim_loop(http, n, queue, producing, tally)) for n in range(CLAIMERS)]
        timeline.note(f"a producer and {CLAIMERS} claimers started")
        await disrupt(replicas, plan, timeline)
        stop.set()
        await asyncio.wait_for(producer, DRAIN_TIMEOUT_SECONDS)
        producing.clear()
        timeline.note(f"producer stopped after {len(queue.handoffs)} handoffs; claimers drain the queue")
        await asyncio.wait_for(asyncio.gather(*claimers), DRAIN_TIMEOUT_SECONDS)
        timeline.note("queue drained")
        still_waiting = await get_when_available(http, "/v1/analytics/handoffs", limit=1000)
    stored = await asyncio.to_thread(stored_claims, replicas.url)
    stored_ids = {claim["claim_id"] for claim in stored}
    finished_by: dict[str, set[str]] = defaultdict(set)
    for claim in stored:
        if claim.get("ended_state") == "completed" or claim.get("holds"):
            finished_by[claim["handoff_session_id"]].add(claim["claim_id"])
    doubled = sorted(h for h, ids in queue.completed.items() if len(set(ids)) > 1)
    doubled += sorted(h for h, ids in finished_by.items() if len(ids) > 1 and h not in doubled)
    lost = sorted(set(queue.handoffs) - set(queue.completed))
    answered = {claim["claim_id"] for claim in queue.claims}
    return {
        "claimers": CLAIMERS,
        "election_timeout_ms": plan.election_timeout_ms,
        "seconds": round(time.monotonic() - timeline.start, 1),
        "handoffs": len(queue.handoffs),
        "claims_answered": len(answered),
        "claims_stored": len(stored),
        "completed_handoffs": len(queue.completed),
        "double_claims": len(doubled),
        "lost_handoffs": len(lost) + len(still_waiting["items"]),
        "lost_claims": len(answered - stored_ids),
        "examples": {"doubled": doubled[:5], "lost": lost[:5], "still_waiting": still_waiting["items"][:5]},
        "http_statuses": dict(sorted(tally.statuses.items())),
        "http_500": tally.statuses.get("500", 0),
        "unexpected": tally.unexpected[:20],
        "timeline": [[round(at, 1), what] for at, what in timeline.events],
    }


def passed(result: dict[str, Any]) -> bool:
    return (
        result["double_claims"] == 0
        and result["lost_handoffs"] == 0
        and result["lost_claims"] == 0
        and result["http_500"] == 0
        and not result["unexpected"]
        and result["completed_handoffs"] == result["handoffs"] > 0
    )


def report(result: dict[str, Any], server_log: str) -> None:
    statuses = ", ".join(f"{status} x{count}" for status, count in result["http_statuses"].items())
    print(
        f"\nhandoffs {result['handoffs']}, claims answered {result['claims_answered']} (stored "
        f"{result['claims_stored']}), handoffs completed by a claim {result['completed_handoffs']}; "
        f"double claims {result['double_claims']}, lost handoffs {result['lost_handoffs']}, "
        f"lost claims {result['lost_claims']}"
    )
    print(f"HTTP statuses seen: {statuses}")
    for line in result["unexpected"]:
        print(f"unexpected answer: {line}")
    tracebacks = server_log.count("Traceback")
    if tracebacks:
        print(f"the service logged {tracebacks} traceback(s); the last lines:\n{server_log[-2000:]}")
    print(f"RESULT: {'PASS' if passed(result) else 'FAIL'} (required: 0 double claims, 0 lost, 0 HTTP 500)")
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="fast elections and short pauses (the test suite's)")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    with tempfile.TemporaryDirectory(prefix="claims-drill-") as tmp:
        print(
            f"claims failover drill: 3-member replica set, electionTimeoutMillis {plan.election_timeout_ms}, "
            f"{CLAIMERS} claimers",
            flush=True,
        )
        replicas = drill_replica_set(Path(tmp), plan.election_timeout_ms)
        log = Path(tmp) / "service.log"
        try:
            secret = asyncio.run(create_key(replicas.url, DATABASE)).secret
            selection = plan.server_selection_timeout_ms
            # Two workers: claimers race across processes too, not only within one event loop.
            with serve(replicas.url, DATABASE, workers=2, log=log, server_selection_timeout_ms=selection) as service:
                result = asyncio.run(drill(replicas, service.base, secret, plan))
        finally:
            replicas.stop()
        report(result, log.read_text(errors="replace"))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
