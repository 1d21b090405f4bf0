"""What the request metrics cost a request: the instruments ``handoff.ops.observe`` touches once per request.

    .venv/bin/python scripts/bench_metrics.py
    .venv/bin/python scripts/bench_metrics.py --calls 500000

Per request the observer increments and decrements the in-progress gauge, increments the request counter,
observes the latency histogram (children looked up once per label set, as the observer caches them), and the
auth guard counts a key-cache hit. This times that sequence in one process (the default registry, as
``handoff serve`` with one worker) and in prometheus-client's multiprocess mode (a fresh
``PROMETHEUS_MULTIPROC_DIR``, as with ``--workers N``: every update is a write to a memory-mapped file), each
in a child interpreter of its own, since the mode is fixed when prometheus-client is imported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

PROBE = """
import sys, time
from handoff import metrics
route = "/v1/sessions/{session_id}/work-log"
counter = metrics.http_requests.labels("POST", route, "201")
histogram = metrics.http_request_duration.labels("POST", route, "201")
calls = int(sys.argv[1])
started = time.perf_counter()
for _ in range(calls):
    metrics.http_requests_in_progress.inc()
    counter.inc()
    histogram.observe(0.003)
    metrics.http_requests_in_progress.dec()
    metrics.key_cache("hit")
print((time.perf_counter() - started) / calls * 1e6)
"""


def per_request_us(calls: int, multiproc_dir: str | None) -> float:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    argv = [sys.executable, "-c", PROBE, str(calls)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    print(f"one process:  {per_request_us(args.calls, None):.1f} µs per request")
    with tempfile.TemporaryDirectory(prefix="handoff-metrics-") as directory:
        print(f"multiprocess: {per_request_us(args.calls, directory):.1f} µs per request")


if __name__ == "__main__":
    main()
