"""Graceful shutdown of a stream: SIGTERM ends an idle event stream at once with a ``retry:`` hint, and the server
exits without waiting out its graceful-shutdown timeout (the stream would otherwise hold it for the whole of it).

The server is uvicorn in a process of its own running ``tests.stream_app`` with a graceful-shutdown timeout of
60 s; the client's read timeout (15 s) is far below that, so a stream that waited for the timeout fails the test.
The rolling restart of real workers under load is in ``test_ops_workers``. :func:`until_shutdown` itself is also
tested in-process: a stream whose client leaves while it waits for its next item still closes its source.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from handoff.localdb import free_port
from handoff.ops.shutdown import RETRY_AFTER_SHUTDOWN_MS, ShutdownSignal, until_shutdown
from tests.serving import wait_ready_path

pytestmark = pytest.mark.timeout(120)


def test_sigterm_ends_an_idle_stream_with_a_retry_hint() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.stream_app:app", "--port", str(port)]
    server = subprocess.Popen([*argv, "--timeout-graceful-shutdown", "60"], stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready_path(base, "/stream", server)
        lines: list[str] = []
        with httpx.stream("GET", f"{base}/stream", timeout=15) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if line == "data: tick 1":  # the stream is idle from here on
                    server.send_signal(signal.SIGTERM)
        assert ": server restarting" in lines, lines
        assert lines[-2] == f"retry: {RETRY_AFTER_SHUTDOWN_MS}", lines
        assert server.wait(15) == -signal.SIGTERM  # uvicorn re-raises the signal once it has shut down
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()


async def test_a_stream_cancelled_while_it_waits_closes_its_source() -> None:
    """The client leaves while the source is idle inside its read: that read is cancelled *before* the source is
    closed (an async generator cannot be closed while it runs: ``aclose()`` would raise ``RuntimeError``, the
    source's ``finally`` would never run and its pending read would be left to the garbage collector)."""
    waiting, closed = asyncio.Event(), asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "first"
            waiting.set()
            await asyncio.Event().wait()  # idle: no second item ever comes
            yield "never"
        finally:
            closed.set()

    received: list[str] = []

    async def client() -> None:
        async for item in until_shutdown(source(), ShutdownSignal()):
            received.append(item)

    task = asyncio.create_task(client())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # the cancellation itself, not a RuntimeError from aclose()
        await task
    assert received == ["first"]
    assert closed.is_set()
