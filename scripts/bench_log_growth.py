"""Sessions of 10 to 1,000,000 entries: what each route costs at 10, 10,000, 100,000 and 1,000,000 entries.

    .venv/bin/python scripts/bench_log_growth.py                       # the recorded run (1,000,000 entries)
    .venv/bin/python scripts/bench_log_growth.py --sizes 10 10000      # a quick look
    .venv/bin/python scripts/bench_log_growth.py --baseline 3b879d2    # today's code against another commit

It starts a bundled mongod of its own and, on it, two services side by side: this checkout's ``handoff serve``
and the baseline commit's (checked out into a temporary ``git worktree``, run from its ``src`` on this venv),
each on its own database. Each grows one session to each size through the REST API (``work-log/batch`` of up to
1,000 typed entries of about 200 bytes; every 50th a checkpoint, every 97th an error, a few artifacts), then
times sequential calls over one keep-alive connection, interleaved: ``--rounds`` rounds, each a short block of
every route on every size of both services in turn, so a drift of the shared machine's speed meets every size
and both services alike: single appends
(``POST .../work-log``), ``handoff-context``, ``replay-context``, a work-log page of 10 entries at offset 0 and at
90 % of the log (offset 900,000 at 1,000,000), and an entry by id (random ids over the whole log; a route the baseline
lacks). The baseline stops where its single document is full (it is grown to ``--baseline-sizes``).

Goals (issue 12): each figure at 1,000,000 within 1.5x of its figure at 10; the append at 10 entries no slower
than the baseline's. The contexts' lists (checkpoints, decisions, errors, artifacts: the newest 200 each) fill up
between 10 and 10,000 entries, so their answers are larger there; the last column compares 1,000,000 with the
second size, where the answers are the same size. It also prints the bytes stored per entry (the data and
indexes of ``sessions``, ``log_pages``, ``log_notables`` and ``log_newest_notables``, compressed as WiredTiger
stores them, and uncompressed) against an
entry's own JSON size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from _bench_common import bench_server, machine, median, percentile, serve

ROOT = Path(__file__).resolve().parent.parent
SIZES = [10, 10_000, 100_000, 1_000_000]
BASELINE = "3b879d2"  # main before the paged log (2026-12-06)
BASELINE_SIZES = [10, 10_000, 60_000]
GOAL_RATIO = 1.5
BATCH = 1_000
CALLS = 100
APPENDS = 200
ROUNDS = 10
PAGE = 10  # entries per page read: a full page even at 10 entries, so every size answers the same amount
TYPES = ["info"] * 6 + ["decision", "warning", "success"]


def entry(n: int) -> dict[str, Any]:
    """The ``n``-th entry of the grown log: about 200 bytes of JSON, typed."""
    kind = "checkpoint" if n % 50 == 0 else "error" if n % 97 == 0 else TYPES[n % len(TYPES)]
    return {
        "id": f"g{n:07d}",
        "message": f"{kind}: step {n} of the long task, parser module, pass {n % 7}",
        "type": kind,
        "data": {"step": n, "file": f"src/pkg{n % 40}/module_{n % 900}.py", "ok": n % 97 != 0},
    }


@dataclass
class Side:
    """One service and its sessions, one grown to each size."""

    name: str
    base: str
    headers: dict[str, str]
    sessions: dict[int, str] = field(default_factory=dict)  # size -> session id
    entries: dict[int, int] = field(default_factory=dict)  # size -> entries its session holds
    results: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def url(self, size: int, path: str = "") -> str:
        return f"{self.base}/v1/sessions/{self.sessions[size]}{path}"

    @property
    def total(self) -> int:
        return sum(self.entries.values())


def grow(http: httpx.Client, side: Side, size: int) -> None:
    """Create a session and append typed entries in batches until it holds ``size`` (a few artifacts along the
    way)."""
    created = http.post(f"{side.base}/v1/sessions", json={"agent_type": "bench-growth"}, headers=side.headers)
    side.sessions[size] = created.raise_for_status().json()["session_id"]
    side.entries[size] = 0
    while side.entries[size] < size:
        count = min(BATCH, size - side.entries[size])
        batch = [entry(side.entries[size] + k) for k in range(count)]
        http.post(side.url(size, "/work-log/batch"), json={"entries": batch}, headers=side.headers).raise_for_status()
        if side.entries[size] % 100_000 == 0:
            artifact = {"path": f"src/pkg{side.entries[size] % 40}/module.py", "action": "modified"}
            http.post(side.url(size, "/artifacts"), json=artifact, headers=side.headers).raise_for_status()
        side.entries[size] += count


def timed(call: Callable[[], httpx.Response], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call().raise_for_status()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def calls_of(
    http: httpx.Client, side: Side, size: int, *, by_id: bool, rng: random.Random
) -> dict[str, Callable[[], httpx.Response]]:
    """Each timed call on the session of ``size`` (an append adds one entry, counted)."""
    h = side.headers
    deep = int(size * 0.9)

    def append() -> httpx.Response:
        number = side.entries[size]
        side.entries[size] += 1
        return http.post(side.url(size, "/work-log"), json=entry(number), headers=h)

    calls = {
        "append": append,
        "handoff-context": lambda: http.get(side.url(size, "/handoff-context"), headers=h),
        "replay-context": lambda: http.get(side.url(size, "/replay-context"), headers=h),
        "page at 0": lambda: http.get(side.url(size, "/work-log"), params={"limit": PAGE}, headers=h),
        "page at 90 %": lambda: http.get(
            side.url(size, "/work-log"), params={"offset": deep, "limit": PAGE}, headers=h
        ),
    }
    if by_id:
        calls["entry by id"] = lambda: http.get(
            side.url(size, f"/work-log/{entry(rng.randrange(size))['id']}"), headers=h
        )
    return calls


def measure(http: httpx.Client, sides: list[tuple[Side, bool]], *, rounds: int) -> None:
    """Every timed call on every size of every side, interleaved: ``rounds`` rounds, each a short block of every
    route on every size of each side in turn, so that a drift of the shared machine's speed meets every size and
    both services alike (a size measured minutes after another, as a session grows, would compare two machines).
    ``sides``: each side, and whether it has the entry-by-id route."""
    rng = random.Random(7)
    routes = {
        (side.name, size): calls_of(http, side, size, by_id=by_id, rng=rng)
        for side, by_id in sides
        for size in sorted(side.sessions)
    }
    for side, _ in sides:
        side.results = {size: {route: [] for route in routes[side.name, size]} for size in sorted(side.sessions)}
    for calls in routes.values():
        calls["handoff-context"]()  # warm-up
    names = list(dict.fromkeys(route for calls in routes.values() for route in calls))
    for _ in range(rounds):
        for route in names:
            times = max(1, (APPENDS if route == "append" else CALLS) // rounds)
            for side, _ in sides:
                for size in sorted(side.sessions):
                    if route in routes[side.name, size]:
                        side.results[size][route] += timed(routes[side.name, size][route], times)


def grow_side(http: httpx.Client, side: Side, sizes: list[int]) -> None:
    for size in sizes:
        began = time.perf_counter()
        grow(http, side, size)
        print(f"  {side.name}: {size:>9,} entries grown in {time.perf_counter() - began:.0f} s", flush=True)


# The two services ----------------------------------------------------------------------------------------------


@contextmanager
def baseline_checkout(commit: str) -> Iterator[Path]:
    """The baseline commit in a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-growth-baseline-") as tmp:
        path = Path(tmp) / "checkout"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), commit], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def make_key(url: str, database: str, source: Path) -> dict[str, str]:
    """A workspace and key created by the code under ``source`` (its own indexes, nobody else's)."""
    program = (
        "import asyncio, json, sys; sys.path.insert(0, sys.argv[3]); from _bench_common import create_key;"
        "key = asyncio.run(create_key(sys.argv[1], sys.argv[2])); print(json.dumps(key.headers))"
    )
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    argv = [sys.executable, "-c", program, url, database, str(source / "scripts")]
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    headers: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return headers


@contextmanager
def service_of(url: str, database: str, source: Path) -> Iterator[str]:
    """``handoff serve`` of the code under ``source`` (``PYTHONPATH`` wins over this venv's editable install)."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(source / "src")
    try:
        with serve(url, database, workers=1) as service:
            yield service.base
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


# Report --------------------------------------------------------------------------------------------------------


def storage(url: str, database: str, entries: int) -> str:
    """Bytes per entry in the collections that hold sessions and their entries (data + indexes), compressed and
    not (a collection the baseline does not have counts nothing)."""
    with MongoClient(url) as client:
        db = client[database]
        names = set(db.list_collection_names()) & {"sessions", "log_pages", "log_notables", "log_newest_notables"}
        stats = [db.command("collStats", name) for name in sorted(names)]
    stored = sum(s["storageSize"] + s["totalIndexSize"] for s in stats)
    raw = sum(s["size"] + s["totalIndexSize"] for s in stats)
    own = median([len(json.dumps(entry(n), separators=(",", ":"))) for n in range(1000)])
    return (
        f"bytes per entry: {stored / entries:.0f} stored (compressed data + indexes), {raw / entries:.0f} "
        f"uncompressed; the entry's own JSON: {own:.0f} bytes"
    )


def report(new: Side, old: Side | None) -> None:
    routes = list(next(iter(new.results.values())))
    sizes = list(new.results)
    print("\np50 / p99 in ms (sequential calls, one connection)")
    header = f"{'route':<16}" + "".join(f"{size:>20,}" for size in sizes) + f"{'last/first':>14}{'last/2nd':>10}"
    print(header)
    for route in routes:
        cells = [new.results[size][route] for size in sizes]
        row = "".join(f"{median(c):>11.2f} / {percentile(c, 0.99):>6.2f}" for c in cells)
        ratio = median(cells[-1]) / median(cells[0])
        verdict = "ok" if ratio <= GOAL_RATIO else "MISS"
        second = median(cells[-1]) / median(cells[min(1, len(cells) - 1)])
        print(f"{route:<16}{row}{ratio:>9.2f} {verdict:<4}{second:>10.2f}")
    if old is None:
        return
    print(f"\nbaseline ({old.name}), same routes")
    print(f"{'route':<16}" + "".join(f"{size:>20,}" for size in old.results))
    for route in routes:
        cells = [old.results[size].get(route) for size in old.results]
        print(
            f"{route:<16}"
            + "".join(f"{median(c):>11.2f} / {percentile(c, 0.99):>6.2f}" if c else f"{'-':>20}" for c in cells)
        )
    first = min(new.results)
    ratio = median(new.results[first]["append"]) / median(old.results[min(old.results)]["append"])
    verdict = "ok" if ratio <= 1.0 else "slower"
    print(f"\nappend at {first} entries, this code / baseline (p50): {ratio:.2f} ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with ('' for none)")
    parser.add_argument("--baseline-sizes", type=int, nargs="+", default=BASELINE_SIZES)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds of every route on every size")
    args = parser.parse_args()
    with bench_server("bench-growth") as server, contextlib.ExitStack() as services, httpx.Client(timeout=120) as http:
        print(machine(server.url))
        sides: list[tuple[Side, bool]] = []
        old: Side | None = None
        if args.baseline:
            checkout = services.enter_context(baseline_checkout(args.baseline))
            base = services.enter_context(service_of(server.url, "growth_old", checkout))
            old = Side(args.baseline, base, make_key(server.url, "growth_old", checkout))
            grow_side(http, old, args.baseline_sizes)
            sides.append((old, False))
        base = services.enter_context(service_of(server.url, "growth", ROOT))
        new = Side("this code", base, make_key(server.url, "growth", ROOT))
        grow_side(http, new, sorted(args.sizes))
        sides.append((new, True))
        measure(http, sides, rounds=args.rounds)
        report(new, old)
        print(storage(server.url, "growth", new.total))


if __name__ == "__main__":
    main()
