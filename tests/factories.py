"""Builders of test data through the same domain services the API uses."""

from __future__ import annotations

import io
from dataclasses import dataclass

from handoff import bulk
from handoff.workspaces import service as workspaces
from handoff.workspaces.models import Workspace


@dataclass(frozen=True)
class Tenant:
    """A workspace and one of its keys, ready to put in an Authorization header."""

    workspace: Workspace
    key_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


async def make_tenant(slug: str, *, expires_in_days: int | None = None) -> Tenant:
    """Create a workspace and a key for it."""
    workspace = await workspaces.create_workspace(slug)
    key, secret = await workspaces.create_api_key(slug, name="tests", expires_in_days=expires_in_days)
    return Tenant(workspace=workspace, key_id=key.key_id, secret=secret)


async def exported(workspace: str | None = None) -> bytes:
    """What ``handoff export`` writes for a workspace (every workspace when ``None``), as bytes."""
    out = io.BytesIO()
    await bulk.export_sessions(out, workspace=workspace)
    return out.getvalue()
