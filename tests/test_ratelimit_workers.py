"""The rate limit of a key is one budget across the workers of ``handoff serve --workers 2``.

A real ``handoff serve --workers 2`` runs against the test mongod. The test holds two keep-alive connections that
it has seen (through ``/proc``) land on different workers, and spends a key's burst alternating between them:
exactly the burst is admitted in total. Counted per worker, twice the burst would be.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess, free_port
from tests.factories import Tenant

BURST = 4
READY_SECONDS = 60
MAX_CONNECTIONS = 60  # connections opened at most to find one on each worker


@contextmanager
def handoff_serve(
    mongod: MongodProcess, database: str, *, workers: int, **settings: object
) -> Iterator[tuple[int, list[int]]]:
    """``handoff serve`` on a free port until the block ends; yields the port and the workers' pids once they run."""
    port = free_port()
    env = {**os.environ, "HANDOFF_MONGODB_URL": mongod.url, "HANDOFF_DATABASE": database}
    env |= {f"HANDOFF_{name.upper()}": str(value) for name, value in settings.items()}
    argv = [sys.executable, "-m", "handoff.cli", "serve", "--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=output)
        try:
            _wait_healthy(port, process, output)
            yield port, _workers(process.pid, workers)
        finally:
            process.terminate()
            process.wait(30)


def _wait_healthy(port: int, process: subprocess.Popen[bytes], output: object) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"handoff serve exited with {process.returncode}"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            connection.close()
    raise AssertionError(f"handoff serve did not answer on port {port} within {READY_SECONDS} s")


def _workers(pid: int, count: int) -> list[int]:
    """The processes ``handoff serve`` started (its workers, and maybe multiprocessing's resource tracker)."""
    deadline = time.monotonic() + READY_SECONDS
    while len(found := _children(pid)) < count:
        assert time.monotonic() < deadline, f"handoff serve started {len(found)} of {count} workers"
        time.sleep(0.1)
    return found


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _serving_pid(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The process holding the server's end of the connection from ``client_port`` (from /proc/net/tcp)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if str(descriptor.readlink()) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _connections_to_two_workers(port: int, workers: list[int]) -> list[http.client.HTTPConnection]:
    """Two keep-alive connections served by two different workers (the other connections are closed)."""
    chosen: dict[int, http.client.HTTPConnection] = {}
    for _ in range(MAX_CONNECTIONS):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")  # not counted: no key
        connection.getresponse().read()
        worker = _serving_pid(port, connection.sock.getsockname()[1], workers)
        if worker is not None and worker not in chosen:
            chosen[worker] = connection
            if len(chosen) == 2:
                return list(chosen.values())
        else:
            connection.close()
    for connection in chosen.values():
        connection.close()
    raise AssertionError(f"{MAX_CONNECTIONS} connections did not reach two workers")


def _get(connection: http.client.HTTPConnection, tenant: Tenant) -> http.client.HTTPResponse:
    connection.request("GET", "/v1/sessions", headers=tenant.headers)
    response = connection.getresponse()
    response.read()
    return response


async def test_two_workers_share_one_budget_per_key(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    serving = handoff_serve(mongod, database.name, workers=2, rate_limit=0.001, rate_limit_burst=BURST)
    with serving as (port, workers):
        first, second = _connections_to_two_workers(port, workers)
        try:
            answers = [_get(connection, tenant) for _ in range(BURST) for connection in (first, second)]
        finally:
            first.close()
            second.close()

    statuses = [response.status for response in answers]
    assert statuses == [200] * BURST + [429] * BURST  # alternating: each worker admitted two and refused two
    assert [response.getheader("RateLimit-Remaining") for response in answers[:BURST]] == ["3", "2", "1", "0"]
    for refused in answers[BURST:]:
        assert refused.getheader("Retry-After") == "1000"
        assert refused.getheader("RateLimit-Limit") == str(BURST)
        assert refused.getheader("RateLimit-Remaining") == "0"
        assert refused.getheader("Content-Type") == "application/problem+json"
