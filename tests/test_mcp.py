"""The MCP server through the SDK's own in-memory client: tools, schemas, effects in the database, errors.

The server is the one the service mounts at ``/mcp``, with its backend fixed to the domain services as one
API key's principal (``ServiceBackend``); one test runs the same tools over the Python client instead (the
``handoff mcp`` stdio configuration). ``test_mcp_http.py`` runs the handoff scenario over streamable HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from handoff.client import AsyncHandoffClient
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.mcp.backend import ServiceBackend
from handoff.mcp.server import TOOL_NAMES, build_server, fixed_backend
from handoff.workspaces import service as workspaces
from handoff.workspaces.schemas import Principal
from tests.factories import Tenant
from tests.test_client import held, running

ARGUMENTS = {
    "start_session": ["agent_type", "plan", "context_summary", "external_id"],
    "log_work": ["session_id", "message", "type", "data", "id", "blob_id"],
    "log_action": ["session_id", "action", "details", "id", "blob_id"],
    "record_artifact": ["session_id", "path", "action", "metadata", "id", "blob_id"],
    "attach_file": ["session_id", "path", "content", "action", "content_type", "metadata", "id"],
    "update_context": ["session_id", "context", "replace"],
    "handoff": ["session_id", "summary", "next_steps", "blockers", "context_for_next"],
    "get_handoff_context": ["session_id"],
    "get_replay_context": ["session_id"],
    "replay_session": ["session_id", "agent_type"],
    "complete_session": ["session_id", "summary"],
    "fail_session": ["session_id", "reason"],
    "list_waiting_handoffs": ["limit"],
}


async def principal_of(tenant: Tenant) -> Principal:
    return await workspaces.authenticate(tenant.secret)


@pytest.fixture
async def agent(tenant: Tenant, settings: Settings) -> AsyncIterator[Client]:
    """An MCP client on the service's tools, as the tenant's key."""
    backend = ServiceBackend(await principal_of(tenant), settings)
    async with held(Client(build_server(fixed_backend(backend)))) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    """Call a tool that must succeed; returns the result (text in ``content``, the schema in structured)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; returns the error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    return text_of(result)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def _doc(database: MongoDatabase, session_id: str) -> dict[str, Any]:
    found = await database["sessions"].find_one({"session_id": session_id})
    assert found is not None, session_id
    return found


async def run_handoff_scenario(agent_a: Client, agent_b: Client, database: MongoDatabase) -> str:
    """Agent A starts, logs, records an artifact and hands off; agent B finds it, replays, reads, completes.

    Returns the id of B's session; every step is checked in the database.
    """
    started = await call(agent_a, "start_session", agent_type="coder", context_summary={"goal": "fix login"})
    original = started.structured_content["session_id"]  # type: ignore[index]
    await call(agent_a, "log_action", session_id=original, action="ran pytest", details={"failed": 1})
    await call(agent_a, "log_work", session_id=original, message="Root cause: stale token", type="checkpoint")
    await call(agent_a, "log_work", session_id=original, message="Use bcrypt", type="decision")
    await call(agent_a, "record_artifact", session_id=original, path="src/login.py", action="modified")
    await call(agent_a, "update_context", session_id=original, context={"branch": "fix/login"})
    await call(
        agent_a,
        "handoff",
        session_id=original,
        summary="Cause found, fix half done",
        next_steps=["finish the fix", "run the suite"],
        blockers=["staging is down"],
    )
    stored = await _doc(database, original)
    assert stored["status"] == "paused"
    assert stored["context_summary"] == {"goal": "fix login", "branch": "fix/login"}
    assert [e.get("type", "action") for e in stored["work_log"]] == ["action", "checkpoint", "decision"]
    assert [a["path"] for a in stored["artifacts"]] == ["src/login.py"]

    waiting = await call(agent_b, "list_waiting_handoffs")
    assert [item["session_id"] for item in waiting.structured_content["items"]] == [original]  # type: ignore[index]
    assert "Cause found" in text_of(waiting)

    replayed = await call(agent_b, "replay_session", session_id=original, agent_type="reviewer")
    continuation = replayed.structured_content["session_id"]  # type: ignore[index]
    assert continuation != original
    context = await call(agent_b, "get_replay_context", session_id=original)
    assert "Root cause: stale token" in text_of(context)
    handoff_context = await call(agent_b, "get_handoff_context", session_id=continuation)
    assert "finish the fix" in text_of(handoff_context)
    await call(agent_b, "log_work", session_id=continuation, message="Fix merged", type="success")
    done = await call(agent_b, "complete_session", session_id=continuation, summary="Login fixed")
    assert "completed" in text_of(done)

    assert (await _doc(database, continuation))["status"] == "completed"
    assert (await _doc(database, continuation))["agent_type"] == "reviewer"
    assert (await _doc(database, continuation))["replayed_from"] == original
    no_longer_waiting = await call(agent_b, "list_waiting_handoffs")
    assert no_longer_waiting.structured_content["items"] == []  # type: ignore[index]
    return str(continuation)


# The tool list ------------------------------------------------------------------------------------------------


async def test_the_tools_are_listed_with_their_argument_and_output_schemas(agent: Client) -> None:
    tools = {tool.name: tool for tool in (await agent.list_tools()).tools}

    assert set(tools) == set(TOOL_NAMES)
    for name, arguments in ARGUMENTS.items():
        tool = tools[name]
        assert list(tool.input_schema["properties"]) == arguments, name
        assert len(tool.description or "") > 30, name
        assert tool.output_schema is not None, name
    assert tools["update_context"].input_schema["required"] == ["session_id", "context"]
    assert tools["update_context"].input_schema["properties"]["replace"]["default"] is False
    assert tools["log_work"].input_schema["properties"]["type"]["enum"] == [
        "info",
        "warning",
        "error",
        "success",
        "checkpoint",
        "decision",
    ]
    assert tools["get_handoff_context"].annotations is not None
    assert tools["get_handoff_context"].annotations.read_only_hint is True
    assert "session_id" in tools["handoff"].output_schema["properties"]  # type: ignore[index]


async def test_the_resource_template_and_the_prompt_are_listed(agent: Client) -> None:
    templates = (await agent.list_resource_templates()).resource_templates
    prompts = (await agent.list_prompts()).prompts

    assert [t.uri_template for t in templates] == [
        "handoff://sessions/{session_id}",
        "handoff://sessions/{session_id}/blobs/{blob_id}",
    ]
    assert [(p.name, [a.name for a in p.arguments or []]) for p in prompts] == [("resume_from_handoff", ["session_id"])]


# Each tool's effect --------------------------------------------------------------------------------------------


async def test_each_write_tool_changes_the_session_in_the_database(agent: Client, database: MongoDatabase) -> None:
    started = await call(
        agent, "start_session", agent_type="coder", context_summary={"goal": "g"}, external_id="thread-9"
    )
    sid = started.structured_content["session_id"]  # type: ignore[index]
    assert f"session_id {sid!r}" in text_of(started)
    again = await call(agent, "start_session", external_id="thread-9")
    assert again.structured_content["session_id"] == sid  # type: ignore[index]

    entry = await call(agent, "log_work", session_id=sid, message="step one", type="checkpoint", id="w-1")
    assert (entry.structured_content or {})["id"] == "w-1"
    assert (entry.structured_content or {})["type"] == "checkpoint"
    await call(agent, "log_work", session_id=sid, message="step one", type="checkpoint", id="w-1")  # a retry
    await call(agent, "log_action", session_id=sid, action="git commit", details={"sha": "abc"})
    await call(agent, "record_artifact", session_id=sid, path="a.py", action="created", metadata={"n": 1})
    await call(agent, "update_context", session_id=sid, context={"k": 1})
    stored = await _doc(database, sid)
    assert stored["work_log"][0]["id"] == "w-1"
    assert len(stored["work_log"]) == 2
    assert stored["work_log"][1]["details"] == {"sha": "abc"}
    assert stored["artifacts"][0]["action"] == "created"
    assert stored["context_summary"] == {"goal": "g", "k": 1}

    await call(agent, "update_context", session_id=sid, context={"only": True}, replace=True)
    assert (await _doc(database, sid))["context_summary"] == {"only": True}

    handed = await call(agent, "handoff", session_id=sid, summary="half", next_steps=["rest"])
    assert (await _doc(database, sid))["handoff_notes"]["next_steps"] == ["rest"]
    assert handed.structured_content["status"] == "paused"  # type: ignore[index]

    replay = await call(agent, "replay_session", session_id=sid)
    new_id = replay.structured_content["session_id"]  # type: ignore[index]
    assert (await _doc(database, new_id))["status"] == "active"

    await call(agent, "complete_session", session_id=new_id, summary="ok")
    await call(agent, "fail_session", session_id=sid, reason="superseded")
    assert (await _doc(database, new_id))["final_summary"] == "ok"
    assert ((await _doc(database, sid))["status"], (await _doc(database, sid))["final_summary"]) == (
        "failed",
        "superseded",
    )


async def test_the_context_tools_answer_compact_text_and_the_full_schema(agent: Client) -> None:
    sid = (await call(agent, "start_session", agent_type="coder")).structured_content["session_id"]  # type: ignore[index]
    for n in range(40):
        await call(agent, "log_work", session_id=sid, message=f"entry {n} " + "word " * 100, type="checkpoint")
    for n in range(30):
        await call(agent, "record_artifact", session_id=sid, path=f"src/module_{n}.py")
    await call(agent, "handoff", session_id=sid, summary="Stopped at entry 39", next_steps=["go on"])

    handoff_context = await call(agent, "get_handoff_context", session_id=sid)
    replay_context = await call(agent, "get_replay_context", session_id=sid)

    text = text_of(handoff_context)
    assert "Stopped at entry 39" in text
    assert "go on" in text
    assert "entry 39" in text
    assert len(text) < 2_500
    assert len(handoff_context.structured_content["recent_actions"]) == 20  # type: ignore[index]
    assert len(handoff_context.structured_content["artifacts"]) == 30  # type: ignore[index]
    assert len(text_of(replay_context)) < 2_500
    assert len(replay_context.structured_content["checkpoints"]) == 40  # type: ignore[index]


async def test_the_session_resource_gives_the_mcp_context(agent: Client) -> None:
    sid = (await call(agent, "start_session", agent_type="coder")).structured_content["session_id"]  # type: ignore[index]

    result = await agent.read_resource(f"handoff://sessions/{sid}")

    content = result.contents[0]
    assert content.mime_type == "application/json"
    body = json.loads(content.text)  # type: ignore[union-attr]
    assert (body["session_id"], body["status"], body["agent_type"]) == (sid, "active", "coder")
    with pytest.raises(MCPError, match="not found"):
        await agent.read_resource("handoff://sessions/sess_missing")


async def test_the_resume_prompt_turns_the_handoff_into_instructions(agent: Client) -> None:
    sid = (await call(agent, "start_session", agent_type="coder")).structured_content["session_id"]  # type: ignore[index]
    await call(agent, "handoff", session_id=sid, summary="Half the tests pass", blockers=["flaky CI"])

    prompt = await agent.get_prompt("resume_from_handoff", {"session_id": sid})

    text = prompt.messages[0].content.text  # type: ignore[union-attr]
    assert prompt.messages[0].role == "user"
    assert "Half the tests pass" in text
    assert "flaky CI" in text
    assert f"replay_session with session_id {sid!r}" in text
    with pytest.raises(MCPError, match="not found"):
        await agent.get_prompt("resume_from_handoff", {"session_id": "sess_missing"})


# Errors ---------------------------------------------------------------------------------------------------------


async def test_an_unknown_session_is_a_tool_error_naming_it(agent: Client) -> None:
    text = await refused(agent, "log_work", session_id="sess_nope", message="hello")

    assert "404" in text
    assert "sess_nope not found" in text


async def test_an_ended_session_is_a_tool_error_that_points_to_replay(agent: Client) -> None:
    sid = (await call(agent, "start_session")).structured_content["session_id"]  # type: ignore[index]
    await call(agent, "complete_session", session_id=sid)

    text = await refused(agent, "record_artifact", session_id=sid, path="late.py")

    assert "409" in text
    assert "ended" in text
    assert "replay" in text


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("log_work", {"session_id": "s", "message": 42}, "message"),
        ("log_work", {"session_id": "s", "message": "m", "type": "bogus"}, "type"),
        ("log_action", {"session_id": "s"}, "action"),
        ("update_context", {"session_id": "s", "context": "not an object"}, "context"),
        ("update_context", {"session_id": "s", "context": {"k": 1}, "replace": "sometimes"}, "replace"),
        ("handoff", {"session_id": "s", "summary": "x", "next_steps": "not a list"}, "next_steps"),
        ("list_waiting_handoffs", {"limit": 0}, "limit"),
    ],
)
async def test_wrong_argument_types_are_tool_errors_naming_the_argument(
    agent: Client, tool: str, arguments: dict[str, Any], named: str
) -> None:
    text = await refused(agent, tool, **arguments)

    assert named in text


async def test_values_the_service_refuses_are_tool_errors_with_the_problem(agent: Client) -> None:
    sid = (await call(agent, "start_session")).structured_content["session_id"]  # type: ignore[index]

    bad_key = await refused(agent, "update_context", session_id=sid, context={"$set": 1})
    bad_id = await refused(agent, "log_work", session_id=sid, message="m", id="has spaces")
    unknown_plan = await refused(agent, "start_session", plan="no-such-plan")
    too_big = await refused(agent, "log_action", session_id=sid, action="a", details={"x": "y" * 70_000})

    assert "422" in bad_key
    assert "$" in bad_key
    assert "422" in bad_id
    assert "id" in bad_id
    assert "unknown plan" in unknown_plan
    assert "413" in too_big


# End to end ----------------------------------------------------------------------------------------------------


async def test_agent_a_hands_off_and_agent_b_completes_the_work(
    tenant: Tenant, settings: Settings, database: MongoDatabase
) -> None:
    _, second_key = await workspaces.create_api_key(tenant.workspace.slug, name="agent-b")
    backend_a = ServiceBackend(await principal_of(tenant), settings)
    backend_b = ServiceBackend(await workspaces.authenticate(second_key), settings)

    async with (
        Client(build_server(fixed_backend(backend_a))) as agent_a,
        Client(build_server(fixed_backend(backend_b))) as agent_b,
    ):
        continuation = await run_handoff_scenario(agent_a, agent_b, database)

    original_key = (await _doc(database, continuation))["agent_api_key_id"]
    assert original_key == backend_b.principal.api_key_id


async def test_the_same_tools_work_over_the_python_client(app: Any, tenant: Tenant, database: MongoDatabase) -> None:
    """The ``handoff mcp`` configuration: the tools call the service through ``AsyncHandoffClient``."""
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http_a,
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http_b,
            Client(build_server(fixed_backend(http_a))) as agent_a,
            Client(build_server(fixed_backend(http_b))) as agent_b,
        ):
            await run_handoff_scenario(agent_a, agent_b, database)
            text = await refused(agent_a, "log_work", session_id="sess_nope", message="m")

    assert text.endswith("404 Not found: session sess_nope not found")


async def test_tools_can_run_concurrently(agent: Client, database: MongoDatabase) -> None:
    sid = (await call(agent, "start_session")).structured_content["session_id"]  # type: ignore[index]

    await asyncio.gather(*(call(agent, "log_work", session_id=sid, message=f"m{n}") for n in range(20)))

    assert len((await _doc(database, sid))["work_log"]) == 20
