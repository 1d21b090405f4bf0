"""What one request costs here, from the floor up: a direct MongoDB write, a bare Litestar round trip, an append.

    .venv/bin/python scripts/bench_request_floor.py                # 2,000 calls per side, 3 rounds, alternating
    .venv/bin/python scripts/bench_request_floor.py --calls 5000 --rounds 5

The LangGraph saver (``scripts/bench_langgraph.py``) makes two HTTP requests a step where the official saver makes
two direct MongoDB writes; this script says how much of the gap no service code can close. One caller, sequential
calls, as a sync LangGraph graph makes them, against one bundled mongod of its own:

* ``mongo update``: PyMongo's ``update_one`` upsert of a small document, what the official saver does per write;
* ``bare litestar, loop thread``: a ``POST`` of a small JSON body to a Litestar app with one route and nothing else
  (no auth, no middleware, no database), served by uvicorn as ``handoff serve`` is (uvloop, httptools), called
  through ``httpx.AsyncClient`` on an event loop thread from the calling thread: the saver's way;
* ``bare litestar, httpx sync``: the same server called with ``httpx.Client`` from the calling thread (no hop);
* ``handoff append, loop thread``: ``AsyncHandoffClient.log_work_batch`` of one entry on the loop thread, through
  ``handoff serve`` (one worker): the sync saver's request before it had a blocking twin;
* ``handoff append, blocking``: ``HandoffClient.log_work_batch`` from the calling thread: the sync saver's request
  now. Both append to one session, which grows past its first pages (its appends look the ids up in them).

Per side: the median time per call over the rounds, and CPU ms per call of this process, the server and mongod.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from litestar import Litestar, post
from pymongo import MongoClient

from _bench_common import Service, bench_server, cpu_seconds, create_key, machine, median, serve
from handoff.client import AsyncHandoffClient, HandoffClient
from handoff.localdb import free_port

T = TypeVar("T")
BODY = {"entries": [{"id": "x", "type": "info", "message": "a step", "data": {"value": "v" * 200}}]}


@post("/echo", status_code=200)
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "count": len(data)}


bare_app = Litestar(route_handlers=[echo], debug=False, logging_config=None)


@contextmanager
def bare_server() -> Iterator[Service]:
    """The one-route app under uvicorn in a subprocess, with the loop and HTTP parser ``handoff serve`` gets."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent), "bench_request_floor:bare_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready_bare(base, process)
            yield Service(base, process.pid)
        finally:
            process.terminate()
            process.wait(30)


def _wait_ready_bare(base: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"uvicorn exited with {process.returncode}")
        try:
            httpx.post(f"{base}/echo", json={}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the bare app did not answer")


class LoopThread:
    """An event loop on a thread, as ``HandoffCheckpointSaver``'s sync methods use one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


Side = tuple[Callable[[], None], int]  # one call, and the pid of the server it reaches (0: none)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_server("bench-floor") as mongod:
        key = asyncio.run(create_key(mongod.url))
        with serve(mongod.url) as service, bare_server() as bare, MongoClient(mongod.url) as mongo:
            runner = LoopThread()
            async_http = runner.run(_make(lambda: httpx.AsyncClient(base_url=bare.base)))
            sync_http = httpx.Client(base_url=bare.base)
            client = runner.run(_make(lambda: AsyncHandoffClient(service.base, key.secret)))
            session_id = runner.run(client.create_session(agent_type="bench")).session_id
            writes = mongo["bench_floor"]["writes"]

            def mongo_update() -> None:
                writes.update_one({"_id": uuid.uuid4().hex}, {"$set": BODY}, upsert=True)

            def bare_loop() -> None:
                runner.run(async_http.post("/echo", json=BODY)).raise_for_status()

            own_loop = asyncio.new_event_loop()
            own_http = own_loop.run_until_complete(_make(lambda: httpx.AsyncClient(base_url=bare.base)))

            def bare_own_loop() -> None:
                own_loop.run_until_complete(own_http.post("/echo", json=BODY)).raise_for_status()

            def bare_sync() -> None:
                sync_http.post("/echo", json=BODY).raise_for_status()

            def append() -> None:
                entry = {**BODY["entries"][0], "id": uuid.uuid4().hex}
                runner.run(client.log_work_batch(session_id, [entry]))

            blocking = HandoffClient(service.base, key.secret)

            def append_blocking() -> None:
                blocking.log_work_batch(session_id, [{**BODY["entries"][0], "id": uuid.uuid4().hex}])

            sides: dict[str, Side] = {
                "mongo update": (mongo_update, 0),
                "bare litestar, loop thread": (bare_loop, bare.pid),
                "bare litestar, caller's loop": (bare_own_loop, bare.pid),
                "bare litestar, httpx sync": (bare_sync, bare.pid),
                "handoff append, loop thread": (append, service.pid),
                "handoff append, blocking": (append_blocking, service.pid),
            }
            times: dict[str, list[float]] = {name: [] for name in sides}
            cpu: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
            for call, _ in sides.values():  # warm-up: connections, imports
                for _ in range(200):
                    call()
            for _ in range(args.rounds):
                for name, (call, pid) in sides.items():
                    before = (time.process_time(), cpu_seconds(pid) if pid else 0.0, cpu_seconds(mongod.pid))
                    started = time.perf_counter()
                    for _ in range(args.calls):
                        call()
                    times[name].append((time.perf_counter() - started) / args.calls)
                    after = (time.process_time(), cpu_seconds(pid) if pid else 0.0, cpu_seconds(mongod.pid))
                    cpu[name].append(tuple((b - a) * 1000 / args.calls for a, b in zip(before, after, strict=True)))
            runner.run(client.aclose())
            runner.run(async_http.aclose())
            sync_http.close()
            blocking.close()
            own_loop.run_until_complete(own_http.aclose())
            own_loop.close()
            runner.stop()
            print(machine(mongod.url))
            print(f"{'side':<30} {'ms/call':>8}   CPU ms/call: this process, server, mongod   (rounds)")
            for name, samples in times.items():
                spent = [median([c[i] for c in cpu[name]]) for i in range(3)]
                rounds = ", ".join(f"{sample * 1000:.3f}" for sample in samples)
                print(
                    f"{name:<30} {median(samples) * 1000:8.3f}   {spent[0]:.3f}, {spent[1]:.3f}, {spent[2]:.3f}"
                    f"   ({rounds})"
                )


async def _make(factory: Callable[[], T]) -> T:
    """An object made on the loop that will use it."""
    return factory()


if __name__ == "__main__":
    main()
