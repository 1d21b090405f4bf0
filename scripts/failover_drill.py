"""Failover drill: appends keep their promise while the primary is stepped down, killed and restarted.

    .venv/bin/python scripts/failover_drill.py           # the recorded run (default election timeout, ~1 min)
    .venv/bin/python scripts/failover_drill.py --short   # the suite's version: elections in ~1 s, well under 60 s

It starts a 3-member replica set of the bundled mongod on loopback (``handoff.localdb.start_replica_set``: one
port and dbpath each), runs ``handoff serve`` against all three members (``serverSelectionTimeoutMS`` longer
than an election, so requests ride one out), and starts 8 writers. Each writer opens a session (with an
Idempotency-Key) and appends entries with ids of its own, in turn actions, typed entries (every tenth a
checkpoint) and artifacts, one at a time; on any failure (a 503, a timeout, a dropped connection) it retries the
*same* id until the service acknowledges it (201, or 200 for "already stored"), as api.md promises a client may.

Meanwhile: ``replSetStepDown`` on the primary, a pause, SIGKILL of the new primary, a pause, a restart of the
killed member, a pause. Then the writers stop and every session is read back through the API (and its counters
from the database): an acknowledged append missing is *lost*, an id stored twice is *duplicated*.

It prints the timeline, appends acknowledged, stored, lost, duplicated, the HTTP statuses seen and a last JSON
line, and exits non-zero unless 0 lost, 0 duplicated, no HTTP 500 and every 503 a problem with Retry-After.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern

from _bench_common import create_key, serve
from handoff.localdb import ReplicaSet, start_replica_set

DATABASE = "drill"
DRAIN_TIMEOUT_SECONDS = 120
PAGE = 1000


@dataclass(frozen=True)
class Plan:
    """The drill's knobs: how many writers, how fast elections are, how long each stage lasts."""

    writers: int
    election_timeout_ms: int
    server_selection_timeout_ms: int
    warmup: float
    pause: float
    tail: float
    #: The open page's bound, small so that pages seal all through the step-down and the kill.
    page_entries: int = 16


SHORT = Plan(writers=8, election_timeout_ms=1000, server_selection_timeout_ms=8000, warmup=3, pause=3, tail=3)
FULL = Plan(writers=8, election_timeout_ms=10_000, server_selection_timeout_ms=30_000, warmup=10, pause=10, tail=10)


@dataclass
class Writer:
    """One client: its session, what the service acknowledged, and what it saw on the way."""

    number: int
    session_id: str = ""
    acknowledged: dict[str, list[str]] = field(default_factory=lambda: {"work_log": [], "artifacts": []})
    retried: int = 0
    longest_wait: float = 0.0


@dataclass
class Tally:
    """Everything all writers saw."""

    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


def _request_for(number: int, writer: int) -> tuple[str, str, dict[str, Any]]:
    """The n-th append of a writer: (array, route suffix, body), cycling through the three kinds."""
    entry_id = f"w{writer}-{number:06d}"
    match number % 3:
        case 0:
            return "work_log", "actions", {"id": entry_id, "action": f"step {number}", "details": {"n": number}}
        case 1:
            kind = "checkpoint" if number % 10 == 1 else "info"
            return "work_log", "work-log", {"id": entry_id, "message": f"note {number}", "type": kind}
        case _:
            return "artifacts", "artifacts", {"id": entry_id, "path": f"src/w{writer}/{number}.py", "action": "created"}


async def _until_acknowledged(
    http: httpx.AsyncClient, method: str, url: str, body: dict[str, Any], tally: Tally, **kwargs: Any
) -> tuple[httpx.Response, int]:
    """Send, and send the same request again on any failure, until the service says 2xx; returns it and the tries."""
    tries = 0
    while True:
        tries += 1
        try:
            response = await http.request(method, url, json=body, **kwargs)
        except httpx.TransportError as exc:
            tally.statuses[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        tally.statuses[str(response.status_code)] += 1
        if response.status_code in (200, 201):
            return response, tries
        if response.status_code == 503:
            if "retry-after" not in response.headers or "problem+json" not in response.headers.get("content-type", ""):
                tally.unexpected.append(f"{method} {url} -> 503 without Retry-After or problem+json")
            await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 2.0))
            continue
        # A 500 is a failure of the drill; a 4xx means the retry was not safe. Either way, note it and retry.
        tally.unexpected.append(f"{method} {url} -> {response.status_code}: {response.text[:200]}")
        await asyncio.sleep(0.2)


async def write(http: httpx.AsyncClient, writer: Writer, stop: asyncio.Event, tally: Tally) -> None:
    """Open a session, then append until told to stop; the append in flight is always finished."""
    created, _ = await _until_acknowledged(
        http,
        "POST",
        "/v1/sessions",
        {"agent_type": f"drill-writer-{writer.number}"},
        tally,
        headers={"Idempotency-Key": f"drill-session-{writer.number}"},
    )
    writer.session_id = created.json()["session_id"]
    number = 0
    while not stop.is_set():
        array, route, body = _request_for(number, writer.number)
        started = time.monotonic()
        _, tries = await _until_acknowledged(http, "POST", f"/v1/sessions/{writer.session_id}/{route}", body, tally)
        writer.retried += tries > 1
        writer.longest_wait = max(writer.longest_wait, time.monotonic() - started)
        writer.acknowledged[array].append(body["id"])
        number += 1


async def get_when_available(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """GET through the API, waiting out a 503 (an election the drill did not cause, on a starved host)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while True:
        response = await http.get(path, params=params)
        if response.status_code != 503 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def read_back(http: httpx.AsyncClient, session_id: str) -> dict[str, list[str]]:
    """Every work-log entry id and artifact id of a session, through the API."""
    log: list[str] = []
    while True:
        page = await get_when_available(http, f"/v1/sessions/{session_id}/work-log", offset=len(log), limit=PAGE)
        items = page["items"]
        log += [item["id"] for item in items]
        if len(items) < PAGE:
            break
    artifacts: list[str] = []
    while True:
        page = await get_when_available(http, f"/v1/sessions/{session_id}/artifacts", offset=len(artifacts), limit=PAGE)
        artifacts += [item["id"] for item in page["items"]]
        if len(page["items"]) < PAGE:
            break
    return {"work_log": log, "artifacts": artifacts}


def counters_consistent(url: str, session_ids: list[str]) -> tuple[list[str], int]:
    """Sessions whose stored counters do not match their entries, open and sealed pages (read at majority), and
    how many pages were sealed."""
    wrong: list[str] = []
    sealed = 0
    with MongoClient(url, serverSelectionTimeoutMS=30_000) as client:
        sessions = client[DATABASE].get_collection("sessions", read_concern=ReadConcern("majority"))
        pages = client[DATABASE].get_collection("log_pages", read_concern=ReadConcern("majority"))
        for doc in sessions.find({"session_id": {"$in": session_ids}}):
            stored = {kind: list(doc[kind]) for kind in ("work_log", "artifacts")}
            query = {"workspace_id": doc["workspace_id"], "session_id": doc["session_id"]}
            for page in pages.find(query).sort("no", 1):
                stored[page["kind"]] += page["entries"]
                sealed += 1
            expected = {
                "action_count": len(stored["work_log"]),
                "artifact_count": len(stored["artifacts"]),
                "checkpoint_count": sum(entry.get("type") == "checkpoint" for entry in stored["work_log"]),
            }
            if any(doc[name] != value for name, value in expected.items()):
                wrong.append(doc["session_id"])
    return wrong, sealed


class Timeline:
    """What happened when, in seconds since the writers started."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.events.append((time.monotonic() - self.start, what))
        print(f"  {self.events[-1][0]:6.1f} s  {what}", flush=True)


def drill_replica_set(directory: Path, election_timeout_ms: int, name: str = "drill") -> ReplicaSet:
    """The drills' 3-member replica set on loopback: elections as fast as the plan asks, and members that exit at
    once when signalled (a signalled primary waits up to 15 s for a secondary to catch up before it exits; the
    drill's data is thrown away, so its members need not wait that long at the end)."""
    settings = {"electionTimeoutMillis": election_timeout_ms, "heartbeatIntervalMillis": 500}
    quick_exit = ["--setParameter", "shutdownTimeoutMillisForSignaledShutdown=1000"]
    return start_replica_set(3, directory, replica_set=name, settings=settings, extra_args=quick_exit)


def _step_down(replicas: ReplicaSet, seconds: int) -> str:
    primary = replicas.primary()
    # The connection may drop as the node steps down.
    with MongoClient(primary.url, serverSelectionTimeoutMS=5000) as client, contextlib.suppress(PyMongoError):
        client.admin.command("replSetStepDown", seconds, secondaryCatchUpPeriodSecs=min(5, seconds - 1))
    return f"127.0.0.1:{primary.port}"


async def disrupt(replicas: ReplicaSet, plan: Plan, timeline: Timeline) -> None:
    """Step the primary down, kill the new one, restart it; each after a pause with writers running."""
    await asyncio.sleep(plan.warmup)
    old = await asyncio.to_thread(_step_down, replicas, max(10, int(plan.pause) + 5))
    began = time.monotonic()
    timeline.note(f"replSetStepDown on {old}")
    new = await asyncio.to_thread(replicas.primary, 120)
    timeline.note(f"new primary 127.0.0.1:{new.port} after {time.monotonic() - began:.1f} s")
    await asyncio.sleep(plan.pause)
    await asyncio.to_thread(replicas.kill, new)
    began = time.monotonic()
    timeline.note(f"SIGKILL the new primary 127.0.0.1:{new.port}")
    third = await asyncio.to_thread(replicas.primary, 120)
    timeline.note(f"primary 127.0.0.1:{third.port} after {time.monotonic() - began:.1f} s")
    await asyncio.sleep(plan.pause)
    restarted = await asyncio.to_thread(replicas.restart, new)
    began = time.monotonic()
    timeline.note(f"restarted 127.0.0.1:{restarted.port}")
    await asyncio.to_thread(replicas.wait_healthy, 120)
    timeline.note(f"all three members healthy again after {time.monotonic() - began:.1f} s")
    await asyncio.sleep(plan.tail)


async def drill(replicas: ReplicaSet, base: str, secret: str, plan: Plan) -> dict[str, Any]:
    """Run writers through the disruption, then read everything back and count."""
    tally, stop, timeline = Tally(), asyncio.Event(), Timeline()
    writers = [Writer(number) for number in range(plan.writers)]
    timeout = httpx.Timeout(connect=5, read=plan.server_selection_timeout_ms / 1000 * 3, write=10, pool=10)
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=plan.writers + 2)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, limits=limits) as http:
        tasks = [asyncio.create_task(write(http, writer, stop, tally)) for writer in writers]
        timeline.note(f"{plan.writers} writers started")
        await disrupt(replicas, plan, timeline)
        stop.set()
        timeline.note("writers told to stop (each finishes the append in flight)")
        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT_SECONDS)
        stored = {writer.number: await read_back(http, writer.session_id) for writer in writers}
    elapsed = time.monotonic() - timeline.start
    acknowledged = lost = duplicated = stored_total = unacknowledged = 0
    for writer in writers:
        for array, ids in writer.acknowledged.items():
            kept = stored[writer.number][array]
            acknowledged += len(ids)
            stored_total += len(kept)
            lost += len(set(ids) - set(kept))
            duplicated += len(kept) - len(set(kept))
            unacknowledged += len(set(kept) - set(ids))
    wrong_counters, sealed = await asyncio.to_thread(counters_consistent, replicas.url, [w.session_id for w in writers])
    return {
        "writers": plan.writers,
        "election_timeout_ms": plan.election_timeout_ms,
        "server_selection_timeout_ms": plan.server_selection_timeout_ms,
        "seconds": round(elapsed, 1),
        "acknowledged": acknowledged,
        "stored": stored_total,
        "lost": lost,
        "duplicated": duplicated,
        "stored_unacknowledged": unacknowledged,
        "http_statuses": dict(sorted(tally.statuses.items())),
        "http_500": tally.statuses.get("500", 0),
        "unexpected": tally.unexpected[:20],
        "retried_appends": sum(writer.retried for writer in writers),
        "longest_wait_seconds": round(max(writer.longest_wait for writer in writers), 2),
        "sessions_with_wrong_counters": len(wrong_counters),
        "page_entries": plan.page_entries,
        "sealed_pages": sealed,
        "timeline": [[round(at, 1), what] for at, what in timeline.events],
    }


def passed(result: dict[str, Any]) -> bool:
    return (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["http_500"] == 0
        and result["sessions_with_wrong_counters"] == 0
        and not result["unexpected"]
        and result["acknowledged"] > 0
        and result["sealed_pages"] > 0  # the drill is about seals too: pages must have sealed during it
    )


def report(result: dict[str, Any], server_log: str) -> None:
    statuses = ", ".join(f"{status} x{count}" for status, count in result["http_statuses"].items())
    print(
        f"\nappends acknowledged {result['acknowledged']}, stored {result['stored']}, lost {result['lost']}, "
        f"duplicated {result['duplicated']} (stored but never acknowledged: {result['stored_unacknowledged']})"
    )
    print(f"HTTP statuses seen: {statuses}")
    print(
        f"appends that needed a retry: {result['retried_appends']}; longest wait for an acknowledgement: "
        f"{result['longest_wait_seconds']} s; sessions whose counters disagree with their arrays: "
        f"{result['sessions_with_wrong_counters']}; pages sealed (open page of {result['page_entries']}): "
        f"{result['sealed_pages']}"
    )
    for line in result["unexpected"]:
        print(f"unexpected answer: {line}")
    tracebacks = server_log.count("Traceback")
    if tracebacks:
        print(f"the service logged {tracebacks} traceback(s); the last lines:\n{server_log[-2000:]}")
    print(f"RESULT: {'PASS' if passed(result) else 'FAIL'} (required: 0 lost, 0 duplicated, 0 HTTP 500)")
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="fast elections and short pauses (the test suite's)")
    parser.add_argument("--writers", type=int, help="concurrent writers (default 8)")
    parser.add_argument("--election-timeout-ms", type=int, help="the replica set's electionTimeoutMillis")
    parser.add_argument("--pause", type=float, help="seconds between the disruptions")
    parser.add_argument("--page-entries", type=int, help="the open page's bound (default 16: pages seal all along)")
    parser.add_argument(
        "--server-selection-timeout-ms",
        type=int,
        help="the service's wait for a primary; below an election's length, clients see 503s and retry",
    )
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    overrides = {
        "writers": args.writers,
        "election_timeout_ms": args.election_timeout_ms,
        "pause": args.pause,
        "page_entries": args.page_entries,
        "server_selection_timeout_ms": args.server_selection_timeout_ms,
    }
    plan = Plan(**{**plan.__dict__, **{key: value for key, value in overrides.items() if value is not None}})

    with tempfile.TemporaryDirectory(prefix="failover-drill-") as tmp:
        print(
            f"failover drill: 3-member replica set on loopback, electionTimeoutMillis {plan.election_timeout_ms}, "
            f"serverSelectionTimeoutMS {plan.server_selection_timeout_ms}, {plan.writers} writers",
            flush=True,
        )
        replicas = drill_replica_set(Path(tmp), plan.election_timeout_ms)
        log = Path(tmp) / "service.log"
        try:
            secret = asyncio.run(create_key(replicas.url, DATABASE)).secret
            selection = plan.server_selection_timeout_ms
            with serve(
                replicas.url,
                DATABASE,
                log=log,
                server_selection_timeout_ms=selection,
                page_entries=plan.page_entries,
                page_bytes=4096,
            ) as service:
                result = asyncio.run(drill(replicas, service.base, secret, plan))
        finally:
            replicas.stop()
        report(result, log.read_text(errors="replace"))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
