"""One session grown to 1,000,000 entries: what each route costs at 10, 10,000, 100,000 and 1,000,000 entries.

    .venv/bin/python scripts/bench_log_growth.py                       # the recorded run (1,000,000 entries)
    .venv/bin/python scripts/bench_log_growth.py --sizes 10 10000      # a quick look
    .venv/bin/python scripts/bench_log_growth.py --baseline 3b879d2    # today's code against another commit

It starts a bundled mongod of its own and, on it, two services side by side: this checkout's ``handoff serve``
and the baseline commit's (checked out into a temporary ``git worktree``, run from its ``src`` on this venv),
each on its own database. Each grows one session through the REST API (``work-log/batch`` of up to 1,000
typed entries of about 200 bytes; every 50th a checkpoint, every 97th an error, a few artifacts) and, when the
log reaches each size, times sequential calls over one keep-alive connection: single appends
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
    """One service and the session it grows."""

    name: str
    base: str
    headers: dict[str, str]
    session_id: str = ""
    entries: int = 0
    results: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def url(self, path: str = "") -> str:
        return f"{self.base}/v1/sessions/{self.session_id}{path}"


def grow(http: httpx.Client, side: Side, size: int) -> None:
    """Append typed entries in batches until the log holds ``size`` entries (a few artifacts along the way)."""
    while side.entries < size:
        count = min(BATCH, size - side.entries)
        batch = [entry(side.entries + k) for k in range(count)]
        http.post(side.url("/work-log/batch"), json={"entries": batch}, headers=side.headers).raise_for_status()
        if side.entries % 100_000 == 0:
            artifact = {"path": f"src/pkg{side.entries % 40}/module.py", "action": "modified"}
            http.post(side.url("/artifacts"), json=artifact, headers=side.headers).raise_for_status()
        side.entries += count


def timed(call: Callable[[], httpx.Response], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        call().raise_for_status()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def measure(http: httpx.Client, side: Side, *, by_id: bool, rng: random.Random) -> dict[str, list[float]]:
    """Every timed call at the log's current size (the appends add ``APPENDS`` entries, counted)."""
    size, h = side.entries, side.headers
    deep = int(size * 0.9)
    http.get(side.url("/handoff-context"), headers=h)  # warm-up
    results = {
        "append": [],
        "handoff-context": timed(lambda: http.get(side.url("/handoff-context"), headers=h), CALLS),
        "replay-context": timed(lambda: http.get(side.url("/replay-context"), headers=h), CALLS),
        "page at 0": timed(lambda: http.get(side.url("/work-log"), params={"limit": PAGE}, headers=h), CALLS),
        "page at 90 %": timed(
            lambda: http.get(side.url("/work-log"), params={"offset": deep, "limit": PAGE}, headers=h), CALLS
        ),
    }
    if by_id:
        ids = [entry(rng.randrange(size))["id"] for _ in range(CALLS)]
        pick = iter(ids)
        results["entry by id"] = timed(lambda: http.get(side.url(f"/work-log/{next(pick)}"), headers=h), CALLS)
    number = iter(range(side.entries, side.entries + APPENDS))
    results["append"] = timed(lambda: http.post(side.url("/work-log"), json=entry(next(number)), headers=h), APPENDS)
    side.entries += APPENDS
    return results


def run_side(side: Side, sizes: list[int], *, by_id: bool) -> None:
    rng = random.Random(7)
    with httpx.Client(timeout=120) as http:
        created = http.post(f"{side.base}/v1/sessions", json={"agent_type": "bench-growth"}, headers=side.headers)
        side.session_id = created.raise_for_status().json()["session_id"]
        for size in sizes:
            began = time.perf_counter()
            grow(http, side, size)
            grown = time.perf_counter() - began
            side.results[size] = measure(http, side, by_id=by_id, rng=rng)
            print(f"  {side.name}: {size:>9,} entries (grown in {grown:.0f} s) measured", flush=True)


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
    args = parser.parse_args()
    with bench_server("bench-growth") as server:
        print(machine(server.url))
        old: Side | None = None
        if args.baseline:
            with baseline_checkout(args.baseline) as checkout, service_of(server.url, "growth_old", checkout) as base:
                old = Side(args.baseline, base, make_key(server.url, "growth_old", checkout))
                run_side(old, args.baseline_sizes, by_id=False)
        with service_of(server.url, "growth", ROOT) as base:
            new = Side("this code", base, make_key(server.url, "growth", ROOT))
            run_side(new, sorted(args.sizes), by_id=True)
        report(new, old)
        print(storage(server.url, "growth", new.entries))


if __name__ == "__main__":
    main()
