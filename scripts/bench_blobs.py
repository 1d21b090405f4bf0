"""A 256 MiB blob through the REST API vs PyMongo's ``AsyncGridFSBucket`` on the same bytes, same server.

Goals: upload and download through the API at >= 0.7x the bucket's own speed, and the service's peak RSS during
each under 64 MiB above its idle RSS.

    .venv/bin/python scripts/bench_blobs.py                  # 256 MiB, 3 rounds
    .venv/bin/python scripts/bench_blobs.py --mib 64 --rounds 1

It starts a bundled mongod of its own (replica set of one, on a temporary directory) and ``handoff serve`` (one
process, ``HANDOFF_MAX_SESSION_BYTES=0``: no session cap) on loopback, then, per round, in alternating order:

* GridFS: ``AsyncGridFSBucket`` on a client with the service's settings (w=majority, retryable writes), default
  chunk size, in a bucket of its own (``ref``): ``open_upload_stream`` + ``write`` of 1 MiB pieces + ``close``;
  then ``open_download_stream`` + ``readchunk`` until the end;
* API: ``POST /v1/sessions/{id}/blobs`` with the same bytes streamed by httpx 1 MiB at a time (no
  ``Content-Length``: chunked), then ``GET`` of the blob read with ``aiter_raw``, then the same ``GET`` by
  ``curl -o /dev/null``. httpx reads a response in 64 KiB socket reads and spends more CPU on a 256 MiB download
  than the service and mongod together; on 2 cores that client is what the httpx figure measures, so the curl
  figure (a client that costs next to nothing) is the one the download goal is judged by, beside it.

The bytes are random (not compressible by WiredTiger), made as they are sent from one 1 MiB random block and a
counter, so neither side holds the blob. Throughput is MiB per wall-clock second from the first byte sent to the
answer (upload) or from the request to the last byte (download). During every API call a thread samples the
service's ``VmRSS`` every 5 ms and its ``VmHWM`` is reset before and read after (``/proc/<pid>/clear_refs``);
idle is its RSS after a warm-up upload and download. CPU seconds of the service, mongod and this process (the
client) are read from ``/proc`` per call, so a miss can be told apart: a CPU-bound machine (2 cores for the
client, the service and mongod) or waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from gridfs.asynchronous import AsyncGridFSBucket

from _bench_common import BenchKey, async_client, bench_server, cpu_seconds, create_key, machine, median, serve

MIB = 1024 * 1024
PIECE = MIB
GOAL_RATIO = 0.7
GOAL_RSS_MIB = 64
#: curl reads the download a second time, to /dev/null (``apt-get install curl`` where it is missing).
CURL = shutil.which("curl") or "curl"


def pieces(total: int, seed: bytes) -> Iterator[bytes]:
    """``total`` bytes, 1 MiB at a time: a random block with the piece's number in front."""
    for n in range(total // PIECE):
        yield n.to_bytes(8, "little") + seed[8:]


async def apieces(total: int, seed: bytes) -> AsyncIterator[bytes]:
    for piece in pieces(total, seed):
        yield piece


# Memory and CPU of the service ---------------------------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/{pid}/status")


@dataclass
class Memory:
    """The peak RSS of a process over a block: sampled, and its high-water mark (reset first where allowed)."""

    pid: int
    sampled_kib: int = 0
    hwm_kib: int | None = None

    @property
    def peak_kib(self) -> int:
        return max(self.sampled_kib, self.hwm_kib or 0)


@contextmanager
def watch_memory(pid: int) -> Iterator[Memory]:
    memory = Memory(pid)
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        resettable = True
    except OSError:
        resettable = False
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            memory.sampled_kib = max(memory.sampled_kib, _status_kib(pid, "VmRSS"))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield memory
    finally:
        stop.set()
        sampler.join()
        if resettable:
            memory.hwm_kib = _status_kib(pid, "VmHWM")


@dataclass
class Cpu:
    """CPU seconds spent over a block by each process involved."""

    pids: dict[str, int]
    spent: dict[str, float] = field(default_factory=dict)


@contextmanager
def watch_cpu(pids: dict[str, int]) -> Iterator[Cpu]:
    cpu = Cpu(pids)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    try:
        yield cpu
    finally:
        cpu.spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}


# One call of each side -----------------------------------------------------------------------------------------


@dataclass
class Measure:
    seconds: float
    cpu: dict[str, float]
    peak_kib: int | None = None

    def mib_per_second(self, size: int) -> float:
        return size / MIB / self.seconds


async def gridfs_upload(bucket: AsyncGridFSBucket, size: int, seed: bytes, pids: dict[str, int]) -> tuple[Any, Measure]:
    with watch_cpu(pids) as cpu:
        started = time.perf_counter()
        grid_in = bucket.open_upload_stream("bench")
        for piece in pieces(size, seed):
            await grid_in.write(piece)
        await grid_in.close()
        seconds = time.perf_counter() - started
    return grid_in._id, Measure(seconds, cpu.spent)


async def gridfs_download(bucket: AsyncGridFSBucket, file_id: Any, size: int, pids: dict[str, int]) -> Measure:
    with watch_cpu(pids) as cpu:
        started = time.perf_counter()
        grid_out = await bucket.open_download_stream(file_id)
        received = 0
        while chunk := await grid_out.readchunk():
            received += len(chunk)
        seconds = time.perf_counter() - started
    assert received == size, (received, size)
    return Measure(seconds, cpu.spent)


async def api_upload(
    http: httpx.AsyncClient, key: BenchKey, session_id: str, *, size: int, seed: bytes, pids: dict[str, int], pid: int
) -> tuple[dict[str, Any], Measure]:
    with watch_memory(pid) as memory, watch_cpu(pids) as cpu:
        started = time.perf_counter()
        response = await http.post(f"/v1/sessions/{session_id}/blobs", headers=key.headers, content=apieces(size, seed))
        seconds = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"upload answered {response.status_code}: {response.text}")
    return response.json(), Measure(seconds, cpu.spent, memory.peak_kib)


async def api_download(
    http: httpx.AsyncClient, key: BenchKey, session_id: str, blob_id: str, *, size: int, pids: dict[str, int], pid: int
) -> Measure:
    with watch_memory(pid) as memory, watch_cpu(pids) as cpu:
        started = time.perf_counter()
        received = 0
        async with http.stream("GET", f"/v1/sessions/{session_id}/blobs/{blob_id}", headers=key.headers) as answer:
            async for data in answer.aiter_raw():
                received += len(data)
        seconds = time.perf_counter() - started
    assert answer.status_code == 200, answer.status_code
    assert received == size, (received, size)
    return Measure(seconds, cpu.spent, memory.peak_kib)


async def curl_download(
    base: str, key: BenchKey, session_id: str, blob_id: str, *, size: int, pids: dict[str, int], pid: int
) -> Measure:
    """The same GET read by ``curl -o /dev/null``: a client that costs next to nothing, so what is left is the
    service's (and mongod's) share. Its own CPU is read from the child's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    headers = [arg for name, value in key.headers.items() for arg in ("-H", f"{name}: {value}")]
    with watch_memory(pid) as memory, watch_cpu(pids) as cpu:
        started = time.perf_counter()
        curl = await asyncio.create_subprocess_exec(
            CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *headers,
            f"{base}/v1/sessions/{session_id}/blobs/{blob_id}",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await curl.communicate()
        seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, received = out.decode().split()
    assert (status, int(received)) == ("200", size), out
    spent = {**cpu.spent, "client": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}
    return Measure(seconds, spent, memory.peak_kib)


# The run -------------------------------------------------------------------------------------------------------


def _expected_sha256(size: int, seed: bytes) -> str:
    import hashlib  # noqa: PLC0415 - only the check needs it

    digest = hashlib.sha256()
    for piece in pieces(size, seed):
        digest.update(piece)
    return digest.hexdigest()


async def _session(http: httpx.AsyncClient, key: BenchKey) -> str:
    response = await http.post("/v1/sessions", headers=key.headers, json={"agent_type": "bench"})
    response.raise_for_status()
    return str(response.json()["session_id"])


async def run(url: str, key: BenchKey, base: str, *, service_pid: int, mongod_pid: int, size: int, rounds: int) -> None:
    seed = os.urandom(PIECE)
    expected = _expected_sha256(size, seed)
    pids = {"service": service_pid, "mongod": mongod_pid, "client": os.getpid()}
    client = async_client(url)
    bucket = AsyncGridFSBucket(client["bench"], bucket_name="ref")
    results: dict[str, list[Measure]] = {
        "api up": [],
        "api down": [],
        "curl down": [],
        "gridfs up": [],
        "gridfs down": [],
    }
    try:
        async with httpx.AsyncClient(base_url=base, timeout=600) as http:
            # Warm-up: connections, imports and the first allocations of both sides, then the idle RSS.
            warm = await _session(http, key)
            blob, _ = await api_upload(http, key, warm, size=8 * MIB, seed=seed, pids=pids, pid=service_pid)
            await api_download(http, key, warm, blob["blob_id"], size=8 * MIB, pids=pids, pid=service_pid)
            file_id, _ = await gridfs_upload(bucket, 8 * MIB, seed, pids)
            await gridfs_download(bucket, file_id, 8 * MIB, pids)
            await bucket.delete(file_id)
            await http.delete(f"/v1/sessions/{warm}/blobs/{blob['blob_id']}", headers=key.headers)
            await asyncio.sleep(1)
            idle_kib = _status_kib(service_pid, "VmRSS")

            for round_number in range(rounds):
                sides: list[Callable[[], Any]] = []

                async def api_side() -> None:
                    sid = await _session(http, key)
                    stored, up = await api_upload(http, key, sid, size=size, seed=seed, pids=pids, pid=service_pid)
                    if stored["sha256"] != expected or stored["size"] != size:
                        raise SystemExit(f"the service stored something else: {stored}")
                    down = await api_download(http, key, sid, stored["blob_id"], size=size, pids=pids, pid=service_pid)
                    curl = await curl_download(base, key, sid, stored["blob_id"], size=size, pids=pids, pid=service_pid)
                    results["api up"].append(up)
                    results["api down"].append(down)
                    results["curl down"].append(curl)
                    await http.delete(f"/v1/sessions/{sid}/blobs/{stored['blob_id']}", headers=key.headers)

                async def gridfs_side() -> None:
                    file_id, up = await gridfs_upload(bucket, size, seed, pids)
                    down = await gridfs_download(bucket, file_id, size, pids)
                    results["gridfs up"].append(up)
                    results["gridfs down"].append(down)
                    await bucket.delete(file_id)

                sides = [gridfs_side, api_side] if round_number % 2 == 0 else [api_side, gridfs_side]
                for side in sides:
                    await side()
                print(f"round {round_number + 1}/{rounds} done", flush=True)
    finally:
        await client.close()
    report(results, size, idle_kib)


def report(results: dict[str, list[Measure]], size: int, idle_kib: int) -> None:
    def rate(name: str) -> float:
        return median([m.mib_per_second(size) for m in results[name]])

    print()
    print(f"{size // MIB} MiB blob, {len(results['api up'])} rounds (median MiB/s; each round's figures below)")
    print(
        "| direction | client | API MiB/s | GridFS MiB/s | ratio | goal ≥ 0.7 | service peak RSS above idle "
        "| goal < 64 MiB |"
    )
    print("|---|---|---:|---:|---:|---|---:|---|")
    rows = (("upload", "httpx", "api up", "gridfs up"), ("download", "httpx", "api down", "gridfs down"))
    rows += (("download", "curl", "curl down", "gridfs down"),)
    for label, client, name, reference in rows:
        api, ref = rate(name), rate(reference)
        peak = max(m.peak_kib or 0 for m in results[name])
        above = (peak - idle_kib) / 1024
        print(
            f"| {label} | {client} | {api:.0f} | {ref:.0f} | {api / ref:.2f} | "
            f"{'ok' if api / ref >= GOAL_RATIO else 'MISS'} | {above:.1f} MiB "
            f"| {'ok' if above < GOAL_RSS_MIB else 'MISS'} |"
        )
    print(f"\nservice idle RSS {idle_kib / 1024:.1f} MiB")
    print("\nper call: seconds, MiB/s, CPU seconds (service / mongod / this process)")
    for name, measures in results.items():
        for m in measures:
            cpu = " / ".join(f"{m.cpu.get(p, 0):.2f}" for p in ("service", "mongod", "client"))
            peak = f", service peak RSS {m.peak_kib / 1024:.1f} MiB" if m.peak_kib else ""
            print(f"  {name:12s} {m.seconds:6.2f} s {m.mib_per_second(size):6.0f} MiB/s  cpu {cpu}{peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="blob size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="API/GridFS pairs, alternating which goes first")
    args = parser.parse_args()
    size = args.mib * MIB
    with bench_server("bench-blobs") as server:
        key = asyncio.run(create_key(server.url))
        print(machine(server.url))
        with serve(server.url, max_session_bytes=0, max_blob_bytes=size) as service:
            asyncio.run(
                run(
                    server.url,
                    key,
                    service.base,
                    service_pid=service.pid,
                    mongod_pid=server.pid,
                    size=size,
                    rounds=args.rounds,
                )
            )


if __name__ == "__main__":
    main()
