"""Builders of test data through the same domain services the API uses, and of the small-page app that tests of
paged logs run against."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import pytest
from litestar import Litestar

from handoff import bulk
from handoff.app import create_app
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.localdb import MongodProcess
from handoff.workspaces import service as workspaces
from handoff.workspaces.models import Workspace

#: Page bounds under which a few dozen writes seal many pages of both kinds (the defaults need thousands).
SMALL_PAGES: Final[dict[str, int]] = {"page_entries": 4, "page_bytes": 4096}


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


def small_pages_settings(mongod: MongodProcess, database: MongoDatabase, **overrides: Any) -> Settings:
    """The settings of a test app on this database whose logs seal a page every ``SMALL_PAGES``, with
    ``overrides`` (any other ``Settings`` field, or other bounds) on top."""
    fields: dict[str, Any] = {**SMALL_PAGES, **overrides}
    return Settings(mongodb_url=mongod.url, database=database.name, data_dir=Path("/nonexistent"), **fields)


def small_pages_app(*, scope: Literal["function", "module"] = "module", **overrides: Any) -> Any:
    """An ``app`` fixture built on ``small_pages_settings(..., **overrides)``, for a test module to take as its own:
    ``app = small_pages_app()``.

    A fixture of the module's, not a conftest one, so that the module says in one line that its sessions page
    early, and so that its own ``database`` fixture (if it overrides the shared one) is the one the app gets.
    """

    @pytest.fixture(scope=scope, name="app")
    def app(mongod: MongodProcess, database: MongoDatabase) -> Litestar:
        return create_app(small_pages_settings(mongod, database, **overrides), database=database)

    return app
