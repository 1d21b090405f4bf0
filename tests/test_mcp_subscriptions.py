"""Subscriptions to the session resource through real MCP client sessions: ``handoff mcp`` and ``/mcp``.

A write made over REST after the subscription is answered notifies its URI (``notifications/resources/updated``);
a write to another session does not; after ``resources/unsubscribe`` nothing more comes; another workspace's
session is not found and never notifies. ``handoff mcp`` (stdio) serves both protocol eras: the 2025 one's
``resources/subscribe`` (the SDK client in ``mode="legacy"``) and the 2026 one's ``subscriptions/listen`` (its
default); the service's stateless ``/mcp`` serves ``subscriptions/listen`` and says ``subscribe: false`` to
clients of the 2025 era.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.client.session import IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from handoff.app import create_app
from handoff.client import AsyncHandoffClient
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from tests.factories import Tenant
from tests.test_client_sync import serve_app
from tests.test_mcp_http import live_url  # noqa: F401 - the module's live service

HANDOFF = Path(sys.executable).with_name("handoff")
#: How long a test waits for a notification it must receive before failing (not a measure of speed).
PATIENCE_SECONDS = 30


def uri(session_id: str) -> str:
    return f"handoff://sessions/{session_id}"


@asynccontextmanager
async def rest(url: str, tenant: Tenant) -> AsyncIterator[AsyncHandoffClient]:
    async with AsyncHandoffClient(url, tenant.secret) as client:
        yield client


async def sessions(client: AsyncHandoffClient, count: int) -> list[str]:
    return [(await client.create_session(agent_type="watched")).session_id for _ in range(count)]


class Inbox:
    """The ``notifications/resources/updated`` a legacy-mode client received, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._arrived.set()
            self._arrived = anyio.Event()

    async def until(self, wanted: str) -> None:
        """Wait until ``wanted`` has been received."""
        with anyio.fail_after(PATIENCE_SECONDS):
            while wanted not in self.uris:
                await self._arrived.wait()


@asynccontextmanager
async def handoff_mcp(url: str, tenant: Tenant, **client: object) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=str(HANDOFF), args=["mcp"], env={"HANDOFF_URL": url, "HANDOFF_API_KEY": tenant.secret}
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), **client) as agent:  # type: ignore[arg-type]
            yield agent


async def subscribe(agent: Client, session_id: str) -> None:
    await subscribe_uri(agent, uri(session_id))


async def subscribe_uri(agent: Client, resource: str) -> None:
    """The 2025 protocol's ``resources/subscribe`` (the SDK marks it deprecated: the 2026 protocol removed it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await agent.subscribe_resource(resource)


async def unsubscribe(agent: Client, session_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await agent.unsubscribe_resource(uri(session_id))


async def test_handoff_mcp_notifies_a_subscribed_session_and_stops_after_unsubscribe(
    live_url: str,  # noqa: F811
    tenant: Tenant,
) -> None:
    inbox = Inbox()
    async with (
        rest(live_url, tenant) as client,
        handoff_mcp(live_url, tenant, mode="legacy", message_handler=inbox) as agent,
    ):
        watched, unwatched, barrier = await sessions(client, 3)
        resources = agent.server_capabilities.resources
        assert resources is not None
        assert resources.subscribe is True

        await subscribe(agent, watched)
        await subscribe(agent, watched)  # idempotent: still one follower, one notification per change
        await client.log_work(unwatched, "not watched")
        await client.log_work(watched, "watched")
        await inbox.until(uri(watched))
        assert inbox.uris == [uri(watched)]

        await unsubscribe(agent, watched)
        await subscribe(agent, barrier)
        await client.log_work(watched, "after unsubscribe")
        await client.log_work(barrier, "barrier")
        await inbox.until(uri(barrier))
        # The barrier's own write came after the watched one; and its follower hears only its own session.
        assert inbox.uris == [uri(watched), uri(barrier)]
        await unsubscribe(agent, unwatched)  # never subscribed: nothing to stop, not an error


async def test_handoff_mcp_refuses_another_workspaces_session_and_other_resources(
    live_url: str,  # noqa: F811
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    inbox = Inbox()
    async with (
        rest(live_url, other_tenant) as theirs,
        rest(live_url, tenant) as mine,
        handoff_mcp(live_url, tenant, mode="legacy", message_handler=inbox) as agent,
    ):
        (foreign,) = await sessions(theirs, 1)
        (own,) = await sessions(mine, 1)
        with pytest.raises(MCPError, match="404 Not found") as not_found:
            await subscribe(agent, foreign)
        with pytest.raises(MCPError, match="only the session resource") as other_resource:
            await subscribe_uri(agent, f"{uri(own)}/blobs/blob_x")
        await subscribe(agent, own)
        await theirs.log_work(foreign, "theirs")
        await mine.log_work(own, "mine")
        await inbox.until(uri(own))

    assert inbox.uris == [uri(own)]
    assert "not found" in str(not_found.value)
    assert "handoff://sessions/{session_id}" in str(other_resource.value)


async def test_handoff_mcp_serves_subscriptions_listen_of_the_callers_sessions(
    live_url: str,  # noqa: F811
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    async with (
        rest(live_url, other_tenant) as theirs,
        rest(live_url, tenant) as mine,
        handoff_mcp(live_url, tenant) as agent,
    ):
        assert agent.protocol_version == "2026-07-28"
        (foreign,) = await sessions(theirs, 1)
        watched, unwatched = await sessions(mine, 2)
        requested = [uri(watched), uri(foreign), uri(f"{watched}-missing"), f"{uri(watched)}/blobs/b"]
        async with agent.listen(resource_subscriptions=requested) as subscription:
            assert subscription.honored.resource_subscriptions == [uri(watched)]
            await theirs.log_work(foreign, "theirs")
            await mine.log_work(unwatched, "not watched")
            await mine.log_work(watched, "watched")
            with anyio.fail_after(PATIENCE_SECONDS):
                event = await anext(subscription)

    assert event == ResourceUpdated(uri=uri(watched))


@asynccontextmanager
async def mcp_over_http(url: str, tenant: Tenant, **client: object) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {tenant.secret}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), **client) as agent,  # type: ignore[arg-type]
    ):
        yield agent


async def test_the_service_serves_subscriptions_listen_statelessly_and_only_advertises_it_there(
    live_url: str,  # noqa: F811
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    async with (
        rest(live_url, other_tenant) as theirs,
        rest(live_url, tenant) as mine,
        mcp_over_http(live_url, tenant) as agent,
        mcp_over_http(live_url, tenant, mode="legacy") as old_agent,
    ):
        modern, handshake = agent.server_capabilities.resources, old_agent.server_capabilities.resources
        (foreign,) = await sessions(theirs, 1)
        (watched,) = await sessions(mine, 1)
        async with agent.listen(resource_subscriptions=[uri(watched), uri(foreign)]) as subscription:
            assert subscription.honored.resource_subscriptions == [uri(watched)]
            await theirs.log_work(foreign, "theirs")
            await mine.log_work(watched, "watched")
            with anyio.fail_after(PATIENCE_SECONDS):
                event = await anext(subscription)
            # A tool call on the same client while the stream is open: the calls stay stateless and answer.
            assert not (await agent.call_tool("get_handoff_context", {"session_id": watched})).is_error

    assert event == ResourceUpdated(uri=uri(watched))
    assert modern is not None
    assert modern.subscribe is True
    assert handshake is not None
    assert not handshake.subscribe


async def test_a_listen_stream_of_the_service_ends_gracefully_when_the_service_shuts_down(
    mongod: MongodProcess, database: MongoDatabase, tenant: Tenant
) -> None:
    app = create_app(Settings(mongodb_url=mongod.url, database=database.name), database=database)
    async with serve_app(app, graceful=True) as url, rest(url, tenant) as client, mcp_over_http(url, tenant) as agent:
        (watched,) = await sessions(client, 1)
        async with agent.listen(resource_subscriptions=[uri(watched)]) as subscription:
            assert subscription.honored.resource_subscriptions == [uri(watched)]
            app.state.shutdown.set()  # what SIGTERM sets first, before uvicorn waits for the requests in flight
            with anyio.fail_after(PATIENCE_SECONDS):
                left = [event async for event in subscription]  # ends: the server's graceful close, not a drop

    assert left == []
