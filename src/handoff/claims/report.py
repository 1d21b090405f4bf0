"""``handoff claims list``: the claims of one workspace or of every workspace, gathered by the service, as a rich
table or JSON Lines."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rich.table import Table

from handoff.claims import service
from handoff.claims.models import ClaimState
from handoff.claims.schemas import ClaimRead
from handoff.workspaces import service as workspaces


@dataclass(frozen=True, slots=True)
class ListedClaim:
    """A claim and the slug of its workspace."""

    workspace: str
    claim: ClaimRead


async def gather(workspace_slug: str | None, *, state: ClaimState | None, limit: int) -> list[ListedClaim]:
    """Up to ``limit`` claims of each workspace (by slug; unknown: 404) or of every workspace, newest first, in the
    state given (as derived now: a lapsed lease is ``expired`` whether or not the sweep has ended it yet)."""
    found = [await workspaces.get_workspace(workspace_slug)] if workspace_slug else await workspaces.list_workspaces()
    listed: list[ListedClaim] = []
    for workspace in found:
        cursor: str | None = None
        kept = 0
        while kept < limit:
            page, cursor = await service.list_claims(workspace.workspace_id, state=state, limit=200, cursor=cursor)
            for claim in page[: limit - kept]:
                listed.append(ListedClaim(workspace.slug, claim))
            kept += min(len(page), limit - kept)
            if cursor is None:
                break
    return listed


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else "-"


def table(listed: list[ListedClaim]) -> Table:
    """One row per claim."""
    rows = Table("workspace", "claim", "handoff", "replay session", "agent type", "state", "claimed", "lease expires",
                 "ended")  # fmt: skip
    for item in listed:
        claim = item.claim
        rows.add_row(
            item.workspace,
            claim.claim_id,
            claim.handoff_session_id,
            claim.session_id or "-",
            claim.agent_type or "-",
            claim.state,
            _when(claim.claimed_at),
            _when(claim.lease_expires_at),
            _when(claim.ended_at),
        )
    return rows


def json_lines(listed: list[ListedClaim]) -> str:
    """One JSON object per claim: the claim as ``GET /v1/claims/{id}`` answers, and its workspace's slug."""
    return "\n".join(json.dumps({"workspace": item.workspace, **item.claim.model_dump(mode="json")}) for item in listed)
