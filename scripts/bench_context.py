"""handoff-context and replay-context on a 10-entry vs a 10,000-entry session (goal: p50 ratio <= 1.3 for both).

    .venv/bin/python scripts/bench_context.py                  # 500 calls per route and session
    .venv/bin/python scripts/bench_context.py --calls 2000

It starts a bundled mongod of its own and ``handoff serve`` on loopback, builds two sessions through the API
(``POST .../work-log/batch``, 1,000 entries a request): one with 10 work-log entries and one with 10,000, every
entry carrying 200 bytes of ``data`` (compact JSON), plus the same 5 artifacts. Both logs hold the same one
checkpoint, one decision and one error, so both answers list the same things and the comparison measures what
the length of the log costs, not a longer answer. Then it times ``GET`` of both routes on both sessions,
interleaved (every series once per pass, in a shuffled order) on one keep-alive connection, and prints p50/p95
and the ratio.

The service reads both contexts from the copies each append keeps (``recent_entries``, ``notable_entries``).
For reference the same two sessions are also copied without those lists, as sessions stored before they
existed: the service answers those from ``work_log`` (``$slice``/``$filter`` over the whole array), which is
how every session was answered before, so one run shows what the lists buy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import httpx

from _bench_common import DATABASE, async_client, bench_server, create_key, machine, median, serve
from _bench_common import percentile as pct

SIZES = (10, 10_000)
DATA_BYTES = 200
BATCH = 1_000
ROUTES = ("handoff-context", "replay-context")
GOAL = 1.3
SPECIAL = {3: "checkpoint", 5: "decision", 7: "error"}  # entry index -> type, in both sessions
KEPT = "context lists kept"
UNKEPT = "from work_log"


def payload(index: int) -> dict[str, Any]:
    """``data`` of exactly DATA_BYTES bytes as compact JSON."""
    base = {"i": index, "text": ""}
    filler = DATA_BYTES - len(json.dumps(base, separators=(",", ":")))
    return {"i": index, "text": "x" * filler}


def build_session(http: httpx.Client, entries: int) -> str:
    response = http.post("/v1/sessions", json={"agent_type": "bench", "context_summary": {"goal": "benchmark"}})
    response.raise_for_status()
    session_id: str = response.json()["session_id"]
    for start in range(0, entries, BATCH):
        batch = [
            {
                "id": f"e{index}",
                "message": f"step {index} of the task",
                "type": SPECIAL.get(index, "info"),
                "data": payload(index),
            }
            for index in range(start, min(entries, start + BATCH))
        ]
        http.post(f"/v1/sessions/{session_id}/work-log/batch", json={"entries": batch}).raise_for_status()
    for index, action in enumerate(["created", "modified", "modified", "deleted", "created"]):
        artifact = {"path": f"src/module_{index}.py", "action": action, "metadata": {"lines": index * 10}}
        http.post(f"/v1/sessions/{session_id}/artifacts", json=artifact).raise_for_status()
    return session_id


Series = tuple[str, str, int]  # (kind of session, route, entries)


def time_routes(http: httpx.Client, sessions: dict[str, dict[int, str]], calls: int) -> dict[Series, list[float]]:
    """Milliseconds per call for each series, interleaved in a new order each time so load changes and the
    after-effects of the call before hit every series alike."""
    series = [(kind, route, size) for kind in sessions for route in ROUTES for size in SIZES]
    samples: dict[Series, list[float]] = {one: [] for one in series}
    order = random.Random(7)
    for warm_up in (True, False):
        for _ in range(10 if warm_up else calls):
            order.shuffle(series)  # no series always follows the same one
            for kind, route, size in series:
                began = time.perf_counter()
                response = http.get(f"/v1/sessions/{sessions[kind][size]}/{route}")
                elapsed = (time.perf_counter() - began) * 1000
                response.raise_for_status()
                if not warm_up:
                    samples[kind, route, size].append(elapsed)
    return samples


async def legacy_copies(url: str, sessions: dict[int, str]) -> dict[int, str]:
    """Copies of the sessions as stored before the context lists existed (no ``context_lists`` mark, no copies):
    the service answers them from ``work_log``, as every session was answered before the lists were kept."""
    client = async_client(url)
    collection = client[DATABASE]["sessions"]
    copies = {}
    try:
        for size, session_id in sessions.items():
            doc = await collection.find_one({"session_id": session_id})
            assert doc is not None
            for name in ("_id", "context_lists", "recent_entries", "notable_entries"):
                doc.pop(name, None)
            doc["session_id"] = copies[size] = f"{session_id}_unkept"
            await collection.insert_one(doc)
    finally:
        await client.close()
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per route and session")
    parser.add_argument("--workers", type=int, default=1, help="handoff serve --workers")
    args = parser.parse_args()

    with bench_server("bench-context") as server:
        key = asyncio.run(create_key(server.url))
        print(machine(server.url))
        with serve(server.url, workers=args.workers) as service:
            http = httpx.Client(base_url=service.base, headers=key.headers, timeout=60)
            with http:
                kept = {size: build_session(http, size) for size in SIZES}
                sessions = {KEPT: kept, UNKEPT: asyncio.run(legacy_copies(server.url, kept))}
                sizes = {
                    size: len(http.get(f"/v1/sessions/{session_id}/handoff-context").content)
                    for size, session_id in kept.items()
                }
                samples = time_routes(http, sessions, args.calls)

    print(
        f"sessions: {SIZES[0]} and {SIZES[1]:,} entries, {DATA_BYTES}-byte data each; "
        f"handoff-context answers {sizes[SIZES[0]]:,} and {sizes[SIZES[1]]:,} bytes; "
        f"{args.calls} calls each, interleaved, one keep-alive connection, handoff serve --workers {args.workers}"
    )
    print(
        f"\n| session | route | p50 ms @{SIZES[0]} | p50 ms @{SIZES[1]:,} | ratio | p95 ms @{SIZES[0]} "
        f"| p95 ms @{SIZES[1]:,} | goal <= {GOAL} |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for kind in sessions:
        for route in ROUTES:
            small, large = samples[kind, route, SIZES[0]], samples[kind, route, SIZES[1]]
            ratio = median(large) / median(small)
            verdict = ("met" if ratio <= GOAL else "NOT met") if kind == KEPT else "(before)"
            print(
                f"| {kind} | {route} | {median(small):.2f} | {median(large):.2f} | {ratio:.2f} "
                f"| {pct(small, 0.95):.2f} | {pct(large, 0.95):.2f} | {verdict} |"
            )


if __name__ == "__main__":
    main()
