"""A real ``handoff serve`` for the tests that need processes: workers, signals, a restart.

The service runs as ``python -m handoff.cli serve`` on a free loopback port against the test's own database,
with ``HANDOFF_*`` settings from the caller; it dies with the test process (``PR_SET_PDEATHSIG``) and is
stopped with SIGTERM, like an operator would. :meth:`Served.workers` finds uvicorn's worker processes (the
supervisor's spawned children) so a test can signal one of them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from handoff.localdb import free_port

READY_TIMEOUT_SECONDS = 60


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@dataclass
class Served:
    base: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]
    final_log: str | None = None  # everything it wrote, once it has exited

    def workers(self) -> list[int]:
        """The pids of uvicorn's worker processes (not multiprocessing's resource tracker)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = []
        for pid in children:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in argv and b"resource_tracker" not in argv:
                found.append(int(pid))
        return sorted(found)

    def log(self) -> str:
        """What the service wrote so far (all of it, after the block that served it)."""
        if self.final_log is not None:
            return self.final_log
        self.output.seek(0)
        return self.output.read().decode(errors="replace")


def wait_ready(base: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``/readyz`` answers 200."""
    wait_ready_path(base, "/readyz", process)


def wait_ready_path(base: str, path: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until the server answers ``path`` with 200 (its response is not read: a stream's headers suffice)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            with httpx.stream("GET", f"{base}{path}", timeout=2) as response:
                if response.status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base}{path} did not answer within {READY_TIMEOUT_SECONDS} s")


@contextmanager
def serve(mongodb_url: str, database: str, *, workers: int = 1, **settings: object) -> Iterator[Served]:
    """``handoff serve`` until the block ends (then SIGTERM, and a wait for it to exit)."""
    port = free_port()
    env = {**os.environ, "HANDOFF_MONGODB_URL": mongodb_url, "HANDOFF_DATABASE": database}
    env |= {f"HANDOFF_{name.upper()}": str(value) for name, value in settings.items()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = [sys.executable, "-m", "handoff.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [*argv, "--workers", str(workers)],
            env=env,
            stdout=output,
            stderr=output,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl must run in the child
        )
        served = Served(f"http://127.0.0.1:{port}", process, output)
        try:
            try:
                wait_ready(served.base, process)
            except AssertionError as exc:
                raise AssertionError(f"{exc}:\n{served.log()[-4000:]}") from None
            yield served
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            served.final_log = served.log()
