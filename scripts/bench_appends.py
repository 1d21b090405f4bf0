"""Appends through the REST API vs raw PyMongo ``update_one``, same server, same durability (goal: REST >= 0.7x raw).

    .venv/bin/python scripts/bench_appends.py                 # 10 s each side, 32 connections / 32 tasks
    .venv/bin/python scripts/bench_appends.py --rounds 3      # alternate raw and REST three times
    .venv/bin/python scripts/bench_appends.py --workers 1     # one service process instead of one per CPU
    .venv/bin/python scripts/bench_appends.py --artifacts     # artifact appends (they also mark the rollup)

It starts a bundled mongod of its own (replica set of one, on a temporary directory) and ``handoff serve
--workers <CPUs>`` on loopback (``HANDOFF_LOG_LEVEL=WARNING``: no access log), then, per round:

* raw: 32 asyncio tasks on one ``AsyncMongoClient`` (w=majority, retryable writes: the service's own client
  settings) each looping ``update_one`` with the filter and update the service sends for one typed entry
  (``src/handoff/sessions/appends.py``) minus the paged log's page guards: the session's key (``_id``, with
  ``workspace_id``), status in (active, paused), ``work_log.id`` not present, ``payload_bytes`` under the cap;
  ``$push`` the entry to ``work_log``, ``$inc`` the counters and the byte count, ``$set``
  last_active_at/updated_at;
* REST: ``wrk`` (installed from Debian when missing), 32 connections, ``POST /v1/sessions/{id}/work-log`` with
  a JSON body and the bearer key, a new entry id per request generated in Lua, spread over 32 sessions.

Each side appends to 32 fresh sessions (so neither inherits the other's longer arrays), after a short warm-up
on other sessions. Afterwards the stored entries are counted to prove every acknowledged append is there.

Besides rates and p50/p99 it prints, per side, the CPU time per append of every process involved (read from
/proc: the raw client or wrk, the service with its workers, mongod) and mongod's operations per append
(``serverStatus`` opcounters). The CPU cost ratio (raw CPU per append / REST CPU per append) is what the rate
ratio tends to when the machine is CPU-bound and nothing else runs on it; the rate ratio also depends on how
the CPUs are shared with other programs, so on a busy machine compare both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from _bench_common import (
    DATABASE,
    BenchKey,
    Service,
    async_client,
    bench_server,
    cpu_seconds,
    create_key,
    ensure_wrk,
    machine,
    median,
    serve,
)
from _bench_common import percentile as pct
from handoff import clock
from handoff.config import Settings
from handoff.sessions.limits import stored_size
from handoff.sessions.models import session_key

SESSIONS = 32
CONCURRENCY = 32
NOTE = "x" * 120  # the entry's data: {"note": NOTE}, about 130 bytes of JSON
MESSAGE = "benchmark append"
MAX_SESSION_BYTES = Settings().max_session_bytes
GOAL = 0.7

LUA = """
local sessions = {%(sessions)s}
local nonce = "%(nonce)s"
local headers = {["Authorization"] = "Bearer %(secret)s", ["Content-Type"] = "application/json"}
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  counter = counter + 1
  local session = sessions[(counter %% #sessions) + 1]
  local body = '{"id":"' .. nonce .. '-' .. tid .. '-' .. counter .. '",%(fields)s}'
  return wrk.format("POST", "/v1/sessions/" .. session .. "/%(route)s", headers, body)
end
"""
#: What the Lua script posts (JSON members after the id) and where, per kind of append.
REST_BODY = {
    "work_log": ("work-log", f'"message":"{MESSAGE}","type":"info","data":{{"note":"{NOTE}"}}'),
    "artifacts": ("artifacts", f'"path":"src/bench.py","action":"modified","metadata":{{"note":"{NOTE}"}}'),
}
#: The counter each kind's appends move.
COUNTER = {"work_log": "action_count", "artifacts": "artifact_count"}


@dataclass
class Result:
    """One side of one round."""

    label: str
    appends: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    #: CPU milliseconds per append of each process involved, and mongod's operations per append, by kind.
    cpu: dict[str, float] = field(default_factory=dict)
    ops: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    def per_append(self, before: dict[str, float], after: dict[str, float], cpu: dict[str, str]) -> None:
        """Fill ``cpu`` (label -> snapshot key) and ``ops`` from two :func:`snapshot` readings."""
        count = max(self.appends, 1)
        self.cpu = {label: (after[key] - before[key]) * 1000 / count for label, key in cpu.items()}
        self.ops = {
            key.removeprefix("op:"): (after[key] - before[key]) / count
            for key in ("op:update", "op:query", "op:command")
        }

    def describe(self) -> str:
        cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in self.cpu.items())
        ops = ", ".join(f"{name} {count:.2f}" for name, count in self.ops.items())
        return f"CPU ms per append: {cpu} (total {self.cpu_total:.2f}); mongod operations per append: {ops}"


def snapshot(url: str, service: Service | None, mongod: int) -> dict[str, float]:
    """Cumulative CPU seconds (this process, its finished children, the service, mongod) and mongod opcounters."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client: MongoClient[dict[str, Any]]
    with MongoClient(url) as client:
        counters = client.admin.command("serverStatus")["opcounters"]
    return {
        "self": time.process_time(),
        "children": children.ru_utime + children.ru_stime,
        "service": cpu_seconds(service.pid) if service else 0.0,
        "mongod": cpu_seconds(mongod),
        **{f"op:{name}": float(value) for name, value in counters.items()},
    }


# Sessions ------------------------------------------------------------------------------------------------------


def open_sessions(base: str, key: BenchKey, count: int) -> list[str]:
    with httpx.Client(base_url=base, headers=key.headers, timeout=30) as http:
        ids = []
        for _ in range(count):
            response = http.post("/v1/sessions", json={"agent_type": "bench"})
            response.raise_for_status()
            ids.append(response.json()["session_id"])
        return ids


async def stored_entries(url: str, session_ids: list[str], kind: str = "work_log") -> tuple[int, int]:
    """(sum of the kind's counter, entries really stored: open pages and sealed pages) over the sessions."""
    client = async_client(url)
    try:
        rows = await (
            await client[DATABASE]["sessions"].aggregate(
                [
                    {"$match": {"session_id": {"$in": session_ids}}},
                    {
                        "$group": {
                            "_id": None,
                            "counted": {"$sum": f"${COUNTER[kind]}"},
                            "stored": {"$sum": {"$size": f"${kind}"}},
                        }
                    },
                ]
            )
        ).to_list(1)
        sealed = await (
            await client[DATABASE]["log_pages"].aggregate(
                [
                    {"$match": {"session_id": {"$in": session_ids}, "kind": kind}},
                    {"$group": {"_id": None, "stored": {"$sum": {"$size": "$entries"}}}},
                ]
            )
        ).to_list(1)
        return rows[0]["counted"], rows[0]["stored"] + (sealed[0]["stored"] if sealed else 0)
    finally:
        await client.close()


# Raw PyMongo ---------------------------------------------------------------------------------------------------


async def raw_appends(
    url: str, workspace_id: str, session_ids: list[str], seconds: float, mongod: int, *, kind: str = "work_log"
) -> Result:
    """32 tasks of ``update_one`` with the service's guard and update, for ``seconds``."""
    client = async_client(url)
    collection = client[DATABASE]["sessions"]
    nonce = secrets.token_hex(4)
    latencies: list[float] = []
    failures = 0

    async def worker(task: int, deadline: float, phase: str) -> None:
        nonlocal failures
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            session_id = session_ids[(task + n) % len(session_ids)]
            now = clock.now()
            entry: dict[str, Any] = {"id": f"{nonce}{phase}-{task}-{n}", "timestamp": now}
            if kind == "work_log":
                entry |= {"message": MESSAGE, "type": "info", "data": {"note": NOTE}}
                counters = {"action_count": 1, "checkpoint_count": 0, "error_count": 0}
                stamps = {}
            else:  # the artifact append's own update also marks the session for the artifacts rollup
                entry |= {"path": "src/bench.py", "action": "modified", "metadata": {"note": NOTE}}
                counters = {"artifact_count": 1}
                stamps = {"rollup_dirty": True}
            size = stored_size(entry)
            began = time.perf_counter()
            result = await collection.update_one(
                {
                    "_id": session_key(workspace_id, session_id),
                    "workspace_id": workspace_id,
                    "status": {"$in": ["active", "paused"]},
                    f"{kind}.id": {"$nin": [entry["id"]]},
                    "payload_bytes": {"$lte": MAX_SESSION_BYTES - size},
                },
                {
                    "$push": {kind: {"$each": [entry]}},
                    "$inc": {**counters, "payload_bytes": size},
                    "$set": {"last_active_at": now, "updated_at": now, **stamps},
                },
            )
            latencies.append(time.perf_counter() - began)
            failures += result.matched_count != 1

    try:
        await collection.find_one({})  # connect before the clock starts
        warm_deadline = time.perf_counter() + 1
        await asyncio.gather(*(worker(task, warm_deadline, "w") for task in range(CONCURRENCY)))
        latencies.clear()
        failures = 0
        before = snapshot(url, None, mongod)
        began = time.perf_counter()
        await asyncio.gather(*(worker(task, began + seconds, "m") for task in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
        after = snapshot(url, None, mongod)
    finally:
        await client.close()
    result = Result(
        "raw PyMongo", len(latencies), elapsed, pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000, failures
    )
    result.per_append(before, after, {"client": "self", "mongod": "mongod"})
    return result


# REST through wrk ----------------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(
    wrk: str,
    service: Service,
    key: BenchKey,
    session_ids: list[str],
    *,
    seconds: float,
    workdir: Path,
    url: str,
    mongod: int,
    kind: str = "work_log",
) -> Result:
    script = workdir / f"append-{secrets.token_hex(3)}.lua"
    route, fields = REST_BODY[kind]
    script.write_text(
        LUA
        % {
            "sessions": ", ".join(f'"{session_id}"' for session_id in session_ids),
            "nonce": secrets.token_hex(4),
            "secret": key.secret,
            "route": route,
            "fields": fields,
        }
    )
    argv = [wrk, "-t2", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--latency", "-s", str(script), service.base]
    before = snapshot(url, service, mongod)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    after = snapshot(url, service, mongod)
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if requests is None:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    elapsed = float(requests.group(2)) / (1000 if requests.group(3) == "ms" else 1)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"  wrk socket errors: {socket_errors.group(1)}")
    result = Result(
        "REST (wrk)",
        int(requests.group(1)),
        elapsed,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        int(non_2xx.group(1)) if non_2xx else 0,
    )
    result.per_append(before, after, {"wrk": "children", "service": "service", "mongod": "mongod"})
    return result


# Main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per side and round")
    parser.add_argument("--rounds", type=int, default=1, help="raw/REST pairs, alternating")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="handoff serve --workers (default: one per CPU)"
    )
    parser.add_argument("--log-level", default="WARNING", help="HANDOFF_LOG_LEVEL of the service (INFO logs access)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of REST warm-up before measuring")
    parser.add_argument(
        "--artifacts", action="store_true", help="append artifacts (POST .../artifacts) instead of work-log entries"
    )
    args = parser.parse_args()
    kind = "artifacts" if args.artifacts else "work_log"
    wrk = ensure_wrk()

    with bench_server("bench-appends") as server, tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        key = asyncio.run(create_key(server.url))
        print(machine(server.url))
        print(
            f"{CONCURRENCY} connections/tasks, {SESSIONS} sessions per side, {args.seconds:g} s per side, "
            f"handoff serve --workers {args.workers}, HANDOFF_LOG_LEVEL={args.log_level}, w=majority, "
            f"appending {kind}"
        )
        results: list[tuple[Result, Result]] = []
        with serve(server.url, workers=args.workers, log_level=args.log_level) as service:
            warm_ids = open_sessions(service.base, key, SESSIONS)
            run_wrk(
                wrk,
                service,
                key,
                warm_ids,
                seconds=args.warmup,
                workdir=Path(tmp),
                url=server.url,
                mongod=server.pid,
                kind=kind,
            )
            for round_number in range(1, args.rounds + 1):
                raw_ids = open_sessions(service.base, key, SESSIONS)
                rest_ids = open_sessions(service.base, key, SESSIONS)
                raw = asyncio.run(
                    raw_appends(server.url, key.workspace_id, raw_ids, args.seconds, server.pid, kind=kind)
                )
                rest = run_wrk(
                    wrk,
                    service,
                    key,
                    rest_ids,
                    seconds=args.seconds,
                    workdir=Path(tmp),
                    url=server.url,
                    mongod=server.pid,
                    kind=kind,
                )
                counted, stored = asyncio.run(stored_entries(server.url, rest_ids, kind))
                results.append((raw, rest))
                print(f"\nround {round_number}")
                for result in (raw, rest):
                    print(
                        f"  {result.label:<12} {result.rate:8.0f} appends/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms  ({result.appends} in {result.seconds:.1f} s"
                        + (f", {result.errors} failed" if result.errors else "")
                        + ")"
                    )
                    print(f"      {result.describe()}")
                print(
                    f"  REST stored {stored} entries (counters say {counted}) for {rest.appends} completed requests"
                    f"{'' if stored >= rest.appends - rest.errors and stored == counted else '  <-- MISMATCH'}"
                )
                print(
                    f"  REST/raw: rate {rest.rate / raw.rate:.2f}, "
                    f"CPU cost (raw CPU per append / REST CPU per append) {raw.cpu_total / rest.cpu_total:.2f}"
                )

    rate = median([rest.rate / raw.rate for raw, rest in results])
    cost = median([raw.cpu_total / rest.cpu_total for raw, rest in results])
    print(
        f"\nREST/raw append rate: {rate:.2f} (median of {len(results)} round(s)); goal >= {GOAL}: "
        f"{'met' if rate >= GOAL else 'NOT met'}"
    )
    print(
        f"CPU cost ratio (raw CPU per append / REST CPU per append, all processes): {cost:.2f}: the rate ratio "
        "this machine would show if both sides had every core to themselves and were CPU-bound"
    )


if __name__ == "__main__":
    main()
