"""Soak: 64 concurrent clients doing what agents do, for a bounded time, then every counter checked.

    .venv/bin/python scripts/soak.py                  # 64 clients, 60 s (the recorded run)
    .venv/bin/python scripts/soak.py --seconds 600    # longer, to watch memory

It starts a bundled mongod of its own on a temporary directory and ``handoff serve`` (one worker) on a free
loopback port, creates a workspace and a key, then runs N clients in one process for ``--seconds``. Each client
works one session at a time, in a weighted mix: actions, typed entries (info, checkpoints, errors, decisions),
batches of 10, artifacts, context patches, reads (the session, a work-log page, recent actions, the handoff and
replay contexts), handoffs followed by a resume, replays (the client carries on in the new session) and
completions (it opens a new one). Every append has a client id; the client keeps a ledger of what the service
acknowledged.

Afterwards every session is read from the database and checked: each counter (``action_count``,
``checkpoint_count``, ``error_count``, ``artifact_count``, ``payload_bytes``) against its arrays, every
acknowledged id present exactly once, nothing stored that was not acknowledged. It prints throughput, p50/p99
latency per operation, errors by status, and the resident memory of the service and of mongod, sampled every
few seconds (start, after warm-up, end). It exits non-zero on any error answer (every request of the mix is
valid), any transport error, any inconsistency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import MongoClient

from _bench_common import DATABASE, bench_server, create_key, machine, percentile, serve
from handoff.sessions.limits import stored_size
from handoff.sessions.models import PAYLOAD_ARRAYS

SAMPLE_SECONDS = 5
WARMUP_SECONDS = 10
ENTRY_TYPES = ("info", "info", "info", "checkpoint", "error", "decision", "warning", "success")


@dataclass
class Ledger:
    """What the service acknowledged for one session."""

    work_log: set[str] = field(default_factory=set)
    artifacts: set[str] = field(default_factory=set)
    seeded: int = 0  # entries the service wrote itself (a replay's first entry)


@dataclass
class Stats:
    """Latencies per operation and every answer that was not a success."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0


@dataclass(frozen=True)
class Answer:
    """A successful response, read whole."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One simulated agent: a session at a time, a ledger per session, a weighted mix of operations."""

    def __init__(self, number: int, http: aiohttp.ClientSession, stats: Stats, ledgers: dict[str, Ledger]) -> None:
        self.number, self.http, self.stats, self.ledgers = number, http, stats, ledgers
        self.random = random.Random(number)
        self.session_id = ""
        self.sequence = 0
        self.paused = False

    async def call(self, name: str, method: str, path: str, **kwargs: Any) -> Answer | None:
        """One request, timed; a non-2xx answer or a transport error is counted and returned as None."""
        started = time.perf_counter()
        try:
            async with self.http.request(method, path, **kwargs) as response:
                answer = Answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.errors[f"{name}: {type(exc).__name__}"] += 1
            return None
        finally:
            self.stats.requests += 1
        self.stats.latencies[name].append(time.perf_counter() - started)
        if answer.status >= 300:
            self.stats.errors[f"{name}: {answer.status}"] += 1
            return None
        return answer

    def next_id(self) -> str:
        self.sequence += 1
        return f"c{self.number}-{self.sequence}"

    @property
    def base(self) -> str:
        return f"/v1/sessions/{self.session_id}"

    async def open_session(self) -> None:
        body: dict[str, Any] = {"agent_type": f"soak-{self.number % 4}", "context_summary": {"client": self.number}}
        headers = {"Idempotency-Key": f"soak-{self.number}-{self.sequence}"}
        self.sequence += 1
        response = await self.call("create", "POST", "/v1/sessions", json=body, headers=headers)
        if response is not None:
            self.session_id = response.json()["session_id"]
            self.ledgers[self.session_id] = Ledger()
            self.paused = False

    async def action(self) -> None:
        entry_id = self.next_id()
        body = {"id": entry_id, "action": f"ran step {self.sequence}", "details": {"n": self.sequence}}
        if await self.call("action", "POST", f"{self.base}/actions", json=body):
            self.ledgers[self.session_id].work_log.add(entry_id)

    async def typed(self) -> None:
        entry_id = self.next_id()
        body = {"id": entry_id, "message": f"note {self.sequence}", "type": self.random.choice(ENTRY_TYPES)}
        if await self.call("work-log", "POST", f"{self.base}/work-log", json=body):
            self.ledgers[self.session_id].work_log.add(entry_id)

    async def batch(self) -> None:
        entries = [{"id": self.next_id(), "message": "batched", "type": "info"} for _ in range(10)]
        if await self.call("batch", "POST", f"{self.base}/work-log/batch", json={"entries": entries}):
            self.ledgers[self.session_id].work_log.update(entry["id"] for entry in entries)

    async def artifact(self) -> None:
        entry_id = self.next_id()
        body = {"id": entry_id, "path": f"src/{self.number}/{self.sequence % 50}.py", "action": "modified"}
        if await self.call("artifact", "POST", f"{self.base}/artifacts", json=body):
            self.ledgers[self.session_id].artifacts.add(entry_id)

    async def context(self) -> None:
        body = {f"k{self.sequence % 20}": {"at": self.sequence, "note": "x" * self.random.randint(0, 200)}}
        await self.call("context", "PATCH", f"{self.base}/context", json=body)

    async def read(self) -> None:
        name, path = self.random.choice(
            [
                ("get", self.base),
                ("work-log page", f"{self.base}/work-log?limit=50&order=desc"),
                ("recent-actions", f"{self.base}/recent-actions"),
                ("handoff-context", f"{self.base}/handoff-context"),
                ("replay-context", f"{self.base}/replay-context"),
            ]
        )
        await self.call(name, "GET", path)

    async def handoff(self) -> None:
        body = {"summary": "over to the next agent", "next_steps": ["carry on"], "context_for_next": {"n": 1}}
        if await self.call("handoff", "POST", f"{self.base}/handoff", json=body):
            self.paused = True

    async def resume(self) -> None:
        if await self.call("resume", "POST", f"{self.base}/resume"):
            self.paused = False

    async def replay(self) -> None:
        response = await self.call("replay", "POST", f"{self.base}/replay", json={})
        if response is not None:
            self.session_id = response.json()["session_id"]
            self.ledgers[self.session_id] = Ledger(seeded=1)
            self.paused = False

    async def complete(self) -> None:
        await self.call("complete", "POST", f"{self.base}/complete", json={"summary": "done"})
        await self.open_session()

    async def run(self, deadline: float) -> None:
        operations: list[tuple[Callable[[], Awaitable[None]], int]] = [
            (self.action, 25),
            (self.typed, 20),
            (self.batch, 4),
            (self.artifact, 10),
            (self.context, 8),
            (self.read, 26),
            (self.handoff, 3),
            (self.replay, 2),
            (self.complete, 2),
        ]
        functions, weights = zip(*operations, strict=True)
        while time.monotonic() < deadline:
            if not self.session_id:
                await self.open_session()
                continue
            if self.paused:
                await self.resume()
                continue
            await self.random.choices(functions, weights)[0]()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def sample_memory(pids: dict[str, int], samples: list[tuple[float, dict[str, float]]], stop: float) -> None:
    started = time.monotonic()
    while time.monotonic() < stop:
        samples.append((time.monotonic() - started, {name: rss_mib(pid) for name, pid in pids.items()}))
        await asyncio.sleep(SAMPLE_SECONDS)
    samples.append((time.monotonic() - started, {name: rss_mib(pid) for name, pid in pids.items()}))


def check(url: str, ledgers: dict[str, Ledger], workspace_filter: dict[str, Any]) -> list[str]:
    """Every session's counters against its arrays, and its arrays against the clients' ledgers."""
    problems: list[str] = []
    with MongoClient(url) as client:
        docs = {doc["session_id"]: doc for doc in client[DATABASE]["sessions"].find(workspace_filter)}
    for session_id, ledger in ledgers.items():
        doc = docs.get(session_id)
        if doc is None:
            problems.append(f"{session_id}: acknowledged but not stored")
            continue
        work_log, artifacts = doc["work_log"], doc["artifacts"]
        expected = {
            "action_count": len(work_log),
            "checkpoint_count": sum(entry.get("type") == "checkpoint" for entry in work_log),
            "error_count": sum(entry.get("type") == "error" for entry in work_log),
            "artifact_count": len(artifacts),
            "payload_bytes": sum(stored_size(entry) for array in PAYLOAD_ARRAYS for entry in doc[array]),
        }
        for name, value in expected.items():
            if doc.get(name) != value:
                problems.append(f"{session_id}: {name} is {doc.get(name)}, its arrays say {value}")
        for array, acknowledged in (("work_log", ledger.work_log), ("artifacts", ledger.artifacts)):
            ids = [entry["id"] for entry in doc[array]]
            if len(ids) != len(set(ids)):
                problems.append(f"{session_id}: {len(ids) - len(set(ids))} duplicated ids in {array}")
            if missing := acknowledged - set(ids):
                problems.append(f"{session_id}: {len(missing)} acknowledged {array} ids missing")
            extra = len(set(ids) - acknowledged) - (ledger.seeded if array == "work_log" else 0)
            if extra:
                problems.append(f"{session_id}: {extra} {array} entries nobody was told about")
    return problems


async def soak(base: str, secret: str, clients: int, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    stats, ledgers = Stats(), {}
    samples: list[tuple[float, dict[str, float]]] = []
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {secret}"}
    timeout = aiohttp.ClientTimeout(total=30)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"clients": time.process_time()}
    async with aiohttp.ClientSession(base, headers=headers, connector=connector, timeout=timeout) as http:
        started = time.monotonic()
        deadline = started + seconds
        sampler = asyncio.create_task(sample_memory(pids, samples, deadline))
        workers = [Client(number, http, stats, ledgers) for number in range(clients)]
        await asyncio.gather(*(worker.run(deadline) for worker in workers))
        elapsed = time.monotonic() - started
        await sampler
    cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"clients": time.process_time()}
    every = [latency for latencies in stats.latencies.values() for latency in latencies]
    per_operation = {
        name: {
            "count": len(values),
            "p50_ms": round(percentile(values, 0.5) * 1000, 1),
            "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        }
        for name, values in sorted(stats.latencies.items())
    }
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": stats.requests,
        "throughput_rps": round(stats.requests / elapsed, 1),
        "p50_ms": round(percentile(every, 0.5) * 1000, 1),
        "p99_ms": round(percentile(every, 0.99) * 1000, 1),
        "operations": per_operation,
        "errors": dict(stats.errors),
        "sessions": len(ledgers),
        "acknowledged_appends": sum(len(ledger.work_log) + len(ledger.artifacts) for ledger in ledgers.values()),
        "cpu_seconds": {name: round(cpu_after[name] - cpu_before[name], 1) for name in cpu_before},
        "memory_samples": [[round(at), {k: round(v, 1) for k, v in rss.items()}] for at, rss in samples],
        "_ledgers": ledgers,
    }


def memory_line(result: dict[str, Any], name: str) -> str:
    samples = [(at, rss[name]) for at, rss in result["memory_samples"]]
    start, end = samples[0][1], samples[-1][1]
    warm = next((rss for at, rss in samples if at >= WARMUP_SECONDS), start)
    growth = end - warm
    verdict = "flat" if abs(growth) <= max(5.0, 0.1 * warm) else "GROWING"
    if name == "mongod":
        verdict = "its WiredTiger cache fills up to the 256 MiB it is given, by design"
    return (
        f"{name} RSS: start {start:.0f} MiB, after {WARMUP_SECONDS} s warm-up {warm:.0f} MiB, end {end:.0f} MiB "
        f"({growth:+.1f} MiB since warm-up: {verdict})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients run (default 60)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (default 1)")
    args = parser.parse_args(argv)

    with bench_server("soak") as server, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        print(machine(server.url))
        key = asyncio.run(create_key(server.url, DATABASE))
        log_path = Path(tmp) / "service.log"
        with serve(server.url, DATABASE, workers=args.workers, log=log_path) as service:
            pids = {"service": service.pid, "mongod": server.pid}
            print(f"{args.clients} clients for {args.seconds:g} s against {service.base} (service pid {service.pid})")
            result = asyncio.run(soak(service.base, key.secret, args.clients, args.seconds, pids))
            log = log_path.read_text(errors="replace")
        ledgers = result.pop("_ledgers")
        problems = check(server.url, ledgers, {"workspace_id": key.workspace_id})

    print(
        f"\n{result['requests']} requests in {result['seconds']} s: {result['throughput_rps']} requests/s, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; {result['sessions']} sessions, "
        f"{result['acknowledged_appends']} acknowledged appends"
    )
    print(f"{'operation':<16} {'count':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in result["operations"].items():
        print(f"{name:<16} {figures['count']:>8} {figures['p50_ms']:>8} {figures['p99_ms']:>8}")
    print(f"errors: {result['errors'] or 'none'}")
    cpu = ", ".join(f"{name} {seconds} s" for name, seconds in result["cpu_seconds"].items())
    print(f"CPU used during the run: {cpu} (the machine: {os.cpu_count()} CPUs, shared by all three)")
    for name in ("service", "mongod"):
        print(memory_line(result, name))
    print("memory samples (s: service/mongod MiB): " + ", ".join(
        f"{at}: {rss['service']:.0f}/{rss['mongod']:.0f}" for at, rss in result["memory_samples"]
    ))  # fmt: skip
    tracebacks = log.count("Traceback")
    print(f"consistency: {len(ledgers)} sessions checked, {len(problems)} problems")
    for problem in problems[:20]:
        print(f"  {problem}")
    if tracebacks:
        print(f"the service logged {tracebacks} traceback(s); the last lines:\n{log[-2000:]}")
    ok = not problems and not result["errors"] and not tracebacks  # every request of the mix is valid by design
    print(f"RESULT: {'PASS' if ok else 'FAIL'} (required: no error answer, every counter and id consistent)")
    result |= {"problems": len(problems), "server_tracebacks": tracebacks}
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
