"""What every MCP tool module shares: the tool annotations, the answer shape, and refusals as tool errors.

``server.py`` registers the session tools and ``claim_tools.py`` the claim tools with these, so both answer the
same way: a few lines of text for the agent, and the service's schema as structured content.
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations at registration.

from collections.abc import Awaitable, Callable
from typing import TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from handoff.client.errors import HandoffClientError
from handoff.errors import HandoffError
from handoff.mcp.backend import HandoffBackend, problem_text

T = TypeVar("T")

BackendResolver = Callable[[Context], HandoffBackend]
"""Gives the backend for one request (the stdio client, or the service as the request's API key)."""

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
IDEMPOTENT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def answer(text: str, value: BaseModel) -> CallToolResult:
    """The text the agent reads, and ``value`` (the tool's output schema) as structured content."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=value.model_dump(mode="json")
    )


async def guard(operation: Awaitable[T]) -> T:
    """Run a backend call; a refusal becomes a tool error carrying the problem."""
    try:
        return await operation
    except (HandoffClientError, HandoffError) as exc:
        raise ToolError(problem_text(exc)) from exc
