"""The claim tools through the SDK's in-memory client: an agent's loop (claim, work, complete), release, the lease's
heartbeat, the tool errors, and the same loop over the Python client (the ``handoff mcp`` configuration)."""

from __future__ import annotations

from typing import Any

import httpx
from mcp import Client

from handoff.client import AsyncHandoffClient
from handoff.mcp.server import build_server, fixed_backend
from tests.factories import Tenant
from tests.test_client import running
from tests.test_mcp import agent, call, refused, text_of

__all__ = ["agent"]  # the fixture, shared with test_mcp.py


async def handed_off(client: Client, agent_type: str = "coder") -> str:
    started = await call(client, "start_session", agent_type=agent_type)
    sid: str = started.structured_content["session_id"]  # type: ignore[index]
    await call(client, "log_work", session_id=sid, message="half the fix", type="checkpoint")
    await call(client, "handoff", session_id=sid, summary="Fix half done", next_steps=["finish it"])
    return sid


async def claim_loop(worker: Client, other: Client) -> dict[str, Any]:
    """One handoff waiting; ``worker`` claims it, ``other`` finds nothing, ``worker`` works and completes."""
    nothing = await call(worker, "claim_handoff")
    assert nothing.structured_content == {"claim": None}
    assert "Nothing is waiting" in text_of(nothing)
    sid = await handed_off(worker)
    got = await call(worker, "claim_handoff", agent_type="coder", lease_seconds=120)
    claim: dict[str, Any] = got.structured_content["claim"]  # type: ignore[index]
    assert claim["handoff_session_id"] == sid
    replay = claim["session"]["session_id"]
    assert replay in text_of(got)
    assert (await call(other, "claim_handoff")).structured_content == {"claim": None}  # taken: no one else gets it
    await call(worker, "log_work", session_id=replay, message="finished the fix", type="success")
    beat = await call(worker, "heartbeat_claim", claim_id=claim["claim_id"])
    assert beat.structured_content["claim_id"] == claim["claim_id"]  # type: ignore[index]
    await call(worker, "complete_session", session_id=replay, summary="fixed")
    waiting = await call(other, "list_waiting_handoffs")
    assert waiting.structured_content["items"] == []  # type: ignore[index]
    return claim


async def test_an_agent_claims_works_and_completes(agent: Client, client: httpx.AsyncClient, tenant: Tenant) -> None:
    claim = await claim_loop(agent, agent)
    read = (await client.get(f"/v1/claims/{claim['claim_id']}", headers=tenant.headers)).json()
    assert read["state"] == "completed"
    text = await refused(agent, "heartbeat_claim", claim_id=claim["claim_id"])
    assert "409 Conflict: claim" in text
    assert "is completed" in text


async def test_release_claim_gives_the_handoff_back(agent: Client) -> None:
    sid = await handed_off(agent)
    claim = (await call(agent, "claim_handoff")).structured_content["claim"]  # type: ignore[index]
    released = await call(agent, "release_claim", claim_id=claim["claim_id"], reason="out of budget")
    assert released.structured_content["state"] == "released"  # type: ignore[index]
    assert "waits for another agent" in text_of(released)
    again = (await call(agent, "claim_handoff")).structured_content["claim"]  # type: ignore[index]
    assert again["handoff_session_id"] == sid
    assert again["claim_id"] != claim["claim_id"]


async def test_claim_tool_errors_name_the_problem(agent: Client) -> None:
    for tool in ("heartbeat_claim", "release_claim"):
        assert (await refused(agent, tool, claim_id="clm_nope")).endswith("404 Not found: claim clm_nope not found")
    assert "lease_seconds" in await refused(agent, "claim_handoff", lease_seconds=5)


async def test_the_claim_loop_works_over_the_python_client(app: Any, tenant: Tenant) -> None:
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http_a,
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http_b,
            Client(build_server(fixed_backend(http_a))) as worker,
            Client(build_server(fixed_backend(http_b))) as other,
        ):
            await claim_loop(worker, other)
