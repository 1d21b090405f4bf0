"""The claim tools: an agent's loop over a shared queue of handoffs (claim one, work in its replay, complete).

``claim_handoff`` takes the oldest waiting handoff for the caller alone and opens its replay session (the same
``handoff.claims.service`` call as ``POST /v1/handoffs/claim``); the agent works in that session with the session
tools, each write renewing the lease; ``heartbeat_claim`` renews it through a long silence; ``complete_session``
ends the claim as completed; ``release_claim`` gives the handoff back for another agent.
"""

# No ``from __future__ import annotations``: the SDK reads the tools' annotations at registration.

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from handoff.claims.schemas import ClaimCreated, ClaimRead, Heartbeat
from handoff.mcp.tooling import WRITE, BackendResolver, answer, guard

CLAIM_TOOL_NAMES = ("claim_handoff", "heartbeat_claim", "release_claim")

ClaimId = Annotated[str, Field(min_length=1, max_length=255, description="The claim's id, as claim_handoff gave it.")]


class ClaimOutcome(BaseModel):
    """What ``claim_handoff`` got: the claim, or ``null`` when nothing was waiting."""

    claim: ClaimCreated | None


def claimed_text(created: ClaimCreated | None) -> str:
    if created is None:
        return "Nothing is waiting: no handoff matches. Try again later (or without filters)."
    session = created.session
    return "\n".join(
        [
            f"Claimed handoff {created.handoff_session_id} as claim {created.claim_id}.",
            f"Work in session {session.session_id} (every write renews the lease; it runs out at "
            f"{created.lease_expires_at.isoformat()} without one).",
            "Read get_replay_context for where the work stands; complete_session when done, release_claim to give "
            "it back.",
        ]
    )


def register_claim_tools(server: MCPServer, backend_for: BackendResolver) -> None:
    """Add the claim tools to ``server`` (``build_server`` calls this)."""

    @server.tool(annotations=WRITE)
    async def claim_handoff(
        *,
        ctx: Context,
        agent_type: Annotated[
            str | None, Field(description="Only handoffs of this agent type (also the replay's agent type).")
        ] = None,
        plan: Annotated[str | None, Field(description="Only handoffs of sessions working on this plan (slug).")] = None,
        lease_seconds: Annotated[
            int | None,
            Field(ge=10, le=86400, description="How long the claim lasts without a write or heartbeat (default 300)."),
        ] = None,
    ) -> Annotated[CallToolResult, ClaimOutcome]:
        """Take the oldest waiting handoff for yourself alone and open its replay session to work in."""
        created = await guard(
            backend_for(ctx).claim_handoff(agent_type=agent_type, plan=plan, lease_seconds=lease_seconds)
        )
        return answer(claimed_text(created), ClaimOutcome(claim=created))

    @server.tool(annotations=WRITE)
    async def heartbeat_claim(*, ctx: Context, claim_id: ClaimId) -> Annotated[CallToolResult, Heartbeat]:
        """Renew a claim's lease from now, during work that writes nothing to the replay session for a while."""
        beat = await guard(backend_for(ctx).heartbeat_claim(claim_id))
        return answer(f"Claim {claim_id} renewed: its lease runs to {beat.lease_expires_at.isoformat()}.", beat)

    @server.tool(annotations=WRITE)
    async def release_claim(
        *,
        ctx: Context,
        claim_id: ClaimId,
        reason: Annotated[str | None, Field(max_length=2000, description="Why you give it back.")] = None,
    ) -> Annotated[CallToolResult, ClaimRead]:
        """Give a claimed handoff back at once: its replay session fails (saying why) and the handoff waits again."""
        read = await guard(backend_for(ctx).release_claim(claim_id, reason=reason))
        return answer(
            f"Claim {claim_id} released; session {read.session_id} failed and handoff {read.handoff_session_id} "
            "waits for another agent.",
            read,
        )
