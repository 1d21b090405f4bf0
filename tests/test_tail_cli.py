"""``handoff tail`` as its users run it: a separate process on the test's database (no service, no key), following
events written while it runs, ``--json`` and the rich lines, the session's ``404``, and Ctrl-C ending it cleanly.

A process rather than ``CliRunner``: the command opens the database and binds Beanie's documents for its own
length, which in this process would take them from the test's own client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.sessions import service
from handoff.sessions.schemas import ActionCreate, SessionCreate
from handoff.workspaces.schemas import Principal
from tests.factories import Tenant

pytestmark = pytest.mark.timeout(90)
HANDOFF = str(Path(sys.executable).parent / "handoff")


@pytest.fixture
def settings(mongod: MongodProcess, database: MongoDatabase) -> Settings:
    return Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"))


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT's default disposition in the tail, as a command run in the foreground has it. A test run started in
    the background of a non-interactive shell (``pytest ... &``, many CI runners) has SIGINT ignored, which its
    children inherit; Python then installs no KeyboardInterrupt, the Ctrl-C below did nothing, and the wait for
    the tail to exit timed out (3 of 3 runs so, 0 of 3 in the foreground)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@asynccontextmanager
async def tail(settings: Settings, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "HANDOFF_MONGODB_URL": settings.mongodb_url or "", "HANDOFF_DATABASE": settings.database}
    env["COLUMNS"] = "200"
    process = await asyncio.create_subprocess_exec(
        HANDOFF,
        "tail",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_as_at_a_terminal,  # signal dispositions are set in the child
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def next_line(process: asyncio.subprocess.Process, write: object = None) -> str:
    """The next line the tail prints; until one comes, ``write()`` (if given) appends a warm-up entry."""
    assert process.stdout is not None
    while True:
        try:
            raw = await asyncio.wait_for(process.stdout.readline(), 0.3)
        except TimeoutError:
            if write is not None:
                await write()  # type: ignore[operator]
            continue
        assert raw, (await process.stderr.read()).decode() if process.stderr else "no output"
        return raw.decode().rstrip("\n")


async def test_tail_json_follows_one_session_and_ends_on_ctrl_c(settings: Settings, tenant: Tenant) -> None:
    ws = tenant.workspace.workspace_id
    who = Principal(ws, tenant.key_id)
    sid = (await service.create_session(who, SessionCreate(agent_type="coder"), settings=settings)).session.session_id
    other = (await service.create_session(who, SessionCreate(), settings=settings)).session
    warm = 0

    async def warm_up() -> None:
        nonlocal warm
        warm += 1
        await service.log_action(ws, sid, ActionCreate(action="warm-up", id=f"w{warm}"), settings=settings)

    async with tail(settings, sid, "--workspace", "acme", "--json", "--types", "work_log.appended") as process:
        first = json.loads(await next_line(process, warm_up))  # the tail is live from here on
        await service.log_action(ws, other.session_id, ActionCreate(action="elsewhere"), settings=settings)
        await service.pause(ws, sid)
        await service.log_action(ws, sid, ActionCreate(action="after", id="a1"), settings=settings)
        lines = [json.loads(await next_line(process))]
        while lines[-1]["entry"]["id"] != "a1":
            lines.append(json.loads(await next_line(process)))
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stderr is not None
        assert b"Traceback" not in await process.stderr.read()
    events = [first, *lines]
    assert all(e["type"] == "work_log.appended" and e["session_id"] == sid and e["id"] for e in events)
    ids = [e["entry"]["id"] for e in events]
    assert ids == [f"w{n}" for n in range(int(ids[0][1:]), warm + 1)] + ["a1"]  # once each, in order


async def test_tail_prints_rich_lines_and_refuses_an_unknown_session(settings: Settings, tenant: Tenant) -> None:
    ws = tenant.workspace.workspace_id

    async def create() -> None:
        await service.create_session(
            Principal(ws, tenant.key_id), SessionCreate(agent_type="reviewer"), settings=settings
        )

    async with tail(settings, "--max-events", "1") as process:  # the only workspace: no --workspace needed
        text = await next_line(process, create)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert "session.created" in text
    assert "agent reviewer" in text

    async with tail(settings, "nope", "--workspace", "acme") as process:
        assert await asyncio.wait_for(process.wait(), 30) == 1
        assert process.stderr is not None
        assert "not found" in (await process.stderr.read()).decode()
