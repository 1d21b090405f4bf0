"""Events under load: 200 subscribers on one worker while 32 writers append (goals: p99 <= 250 ms, rate >= 0.9x).

    .venv/bin/python scripts/bench_events.py                  # 15 s per phase, 200 subscribers, 32 writers
    .venv/bin/python scripts/bench_events.py --seconds 30 --subscribers 400
    .venv/bin/python scripts/bench_events.py --client httpx   # the subscribers read with httpx (heavier)
    .venv/bin/python scripts/bench_events.py --rate 200       # paced writers: the service's CPU at one rate
    .venv/bin/python scripts/bench_events.py --cycles 5       # five cycles of the three phases (default 3)

It starts a bundled mongod of its own and ``handoff serve --workers 1`` (one worker holds every stream;
``HANDOFF_MAX_STREAMS_PER_KEY`` raised to fit them), creates 64 sessions, and runs three phases of the same 32
writers (``POST /v1/sessions/{id}/work-log``, one entry at a time, each writer its own session, ids of its own):

1. without subscribers, on 32 sessions nobody follows;
2. with the subscribers, on the 32 other sessions: each subscriber follows one of them
   (``GET /v1/sessions/{id}/events``, subscriber ``i`` session ``i % 32``), as a dashboard of one agent does;
3. without subscribers again (on the first 32 sessions), so that a drift of the shared machine's load between
   phases shows, rather than being taken for the subscribers' cost.

The three phases run ``--cycles`` times (3 by default), each cycle on 64 fresh sessions with a fresh subscribers'
process; the throughput ratio is each cycle's phase 2 against the mean of its phases 1 and 3, and the median of
those (one cycle alone ranged 0.65-1.13 on main over one evening: the machine drifts by more than the fan-out
costs); the latency percentiles are over every cycle's events.

The subscribers run in a process of their own (this script, ``--subscribe``) so that parsing their events does not
slow the writers' process; each reads its stream on a bare connection (``--client httpx``: through httpx, which
costs that process several times more CPU, taken from the same two cores). The CPU of the service, mongod, the
writers' and the subscribers' processes is printed per append, so that where the cores went shows.

Latency is, per event received, its arrival (``time.time()`` in the subscribers'
process) minus the acknowledgement of the write that made it (``time.time()`` in the writers' process when the
201 arrived): the same machine's clock. The service's RSS (its processes, from ``/proc``) is read before the
subscribers connect, once they are connected and idle, and after phase 2; the second minus the first, over the
subscribers, is the RSS per subscriber. Events lost or duplicated are counted (each subscriber must receive
every entry of its session exactly once).

With ``--rate``, the writers together send that many appends a second (each its share, on a schedule) instead of
as many as they can: every phase then makes the same work, so the service's CPU per append with and without the
subscribers compares like with like (an append costs the service less CPU when more of them arrive together,
since their commits are grouped, so at free rates the phases' CPU per append differs by their rates too). The
ratio of rates then only says whether the rate was held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _bench_common import DATABASE, bench_server, cpu_seconds, create_key, machine, median, percentile, serve

WRITERS = 32
GOAL_P99_MS = 250.0
GOAL_RATIO = 0.9
ENTRY_ID = re.compile(rb'"id":"(with-[0-9]+-[0-9]+)"')  # the ids of phase 2's entries


@dataclass
class Phase:
    label: str
    appends: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    #: CPU seconds the service, mongod and this (the writers') process spent during the phase
    service_cpu: float = 0.0
    mongod_cpu: float = 0.0
    writers_cpu: float = 0.0
    #: entry id -> time.time() when its request was sent and when its acknowledgement arrived
    acked: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.appends / self.seconds if self.seconds else 0.0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (uvicorn's workers), from /proc."""
    total = 0
    wanted = {pid}
    for entry in sorted(Path("/proc").iterdir(), key=lambda path: int(path.name) if path.name.isdigit() else -1):
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        if int(entry.name) in wanted or parent in wanted:
            wanted.add(int(entry.name))
            found = re.search(r"VmRSS:\s+(\d+) kB", status)
            total += int(found.group(1)) * 1024 if found else 0
    return total


async def write(
    base: str,
    headers: dict[str, str],
    sessions: list[str],
    seconds: float,
    phase: Phase,
    *,
    service_pid: int,
    mongod_pid: int,
    rate: float | None = None,
) -> None:
    """32 writers, one session each, appending one entry at a time for ``seconds``.

    Each writer has a client (one keep-alive connection) of its own: 32 requests in flight through one httpx
    pool queue behind its lock and cost the writers' process more than the service spends on them (measured:
    ~200 ms from sending to the 201 at ~150 appends/s with the service using 0.2 of a core).
    """
    begin = time.monotonic()
    stop = begin + seconds
    interval = WRITERS / rate if rate else 0.0  # each writer's share of ``rate``

    async def writer(number: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            session_id = sessions[number]
            n = 0
            while time.monotonic() < stop:
                if interval:  # the writers' schedules staggered, so that the appends come evenly
                    await asyncio.sleep(max(0.0, begin + (n + number / WRITERS) * interval - time.monotonic()))
                entry_id = f"{phase.label}-{number}-{n}"
                sent = time.time()
                try:
                    response = await http.post(
                        f"/v1/sessions/{session_id}/work-log", json={"id": entry_id, "message": "bench"}
                    )
                except httpx.TransportError as exc:
                    phase.errors[type(exc).__name__] += 1
                    continue
                if response.status_code == 201:
                    phase.acked[entry_id] = (sent, time.time())
                    phase.appends += 1
                    n += 1
                else:
                    phase.errors[str(response.status_code)] += 1

    started, cpu, mongod, own = time.monotonic(), cpu_seconds(service_pid), cpu_seconds(mongod_pid), _own_cpu()
    await asyncio.gather(*(writer(number) for number in range(WRITERS)))
    phase.seconds = time.monotonic() - started
    phase.service_cpu = cpu_seconds(service_pid) - cpu
    phase.mongod_cpu = cpu_seconds(mongod_pid) - mongod
    phase.writers_cpu = _own_cpu() - own


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def create_sessions(base: str, headers: dict[str, str], count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        found = []
        for number in range(count):
            response = await http.post("/v1/sessions", json={"agent_type": f"bench-{number % WRITERS}"})
            response.raise_for_status()
            found.append(response.json()["session_id"])
        return found


# The subscribers' process ---------------------------------------------------------------------------------------


async def subscribe(base: str, secret: str, sessions: list[str], count: int, client: str) -> None:
    """``count`` streams; prints ``ready`` once all are live, then, when stdin closes, one JSON line: per session,
    the arrivals of each entry id (``[[entry_id, time], ...]`` per subscriber), and the streams that ended.

    ``client`` is ``raw`` (each stream a bare asyncio connection, its bytes scanned as they come) or ``httpx``
    (each an httpx stream): the subscribers share the machine's two cores with the service, mongod and the
    writers, and httpx's parsing costs them several times what the raw reader does, out of the writers' rate.
    """
    headers = {"Authorization": f"Bearer {secret}"}
    arrivals: list[list[tuple[str, float]]] = [[] for _ in range(count)]
    ended: Counter[str] = Counter()
    live = asyncio.Semaphore(0)

    def read(mine: list[tuple[str, float]], buffer: bytes, chunk: bytes, now: float) -> bytes:
        """The complete messages of ``buffer + chunk`` counted; what is left of an incomplete one returned."""
        buffer += chunk.replace(b"\r", b"")  # Litestar ends lines with CRLF; JSON escapes a CR
        *messages, buffer = buffer.split(b"\n\n")
        for message in messages:
            if b"event: error" in message:
                ended["event: error"] += 1
            elif b"event: work_log.appended" in message and (found := ENTRY_ID.search(message)):
                mine.append((found.group(1).decode(), now))
        return buffer

    async def raw(number: int) -> None:
        url = httpx.URL(base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        path = f"/v1/sessions/{sessions[number % len(sessions)]}/events"
        request = f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: {headers['Authorization']}\r\n\r\n"
        writer.write(request.encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                ended[head.split(b"\r\n", 1)[0].decode()] += 1
                return
            live.release()
            mine, buffer = arrivals[number], b""
            while chunk := await reader.read(1 << 16):  # chunked framing lies between messages: harmless here
                buffer = read(mine, buffer, chunk, time.time())
        finally:
            writer.close()

    async def with_httpx(number: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"/v1/sessions/{sessions[number % len(sessions)]}/events") as response:
            if response.status_code != 200:
                ended[f"HTTP {response.status_code}"] += 1
                live.release()
                return
            live.release()
            mine, buffer = arrivals[number], b""
            async for chunk in response.aiter_raw():
                buffer = read(mine, buffer, chunk, time.time())

    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=httpx.Timeout(30, read=None), limits=limits
    ) as http:
        one = (lambda number: with_httpx(number, http)) if client == "httpx" else raw
        tasks = [asyncio.create_task(one(number)) for number in range(count)]
        for _ in range(count):
            await live.acquire()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the writers are done
        await asyncio.sleep(2)  # the last events still on their way
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"arrivals": arrivals, "ended": dict(ended)}), flush=True)


# The run ----------------------------------------------------------------------------------------------------------


async def run(base: str, secret: str, pid: int, mongod_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """``--cycles`` cycles of the three phases, each on fresh sessions with a fresh subscribers' process; the ratio
    is each cycle's (its phase 2 against the mean of its phases 1 and 3), and their median; the latencies are all
    cycles' events together."""
    cycles = []
    for number in range(args.cycles):
        cycles.append(await cycle(base, secret, pid, mongod_pid, args))
        shown = {key: value for key, value in cycles[-1].items() if not key.startswith("_")}
        print(f"cycle {number + 1}: {json.dumps(shown)}", flush=True)
    latencies = [latency for result in cycles for latency in result.pop("_latencies")]
    from_send = [latency for result in cycles for latency in result.pop("_from_send")]
    ratios = [result["ratio"] for result in cycles if result["ratio"] is not None]
    return {
        **cycles[0],
        "cycles": len(cycles),
        "ratios": ratios,
        "ratio": round(median(ratios), 3) if ratios else None,
        "rate_without_1": [result["rate_without_1"] for result in cycles],
        "rate_with": [result["rate_with"] for result in cycles],
        "rate_without_2": [result["rate_without_2"] for result in cycles],
        "events_received": len(latencies),
        "latency_p50_ms": round(median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "latency_max_ms": round(max(latencies), 1) if latencies else None,
        "arrived_before_ack": sum(result["arrived_before_ack"] for result in cycles),
        "from_send_p50_ms": round(median(from_send), 1) if from_send else None,
        "from_send_p99_ms": round(percentile(from_send, 0.99), 1) if from_send else None,
        "lost": sum(result["lost"] for result in cycles),
        "duplicated": sum(result["duplicated"] for result in cycles),
        "streams_ended": dict(sum((Counter(result["streams_ended"]) for result in cycles), Counter())),
        "service_cpu_ms_per_append": [result["service_cpu_ms_per_append"] for result in cycles],
        "rss_kib_per_subscriber": [result["rss_kib_per_subscriber"] for result in cycles],
    }


async def cycle(base: str, secret: str, pid: int, mongod_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One cycle: without subscribers, with them, without again."""
    headers = {"Authorization": f"Bearer {secret}"}
    sessions = await create_sessions(base, headers, 2 * WRITERS)
    alone, followed = sessions[:WRITERS], sessions[WRITERS:]
    before = Phase("without-1")
    await write(base, headers, alone, args.seconds, before, service_pid=pid, mongod_pid=mongod_pid, rate=args.rate)
    rss_idle = rss_bytes(pid)

    subscribers = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--subscribe",
        base,
        secret,
        json.dumps(followed),
        str(args.subscribers),
        args.client,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 30,
    )
    assert subscribers.stdout is not None
    assert subscribers.stdin is not None
    ready = await asyncio.wait_for(subscribers.stdout.readline(), 120)
    if ready.strip() != b"ready":
        raise SystemExit(f"the subscribers did not start: {ready!r}")
    await asyncio.sleep(2)
    rss_subscribed = rss_bytes(pid)
    during = Phase("with")
    await write(base, headers, followed, args.seconds, during, service_pid=pid, mongod_pid=mongod_pid, rate=args.rate)
    rss_loaded = rss_bytes(pid)
    subscribers_cpu = cpu_seconds(subscribers.pid)
    subscribers.stdin.close()
    result = json.loads(await subscribers.stdout.readline())
    await subscribers.wait()

    after = Phase("without-2")
    await write(base, headers, alone, args.seconds, after, service_pid=pid, mongod_pid=mongod_pid, rate=args.rate)

    latencies: list[float] = []
    from_send: list[float] = []
    lost = duplicated = early = 0
    by_session: dict[int, set[str]] = defaultdict(set)
    for entry_id in during.acked:
        by_session[int(entry_id.split("-")[1])].add(entry_id)
    for number, received in enumerate(result["arrivals"]):
        ids = [entry_id for entry_id, _ in received]
        expected = by_session[number % WRITERS]
        lost += len(expected - set(ids))
        duplicated += len(ids) - len(set(ids))
        for entry_id, arrived in received:
            times = during.acked.get(entry_id)
            if times is None:
                continue  # a write whose acknowledgement never came (an error): not a latency
            sent, acked = times
            early += arrived < acked
            latencies.append((arrived - acked) * 1000)  # negative: the event came before the 201
            from_send.append((arrived - sent) * 1000)
    baseline = (before.rate + after.rate) / 2
    return {
        "subscribers": args.subscribers,
        "client": args.client,
        "writers": WRITERS,
        "seconds_per_phase": args.seconds,
        "paced_rate": args.rate,
        "rate_without_1": round(before.rate, 1),
        "rate_with": round(during.rate, 1),
        "rate_without_2": round(after.rate, 1),
        "ratio": round(during.rate / baseline, 3) if baseline else None,
        "events_received": len(latencies),
        "latency_p50_ms": round(median(latencies), 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "latency_max_ms": round(max(latencies), 1) if latencies else None,
        "arrived_before_ack": early,
        "from_send_p50_ms": round(median(from_send), 1) if from_send else None,
        "from_send_p99_ms": round(percentile(from_send, 0.99), 1) if from_send else None,
        "lost": lost,
        "duplicated": duplicated,
        "streams_ended": result["ended"],
        "write_errors": dict(before.errors + during.errors + after.errors),
        "service_cpu_ms_per_append": {
            phase.label: round(phase.service_cpu * 1000 / max(phase.appends, 1), 2) for phase in (before, during, after)
        },
        "mongod_cpu_ms_per_append": {
            phase.label: round(phase.mongod_cpu * 1000 / max(phase.appends, 1), 2) for phase in (before, during, after)
        },
        "writers_cpu_ms_per_append": {
            phase.label: round(phase.writers_cpu * 1000 / max(phase.appends, 1), 2) for phase in (before, during, after)
        },
        "service_cpu_share": {
            phase.label: round(phase.service_cpu / phase.seconds, 2) for phase in (before, during, after)
        },
        "subscribers_process_cpu_seconds": round(subscribers_cpu, 1),
        "subscribers_cpu_ms_per_append": round(subscribers_cpu * 1000 / max(during.appends, 1), 2),
        "rss_mib_idle": round(rss_idle / 2**20, 1),
        "rss_mib_subscribed": round(rss_subscribed / 2**20, 1),
        "rss_mib_after_load": round(rss_loaded / 2**20, 1),
        "rss_kib_per_subscriber": round((rss_subscribed - rss_idle) / args.subscribers / 1024, 1),
        "rss_kib_per_subscriber_after_load": round((rss_loaded - rss_idle) / args.subscribers / 1024, 1),
        "_latencies": latencies,
        "_from_send": from_send,
    }


def report(result: dict[str, Any], where: str) -> None:
    print(f"machine: {where}")
    print(
        f"{result['subscribers']} subscribers (each of one session, reading with {result['client']}), "
        f"{result['writers']} writers, "
        f"{result['seconds_per_phase']} s per phase, one worker"
    )
    print(
        f"appends/s per cycle without subscribers {result['rate_without_1']} then {result['rate_without_2']}, "
        f"with {result['rate_with']}: ratios {result['ratios']}, median {result['ratio']} (goal >= {GOAL_RATIO})"
    )
    print(
        f"event latency from acknowledgement: p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms, "
        f"max {result['latency_max_ms']} ms over {result['events_received']} events (goal p99 <= {GOAL_P99_MS} ms); "
        f"arrived before their acknowledgement: {result['arrived_before_ack']} (negative latencies); from the "
        f"request's sending: p50 {result['from_send_p50_ms']} ms, p99 {result['from_send_p99_ms']} ms"
    )
    print(
        f"service CPU ms per append, per cycle {result['service_cpu_ms_per_append']}; in the first cycle, CPU cores "
        f"it used {result['service_cpu_share']}, the subscribers' process {result['subscribers_process_cpu_seconds']} "
        "CPU seconds (of the 2 cores the whole run shares)"
    )
    print(
        f"first cycle, CPU ms per append of mongod {result['mongod_cpu_ms_per_append']}, of the writers' process "
        f"{result['writers_cpu_ms_per_append']}, of the subscribers' process {result['subscribers_cpu_ms_per_append']}"
    )
    print(f"lost {result['lost']}, duplicated {result['duplicated']}, streams ended early {result['streams_ended']}")
    print(
        f"service RSS (first cycle) {result['rss_mib_idle']} MiB idle, {result['rss_mib_subscribed']} MiB with the "
        f"subscribers, {result['rss_mib_after_load']} MiB after the load "
        f"({result['rss_kib_per_subscriber_after_load']} KiB per subscriber after the load); KiB per subscriber, "
        f"per cycle: {result['rss_kib_per_subscriber']}"
    )
    p99_ok = result["latency_p99_ms"] is not None and result["latency_p99_ms"] <= GOAL_P99_MS
    ratio_ok = result["ratio"] is not None and result["ratio"] >= GOAL_RATIO
    print(f"latency goal {'met' if p99_ok else 'MISSED'}, throughput goal {'met' if ratio_ok else 'MISSED'}")
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="length of each of the three phases")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument(
        "--cycles", type=int, default=3, help="cycles of the three phases (each ratio, and their median)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="appends a second of all the writers together (default: as many as they can)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="how the subscribers read their streams: bare connections (the default) or httpx (figures before 15:40 "
        "UTC of 2026-12-07)",
    )
    parser.add_argument("--subscribe", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        base, secret, sessions, count, client = args.subscribe
        asyncio.run(subscribe(base, secret, json.loads(sessions), int(count), client))
        return 0
    with bench_server("bench-events") as server:
        key = asyncio.run(create_key(server.url, DATABASE))
        streams = args.subscribers + 8
        with serve(server.url, DATABASE, workers=1, max_streams_per_key=streams) as service:
            result = asyncio.run(run(service.base, key.secret, service.pid, server.pid, args))
        report(result, machine(server.url))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
