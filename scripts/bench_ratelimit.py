"""What the rate limit costs a request, side by side with an append (goal: under 5 % of an append's cost).

    .venv/bin/python scripts/bench_ratelimit.py                    # 3 rounds of 4,000 appends a side, 200,000 checks
    .venv/bin/python scripts/bench_ratelimit.py --appends 1000     # a quick look

It starts a bundled mongod of its own (replica set of one, temporary directory) and measures, on this machine:

* the check the service does: ``RateLimitMiddleware.handle`` around an app that only starts a response (parse
  the bearer key, one ``SharedRateTable.hit`` under its byte-range lock, the four ``RateLimit-*`` headers added),
  on the event loop, over 1,000 keys; and ``SharedRateTable.hit`` alone. CPU microseconds per request;
* the alternative of keeping the buckets in MongoDB: one GCRA ``find_one_and_update`` (an upsert with an
  aggregation-pipeline update, the least a shared MongoDB limiter does per request) from the service's own client
  (w=majority), and with w=1; wall time per call and the CPU of client and mongod per call;
* an append: ``handoff serve`` (one worker) taking ``POST /v1/sessions/{id}/work-log`` from 8 concurrent
  clients, with ``HANDOFF_RATE_LIMIT`` off and on (a rate never reached, so every request is checked and none
  refused); the service's and mongod's CPU per append, read from /proc, and the wall time per append.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from _bench_common import (
    DATABASE,
    BenchKey,
    async_client,
    bench_server,
    cpu_seconds,
    create_key,
    machine,
    median,
    serve,
)
from handoff.ratelimit.middleware import RateLimiter, RateLimitMiddleware
from handoff.ratelimit.table import RatePolicy, SharedRateTable

KEYS = 1_000
CONCURRENCY = 8
POLICY = RatePolicy(rate=1e6, burst=1_000_000)  # never refuses: every call does the whole check


def bench_table(hits: int) -> float:
    """CPU microseconds of one ``SharedRateTable.hit``."""
    with tempfile.TemporaryDirectory() as tmp:
        table = SharedRateTable(Path(tmp) / "table", POLICY)
        keys = [f"hk_{secrets.token_urlsafe(32)}" for _ in range(KEYS)]
        try:
            started = time.process_time()
            for i in range(hits):
                table.hit(keys[i % KEYS])
            return (time.process_time() - started) / hits * 1e6
        finally:
            table.close()


async def bench_middleware(requests: int) -> float:
    """CPU microseconds the middleware adds to one request (around an app that only starts a response)."""
    limiter = RateLimiter(POLICY)
    limiter.open()
    middleware = RateLimitMiddleware(limiter)
    scopes = [
        {"type": "http", "headers": [(b"authorization", f"Bearer hk_{secrets.token_urlsafe(32)}".encode())]}
        for _ in range(KEYS)
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)

    try:
        costs = []
        for handle in (bare, lambda s, r, w: middleware.handle(s, r, w, app)):
            started = time.process_time()
            for i in range(requests):
                await handle(scopes[i % KEYS], receive, send)
            costs.append((time.process_time() - started) / requests * 1e6)
        return costs[1] - costs[0]
    finally:
        limiter.close()


GCRA_UPDATE = [
    {
        "$set": {
            "tat": {
                "$add": [{"$max": [{"$ifNull": ["$tat", "$$NOW"]}, "$$NOW"]}, 1]  # + one interval (1 ms here)
            }
        }
    }
]


async def bench_mongodb(url: str, calls: int, mongod_pid: int, *, write_concern: str) -> tuple[float, float]:
    """Wall and (client + mongod) CPU microseconds of one GCRA update of a bucket kept in MongoDB."""
    client = async_client(url)
    options = {} if write_concern == "majority" else {"w": 1}
    collection = client[DATABASE].get_collection("ratelimit_buckets").with_options(**_write_concern(options))
    keys = [secrets.token_hex(8) for _ in range(KEYS)]
    try:
        for key in keys:  # the buckets exist: steady state, no inserts
            await collection.find_one_and_update({"_id": key}, GCRA_UPDATE, upsert=True)
        cpu_before, wall_before = cpu_seconds(mongod_pid) + time.process_time(), time.perf_counter()

        async def worker(offset: int) -> None:
            for i in range(offset, calls, CONCURRENCY):
                await collection.find_one_and_update({"_id": keys[i % KEYS]}, GCRA_UPDATE, upsert=True)

        await asyncio.gather(*(worker(offset) for offset in range(CONCURRENCY)))
        wall = (time.perf_counter() - wall_before) / calls * CONCURRENCY * 1e6  # per call, as one caller sees it
        cpu = (cpu_seconds(mongod_pid) + time.process_time() - cpu_before) / calls * 1e6
        return wall, cpu
    finally:
        await client.close()


def _write_concern(options: dict[str, Any]) -> dict[str, Any]:
    from pymongo import WriteConcern  # noqa: PLC0415 - only this measurement needs it

    return {"write_concern": WriteConcern(**options)} if options else {}


async def bench_appends(base: str, key: BenchKey, appends: int, service_pid: int, mongod_pid: int) -> dict[str, float]:
    """Per append: wall time as one client sees it, and the service's and mongod's CPU."""
    async with httpx.AsyncClient(base_url=base, headers=key.headers, timeout=30) as http:
        sessions = [(await http.post("/v1/sessions", json={})).json()["session_id"] for _ in range(CONCURRENCY)]
        body = {"message": "benchmark append", "type": "info", "data": {"note": "x" * 120}}
        for session in sessions:  # warm-up
            for _ in range(20):
                (await http.post(f"/v1/sessions/{session}/work-log", json=body)).raise_for_status()
        service_before, mongod_before = cpu_seconds(service_pid), cpu_seconds(mongod_pid)
        started = time.perf_counter()

        async def worker(session: str) -> None:
            for _ in range(appends // CONCURRENCY):
                (await http.post(f"/v1/sessions/{session}/work-log", json=body)).raise_for_status()

        await asyncio.gather(*(worker(session) for session in sessions))
        done = appends // CONCURRENCY * CONCURRENCY
        return {
            "wall_us": (time.perf_counter() - started) / done * CONCURRENCY * 1e6,
            "service_cpu_us": (cpu_seconds(service_pid) - service_before) / done * 1e6,
            "mongod_cpu_us": (cpu_seconds(mongod_pid) - mongod_before) / done * 1e6,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--appends", type=int, default=4_000, help="appends a side (limit off, limit on)")
    parser.add_argument("--hits", type=int, default=200_000, help="checks measured in-process")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of limit off / on (medians shown)")
    args = parser.parse_args()

    table_us = bench_table(args.hits)
    middleware_us = asyncio.run(bench_middleware(args.hits))
    with bench_server("bench-ratelimit") as server:
        key = asyncio.run(create_key(server.url, DATABASE))
        mongo_majority = asyncio.run(bench_mongodb(server.url, args.appends, server.pid, write_concern="majority"))
        mongo_w1 = asyncio.run(bench_mongodb(server.url, args.appends, server.pid, write_concern="1"))
        sides: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for _ in range(args.rounds):  # alternated, so a busy spell of the machine falls on both sides
            for side, limit in (("off", {}), ("on", {"rate_limit": POLICY.rate, "rate_limit_burst": POLICY.burst})):
                with serve(server.url, DATABASE, workers=1, **limit) as service:
                    sides[side].append(
                        asyncio.run(bench_appends(service.base, key, args.appends, service.pid, server.pid))
                    )
        print(machine(server.url))
    off, on = ({name: median([run[name] for run in runs]) for name in runs[0]} for runs in sides.values())

    append_cpu = off["service_cpu_us"] + off["mongod_cpu_us"]
    print(
        f"\n{args.appends:,} appends a side and round, {args.rounds} rounds (medians), {CONCURRENCY} concurrent "
        f"clients; {args.hits:,} checks in-process\n"
    )
    print("| what, per request | wall µs | CPU µs | CPU vs an append (service + mongod) |")
    print("|---|---:|---:|---:|")
    print(
        f"| append, rate limit off | {off['wall_us']:,.0f} | {append_cpu:,.0f} "
        f"(service {off['service_cpu_us']:,.0f}, mongod {off['mongod_cpu_us']:,.0f}) | 100 % |"
    )
    on_cpu = on["service_cpu_us"] + on["mongod_cpu_us"]
    print(
        f"| append, rate limit on | {on['wall_us']:,.0f} | {on_cpu:,.0f} "
        f"(service {on['service_cpu_us']:,.0f}, mongod {on['mongod_cpu_us']:,.0f}) | {on_cpu / append_cpu:.1%} |"
    )
    print(f"| the check: RateLimitMiddleware.handle | - | {middleware_us:.1f} | {middleware_us / append_cpu:.2%} |")
    print(f"| of which SharedRateTable.hit | - | {table_us:.1f} | {table_us / append_cpu:.2%} |")
    for label, (wall, cpu) in (("w=majority", mongo_majority), ("w=1", mongo_w1)):
        print(
            f"| alternative: a GCRA find_one_and_update in MongoDB, {label} | {wall:,.0f} | {cpu:,.0f} "
            f"| {cpu / append_cpu:.0%} |"
        )


if __name__ == "__main__":
    main()
