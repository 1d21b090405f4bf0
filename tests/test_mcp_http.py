"""The MCP tools over the network: ``/mcp`` on the service (streamable HTTP, bearer key) and ``handoff mcp`` (stdio).

Both run against a real uvicorn server on a loopback port (see ``test_client_sync.serve_app``): ``/mcp`` with
the SDK's streamable-HTTP client, ``handoff mcp`` as a subprocess that reaches the service through the client.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.mcp.server import TOOL_NAMES
from tests.factories import Tenant
from tests.test_client_sync import serve_app
from tests.test_mcp import call, refused, run_handoff_scenario, text_of

HANDOFF = Path(sys.executable).with_name("handoff")


@pytest.fixture(scope="module")
async def live_url(mongod: MongodProcess, database: MongoDatabase) -> AsyncIterator[str]:
    settings = Settings(mongodb_url=mongod.url, database=database.name)
    async with serve_app(create_app(settings, database=database)) as url:
        yield url


@asynccontextmanager
async def mcp_over_http(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


async def test_the_handoff_scenario_over_streamable_http(
    live_url: str, tenant: Tenant, database: MongoDatabase
) -> None:
    from handoff.workspaces import service as workspaces  # noqa: PLC0415

    _, second_key = await workspaces.create_api_key(tenant.workspace.slug, name="agent-b")

    async with mcp_over_http(live_url, tenant.secret) as agent_a, mcp_over_http(live_url, second_key) as agent_b:
        assert {tool.name for tool in (await agent_a.list_tools()).tools} == set(TOOL_NAMES)
        await run_handoff_scenario(agent_a, agent_b, database)
        error = await refused(agent_a, "complete_session", session_id="sess_nope")

    assert "404" in error


async def test_the_mcp_endpoint_needs_a_valid_key(live_url: str, tenant: Tenant) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=live_url) as http:
        anonymous = await http.post("/mcp", json=initialize, headers=accept)
        wrong = await http.post("/mcp", json=initialize, headers={**accept, "Authorization": "Bearer hk_wrong"})
        right = await http.post("/mcp", json=initialize, headers={**accept, "Authorization": f"Bearer {tenant.secret}"})

    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["title"] == "Unauthorized"
    assert right.status_code == 200
    assert right.json()["result"]["serverInfo"]["name"] == "handoff"
    with pytest.raises(ExceptionGroup) as refused_by_sdk:
        async with mcp_over_http(live_url, None) as client:
            await client.list_tools()
    assert refused_by_sdk.group_contains(MCPError, match="error response")


async def test_only_the_mcp_path_itself_is_the_endpoint(live_url: str, tenant: Tenant) -> None:
    """The endpoint is an ASGI mount, which matches by prefix; longer paths are unknown routes like any other."""
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {tenant.secret}"}
    async with httpx.AsyncClient(base_url=live_url, headers=headers) as http:
        for path in ("/mcpx", "/mcp/tools", "/mcp/x/y"):
            response = await http.post(path, json={})
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("application/problem+json"), path
            assert response.json()["status"] == 404, path
        assert (await http.post("/mcp/", json={})).status_code == 400  # the endpoint: a body that is not JSON-RPC


async def test_a_workspace_sees_only_its_own_sessions_over_mcp(
    live_url: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with mcp_over_http(live_url, tenant.secret) as mine, mcp_over_http(live_url, other_tenant.secret) as theirs:
        started = await call(mine, "start_session", agent_type="coder")
        session_id = started.structured_content["session_id"]  # type: ignore[index]
        text = await refused(theirs, "get_handoff_context", session_id=session_id)

    assert "404" in text


async def test_handoff_mcp_serves_the_tools_over_stdio(live_url: str, tenant: Tenant, database: MongoDatabase) -> None:
    params = StdioServerParameters(
        command=str(HANDOFF), args=["mcp"], env={"HANDOFF_URL": live_url, "HANDOFF_API_KEY": tenant.secret}
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as agent:
            started = await call(agent, "start_session", agent_type="laptop-agent")
            session_id = started.structured_content["session_id"]  # type: ignore[index]
            await call(agent, "log_work", session_id=session_id, message="from stdio", type="checkpoint")
            context = await call(agent, "get_handoff_context", session_id=session_id)
            missing = await refused(agent, "get_replay_context", session_id="sess_nope")

    stored = await database["sessions"].find_one({"session_id": session_id})
    assert stored is not None
    assert stored["agent_type"] == "laptop-agent"
    assert [e["message"] for e in stored["work_log"]] == ["from stdio"]
    assert "from stdio" in text_of(context)
    assert "404 Not found" in missing
