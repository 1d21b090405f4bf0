"""The CPU an import worker spends on one row, beside what a raw load spends on it, without a database.

    .venv/bin/python scripts/profile_import_rows.py              # per-row CPU of prepare() and of decode + encode
    .venv/bin/python scripts/profile_import_rows.py --profile    # and where prepare()'s time goes (cProfile)
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python scripts/profile_import_rows.py   # another commit's code

``bench_import.py`` measures the import end to end, on a host whose load moves its figures; this measures the part
the workers run (``bulk.prepare.prepare``: decode, checks, mapping, paging, BSON) on the same rows as that
benchmark, in this process's CPU time (not wall time: other jobs on the host inflate it less), best of
``--repeat``, beside the raw side's share of the same work (msgspec decode and ``bson.encode`` of the decoded row).
Comparing two checkouts run one after the other on the same host is what their ratio column is for.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import time
from collections.abc import Callable
from pathlib import Path

import bson
import msgspec

from bench_import import _line  # the benchmark's own rows (this directory is on the path of a script run)
from handoff.bulk.mapping import Target
from handoff.bulk.prepare import Item, prepare
from handoff.config import Settings


def _best(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000, help="rows of bench_import's shape (default 2,000)")
    parser.add_argument("--entries", type=int, default=20, help="work-log entries per row (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each side, the best kept (default 5)")
    parser.add_argument("--profile", action="store_true", help="then print prepare()'s top functions")
    args = parser.parse_args()

    rng = random.Random(6)
    lines = [json.dumps(_line(rng, n, args.entries), separators=(",", ":")).encode() for n in range(args.rows)]
    items: list[Item] = [(n, line, None, None) for n, line in enumerate(lines)]
    target = Target("ws_profile", Settings(mongodb_url="mongodb://unused", data_dir=Path("/nonexistent")))
    rejected = [out.error for out in prepare(items, target, "auto") if out.error]
    if rejected:
        raise SystemExit(f"rows rejected: {rejected[0]}")
    decode, encode = msgspec.json.decode, bson.encode

    prepared = _best(lambda: prepare(items, target, "auto"), args.repeat)
    raw = _best(lambda: [encode(decode(line)) for line in lines], args.repeat)
    per = 1e6 / args.rows
    print(
        f"{args.rows:,} rows of {args.entries} entries + 5 artifacts: prepare {prepared * per:.1f} us/row CPU, "
        f"raw decode + encode {raw * per:.1f} us/row, ratio {prepared / raw:.2f}"
    )
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(prepare, items, target, "auto")
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
