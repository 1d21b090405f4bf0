"""A ``Runner`` conversation of several turns on ``HandoffSession`` (a scripted model, no network), resumed from
handoff by a second process that sees the whole history, and read back as a person reads it."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid

import anyio
from agents import Agent, Runner
from agents.testing import ScriptedModel
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from handoff.client import AsyncHandoffClient
from handoff.integrations.openai_agents import HandoffSession
from tests.live_service import LiveService


def reply(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="1",
        type="message",
        role="assistant",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[], logprobs=[])],
        status="completed",
    )


SECOND_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from agents import Agent, Runner
    from agents.testing import ScriptedModel
    from tests.integrations.test_openai_agents_runner import reply
    from handoff.integrations.openai_agents import HandoffSession

    async def main():
        model = ScriptedModel()
        model.enqueue([reply("You asked about the login bug, then the tests.")])
        session = HandoffSession(sys.argv[1])
        result = await Runner.run(Agent(name="coder", model=model), "What did I ask so far?", session=session)
        seen = [item.get("content") for item in model.first_call.input if isinstance(item, dict)]
        print(result.final_output)
        print(seen)

    asyncio.run(main())
    """
)


async def test_runner_turns_resumed_in_a_second_process(live_service: LiveService) -> None:
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    model = ScriptedModel()
    agent = Agent(name="coder", model=model)
    session = HandoffSession(chat, base_url=live_service.url, api_key=live_service.api_key)
    for question, answer in [("Fix the login bug", "Found it in auth.py"), ("Run the tests", "All green")]:
        model.enqueue([reply(answer)])
        result = await Runner.run(agent, question, session=session)
        assert result.final_output == answer
    assert len(await session.get_items()) == 4

    with anyio.fail_after(120):
        resumed = await anyio.run_process(
            [sys.executable, "-c", SECOND_PROCESS, chat], env={**os.environ, **live_service.env}, check=True
        )
    final, seen = resumed.stdout.decode().strip().splitlines()[-2:]
    assert final == "You asked about the login bug, then the tests."
    assert "'Fix the login bug'" in seen
    assert "'Run the tests'" in seen
    assert "'What did I ask so far?'" in seen

    items = await session.get_items()
    assert len(items) == 6
    assert await session.get_items(limit=2) == items[-2:]
    async with AsyncHandoffClient(live_service.url, live_service.api_key) as client:
        found = (await client.list_sessions(external_id=f"openai-agents:{chat}")).items[0]
        log = await client.get_work_log(found.session_id)
        messages = [entry.message for entry in log.items]  # type: ignore[union-attr]
        assert messages[:2] == ["user: Fix the login bug", "assistant: Found it in auth.py"]


async def test_a_large_item_is_one_blob_removed_with_it(live_service: LiveService) -> None:
    """An item over 64 KiB is uploaded as one blob its entry names; popping or clearing removes the blob too."""
    session = HandoffSession(f"big-{uuid.uuid4().hex[:8]}", base_url=live_service.url, api_key=live_service.api_key)
    big = {"role": "user", "content": "y" * 200_000}
    await session.add_items([{"role": "user", "content": "small"}, big])  # type: ignore[list-item]
    assert await session.get_items() == [{"role": "user", "content": "small"}, big]
    async with AsyncHandoffClient(live_service.url, live_service.api_key) as client:
        found = (await client.list_sessions(external_id=f"openai-agents:{session.session_id}")).items[0]
        assert (await client.list_blobs(found.session_id)).total == 1
        assert await session.pop_item() == big
        assert (await client.list_blobs(found.session_id)).total == 0
        await session.add_items([big])  # type: ignore[list-item]
        await session.clear_session()
        assert (await client.list_blobs(found.session_id)).total == 0
        assert await session.get_items() == []
