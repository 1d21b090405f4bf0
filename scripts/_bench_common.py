"""What the benchmark scripts share: a bundled mongod of their own, the service in a subprocess, a workspace key.

    with bench_server("bench-appends") as server:             # mongod on a temporary directory, stopped after
        key = asyncio.run(create_key(server.url, DATABASE))    # workspace "bench" and one API key
        with serve(server.url, DATABASE, workers=2) as service:  # handoff serve on a free loopback port, /readyz ok
            httpx.get(f"{service.base}/v1/sessions", headers=key.headers)

Everything runs on this machine, against one server, so the service and its reference are measured side by side.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from handoff.config import Settings
from handoff.db import MongoClient as AsyncClient
from handoff.db import create_client, init_database
from handoff.localdb import MongodProcess, free_port, start_mongod
from handoff.workspaces import service as workspaces

DATABASE = "bench"
READY_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class BenchKey:
    """The workspace the benchmark writes to and the API key that reaches it."""

    workspace_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@contextmanager
def bench_server(prefix: str) -> Iterator[MongodProcess]:
    """A bundled mongod (replica set of one, default settings) on a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        server = start_mongod(Path(tmp) / "db")
        try:
            yield server
        finally:
            server.stop()


def async_client(url: str, database: str = DATABASE) -> AsyncClient:
    """A client with the service's own durability settings (w=majority, retryable writes)."""
    return create_client(url, Settings(mongodb_url=url, database=database))


async def create_key(url: str, database: str = DATABASE) -> BenchKey:
    """Create the indexes, a workspace and an API key through the service's own code."""
    client = async_client(url, database)
    try:
        await init_database(client, database)
        workspace = await workspaces.create_workspace("bench")
        _, secret = await workspaces.create_api_key("bench", name="bench")
        return BenchKey(workspace.workspace_id, secret)
    finally:
        await client.close()


@dataclass(frozen=True)
class Service:
    """A running ``handoff serve``: where it answers and its process id (the parent of any workers)."""

    base: str
    pid: int


def _die_with_parent() -> None:
    """Pre-exec hook: the service dies with the script, even if the script is killed outright."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@contextmanager
def serve(
    url: str,
    database: str = DATABASE,
    *,
    workers: int = 1,
    log_level: str = "WARNING",
    log: Path | None = None,
    **settings: object,
) -> Iterator[Service]:
    """Run ``handoff serve`` on a free loopback port until the block ends; yields it once /readyz answers ok.

    ``settings`` become ``HANDOFF_<NAME>`` variables; the service's output goes to ``log`` when given (its
    errors are shown if it fails to start either way).
    """
    port = free_port()
    env = {**os.environ, "HANDOFF_MONGODB_URL": url, "HANDOFF_DATABASE": database, "HANDOFF_LOG_LEVEL": log_level}
    env |= {f"HANDOFF_{name.upper()}": str(value) for name, value in settings.items()}
    argv = [sys.executable, "-m", "handoff.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    with log.open("w+b") if log else tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=output if log else subprocess.DEVNULL,
            stderr=output,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl must run in the child
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, output)
            yield Service(base, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"handoff serve exited with {process.returncode}:\n{log.read().decode(errors='replace')}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"handoff serve did not answer /readyz within {READY_TIMEOUT_SECONDS} s")


def ensure_wrk() -> str:
    """The ``wrk`` binary, installed from Debian (apt-get) when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk (the HTTP load generator) is not installed; installing it from Debian: apt-get install -y wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
        done = subprocess.run([*sudo, *argv], check=False, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(argv)}` failed (exit {done.returncode}); install wrk and run again")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still not on PATH after apt-get install wrk")
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    wanted = {pid}
    for entry in sorted(Path("/proc").iterdir(), key=lambda path: int(path.name) if path.name.isdigit() else -1):
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        this, parent = int(entry.name), int(fields[1])
        if this in wanted or parent in wanted:
            wanted.add(this)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted samples."""
    ordered = sorted(samples)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def machine(url: str) -> str:
    """One line: CPUs, load, MongoDB version, Python, date."""
    client: MongoClient[dict[str, Any]]
    with MongoClient(url) as client:
        version = client.server_info()["version"]
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average {load}, "
        f"MongoDB {version} (bundled, replica set of one), Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
