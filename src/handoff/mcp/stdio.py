"""``handoff mcp``: the MCP server over stdio, for an agent on a laptop, talking to a handoff service over HTTP.

The tools run against an :class:`~handoff.client.AsyncHandoffClient` configured from ``HANDOFF_URL`` and
``HANDOFF_API_KEY`` (or the command's options), so they inherit its retries: an agent's append survives a
service restart or a database failover and is still stored once. Nothing but MCP messages goes to stdout.
The session resource can be subscribed to (both protocol eras: ``handoff.mcp.subscriptions``); a subscription
follows the session through the client's ``events()``.
"""

from __future__ import annotations

import anyio

from handoff.client import AsyncHandoffClient
from handoff.client.config import API_KEY_VARIABLE, ClientConfig, load_client_config
from handoff.mcp.server import build_server, fixed_backend
from handoff.mcp.subscriptions import ConnectionSubscriptions


class MissingApiKey(Exception):
    """``handoff mcp`` was started without a key to reach the service with."""


def stdio_config(url: str | None = None, api_key: str | None = None) -> ClientConfig:
    """The service to talk to; a key is required (every tool needs the workspace it opens)."""
    config = load_client_config(url, api_key)
    if not config.api_key:
        raise MissingApiKey(f"{API_KEY_VARIABLE} is not set: create one with `handoff keys create --workspace SLUG`")
    return config


async def serve_stdio(config: ClientConfig) -> None:
    """Serve the tools on stdin/stdout until the MCP client closes them (its resource subscriptions end then)."""
    subscriptions = ConnectionSubscriptions()
    async with AsyncHandoffClient(config.url, config.api_key) as client, subscriptions.running():
        server = build_server(
            fixed_backend(client), log_level="WARNING", local_files=True, connection_subscriptions=subscriptions
        )
        await server.run_stdio_async()


def run_stdio(config: ClientConfig) -> None:
    """Blocking entry point of ``handoff mcp``."""
    anyio.run(serve_stdio, config)
