"""A real ``handoff serve`` on a free port, on this run's mongod, for tests that go over the network.

The framework adapters are proven against the service as their users run it: a separate process, a workspace
and key made by the CLI, HTTP through ``handoff.client``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from handoff.localdb import MongodProcess

HANDOFF = str(Path(sys.executable).parent / "handoff")


@dataclass(frozen=True)
class LiveService:
    url: str
    api_key: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_service(mongod: MongodProcess, data_dir: Path) -> Iterator[LiveService]:
    """Start the service on a database of its own, yield its URL and a key, stop it and drop the database."""
    database = f"live_{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "HANDOFF_MONGODB_URL": mongod.url,
        "HANDOFF_DATABASE": database,
        "HANDOFF_DATA_DIR": str(data_dir),
        "HANDOFF_LOG_LEVEL": "WARNING",
    }
    subprocess.run([HANDOFF, "workspaces", "create", "live"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [HANDOFF, "keys", "create", "--workspace", "live", "--name", "adapters"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([HANDOFF, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"handoff serve did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.2)
        yield LiveService(url=url, api_key=key, env={"HANDOFF_URL": url, "HANDOFF_API_KEY": key})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr:
            server.stderr.close()
        subprocess.run(
            [sys.executable, "-c", f"import pymongo; pymongo.MongoClient({mongod.url!r}).drop_database({database!r})"],
            check=False,
        )
