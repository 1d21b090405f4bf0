"""The Claude Agent SDK's own SessionStore conformance suite, and what it does not cover, against a live service.

``claude_agent_sdk.testing.run_session_store_conformance`` (14 contracts, in the SDK's wheel) runs unchanged
with every optional method present, each contract on a store of its own prefix. The other tests are what a user
relies on beyond it: a transcript past 5 MiB (lines past the entry and request bounds) loaded back intact,
re-sent batches stored once, two writers racing on one session's summary, a stale summary left out, and
transcripts that read well in handoff.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from claude_agent_sdk import fold_session_summary
from claude_agent_sdk.testing import run_session_store_conformance
from claude_agent_sdk.types import SessionKey

from handoff.client import AsyncHandoffClient
from handoff.integrations.claude_agent_sdk import HandoffSessionStore
from tests.live_service import LiveService

KEY: SessionKey = {"project_key": "-home-dev-shop", "session_id": "4f1c2b9e-0d7a-4a51-9e57-2b1e0c6f9a11"}


@pytest.fixture
async def handoff(live_service: LiveService) -> AsyncIterator[AsyncHandoffClient]:
    async with AsyncHandoffClient(live_service.url, live_service.api_key) as client:
        yield client


def store(live_service: LiveService, prefix: str | None = None) -> HandoffSessionStore:
    """A store of a prefix of its own, so tests sharing the live workspace never see each other's transcripts."""
    return HandoffSessionStore(
        base_url=live_service.url, api_key=live_service.api_key, prefix=prefix or f"t-{uuid.uuid4().hex[:12]}"
    )


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "user", "uuid": str(uuid.uuid4()), "message": {"role": "user", "content": text}, **extra}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "assistant", "uuid": str(uuid.uuid4()), "message": {"role": "assistant", "content": list(blocks)}}


async def handoff_session(client: AsyncHandoffClient, store: HandoffSessionStore, key: SessionKey) -> str:
    """The handoff session of a main transcript, found as anyone would: the project's listing by agent type."""
    page = await client.list_sessions(agent_type=f"claude-agent-sdk:{store.prefix}/{key['project_key']}")
    (session,) = [
        s for s in page.items if (s.context_summary or {})["claude_agent_sdk"]["session_id"] == key["session_id"]
    ]
    return session.session_id


async def test_the_sdk_conformance_suite_passes_with_every_optional_method(live_service: LiveService) -> None:
    made: list[HandoffSessionStore] = []

    def make_store() -> HandoffSessionStore:
        made.append(store(live_service))
        return made[-1]

    await run_session_store_conformance(make_store)

    # One store per contract plus the suite's probe: the 14 contracts all ran, none skipped as absent.
    assert len(made) == 15


async def test_a_transcript_past_five_mib_is_loaded_back_intact(
    live_service: LiveService, handoff: AsyncHandoffClient
) -> None:
    transcript_store = store(live_service)
    tool_output = "".join(chr(0x20 + i % 0x5F) for i in range(2_000_000))  # one line past the 1 MiB request body
    lines = [user("Refactor the checkout module, keep the API")]
    for n in range(40):
        lines.append(assistant({"type": "tool_use", "id": f"tu{n}", "name": "Read", "input": {"path": f"f{n}.py"}}))
        lines.append(user("", message={"role": "user", "content": [{"type": "tool_result", "content": "x" * 100_000}]}))
    lines.append(assistant({"type": "text", "text": 'Done: €, ✓, 漢字, and "quotes" survive'}))
    lines.append({"type": "summary", "uuid": str(uuid.uuid4()), "output": tool_output, "big": 2**70, "$k": {"a.b": 1}})
    lines.append({"type": "custom-title", "customTitle": "checkout refactor"})  # no uuid: stored as sent
    size = sum(len(json.dumps(line).encode()) + 1 for line in lines)  # the JSONL file the CLI writes
    assert size > 5 * 1024 * 1024

    for start in range(0, len(lines), 25):  # as the SDK flushes: a batch at a time
        await transcript_store.append(KEY, lines[start : start + 25])

    assert await transcript_store.load(KEY) == lines
    # The lines past an entry's 64 KiB are blobs of the session; the others are inline.
    session_id = await handoff_session(handoff, transcript_store, KEY)
    blobs = await handoff.list_blobs(session_id)
    assert blobs.total == 41


async def test_a_resent_batch_is_stored_once_and_lines_without_uuid_as_sent(live_service: LiveService) -> None:
    transcript_store = store(live_service)
    batch = [user("first"), {"type": "tag", "tag": "wip"}, assistant({"type": "text", "text": "second"})]

    await transcript_store.append(KEY, batch)
    await transcript_store.append(KEY, batch)

    assert await transcript_store.load(KEY) == [batch[0], batch[1], batch[2], batch[1]]
    # Another store (another process) sees the same transcript: nothing is kept only in memory.
    assert await store(live_service, transcript_store.prefix).load(KEY) == [batch[0], batch[1], batch[2], batch[1]]


async def test_two_writers_racing_on_one_session_fold_every_batch_into_its_summary(live_service: LiveService) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    writers = [store(live_service, prefix) for _ in range(2)]
    batches = [
        [{"type": "x", "uuid": f"u{w}-{n}", "customTitle": f"title {w}-{n}"}] for w in range(2) for n in range(6)
    ]

    async def write(writer: HandoffSessionStore, mine: list[list[dict[str, Any]]]) -> None:
        for batch in mine:
            await writer.append(KEY, batch)

    await asyncio.gather(write(writers[0], batches[:6]), write(writers[1], batches[6:]))

    loaded = await writers[0].load(KEY)
    assert loaded is not None
    assert sorted(line["uuid"] for line in loaded) == sorted(b[0]["uuid"] for b in batches)
    (summary,) = await store(live_service, prefix).list_session_summaries(KEY["project_key"])
    # Every batch was folded exactly once, in the order the batches were stored.
    expected = None
    for line in loaded:
        expected = fold_session_summary(expected, KEY, [line])
    assert expected is not None
    assert summary["data"] == expected["data"]


async def test_a_summary_left_behind_is_left_out_until_the_next_append_repairs_it(
    live_service: LiveService, handoff: AsyncHandoffClient
) -> None:
    transcript_store = store(live_service)
    await transcript_store.append(KEY, [user("hello")])
    assert len(await transcript_store.list_session_summaries(KEY["project_key"])) == 1
    # A writer that claimed version 2 in its batch and died before copying it into the session's context.
    session_id = await handoff_session(handoff, transcript_store, KEY)
    await handoff.log_work_batch(
        session_id,
        [{"id": "summary.000000002", "type": "checkpoint", "message": "m", "data": {"version": 2, "summary": "{}"}}],
    )

    assert await transcript_store.list_session_summaries(KEY["project_key"]) == []
    assert [s["session_id"] for s in await transcript_store.list_sessions(KEY["project_key"])] == [KEY["session_id"]]

    await store(live_service, transcript_store.prefix).append(KEY, [{"type": "x", "customTitle": "after"}])
    (summary,) = await transcript_store.list_session_summaries(KEY["project_key"])
    assert summary["data"]["custom_title"] == "after"


async def test_transcripts_read_well_in_handoff(live_service: LiveService, handoff: AsyncHandoffClient) -> None:
    transcript_store = store(live_service)
    sub: SessionKey = {**KEY, "subpath": "subagents/agent-7"}
    await transcript_store.append(
        KEY,
        [
            user("fix the login bug"),
            assistant({"type": "text", "text": "Looking at auth.py"}, {"type": "tool_use", "name": "Read"}),
            {"type": "assistant", "uuid": "e1", "isApiErrorMessage": True, "message": {"content": "overloaded"}},
        ],
    )
    await transcript_store.append(sub, [user("search for the session cookie")])

    session_id = await handoff_session(handoff, transcript_store, KEY)
    log = await handoff.get_work_log(session_id)
    assert [(e.type, getattr(e, "message", None)) for e in log.items] == [
        ("info", "user: fix the login bug"),
        ("info", "assistant: Looking at auth.py tool Read"),
        ("error", "assistant: overloaded"),
        ("checkpoint", "transcript mirrored: 3 more line(s), summary version 1"),
    ]
    session = await handoff.get_session(session_id)
    assert session.agent_type == f"claude-agent-sdk:{transcript_store.prefix}/{KEY['project_key']}"
    assert session.context_summary is not None
    assert session.context_summary["claude_agent_sdk"]["session_id"] == KEY["session_id"]
    assert session.error_count == 1
    assert await transcript_store.list_subkeys(KEY) == ["subagents/agent-7"]
