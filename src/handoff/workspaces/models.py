"""Workspace and API-key documents.

A key's secret is never stored: only its SHA-256 (to look it up) and a short display prefix (to recognise it
in listings and logs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from beanie import Document, Indexed
from pydantic import Field

from handoff import clock


class Workspace(Document):
    """A tenant: every session, plan and key belongs to exactly one."""

    workspace_id: Annotated[str, Indexed(unique=True)]
    slug: Annotated[str, Indexed(unique=True)]
    name: str
    #: Ended sessions older than this many days (by ``ended_at``) are deleted by the service; None keeps them.
    retention_ended_after_days: int | None = None
    created_at: datetime = Field(default_factory=clock.now)
    updated_at: datetime = Field(default_factory=clock.now)

    class Settings:
        name = "workspaces"


class ApiKey(Document):
    """A bearer key of one workspace, stored as a hash."""

    key_id: Annotated[str, Indexed(unique=True)]
    workspace_id: Annotated[str, Indexed()]
    name: str | None = None
    prefix: str
    secret_sha256: Annotated[str, Indexed(unique=True)]
    created_at: datetime = Field(default_factory=clock.now)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None

    class Settings:
        name = "api_keys"
