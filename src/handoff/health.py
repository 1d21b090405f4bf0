"""Liveness and readiness probes, outside ``/v1`` and without auth."""

from __future__ import annotations

from typing import Any

import pymongo
from litestar import Controller, Request, get
from litestar.datastructures import State
from pymongo.errors import PyMongoError

from handoff.errors import Unavailable
from handoff.openapi import problems

READINESS_TIMEOUT_SECONDS = 2.0


class HealthController(Controller):
    """Probes for load balancers and orchestrators."""

    tags = ["health"]

    @get("/healthz", summary="The process is up.")
    async def healthz(self) -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @get("/readyz", summary="The database answers.", responses={503: problems(503)[503]})
    async def readyz(self, request: Request[Any, Any, State]) -> dict[str, Any]:
        """The database answers; reports its version."""
        database = request.app.state.database
        try:
            with pymongo.timeout(READINESS_TIMEOUT_SECONDS):
                info = await database.command("buildInfo")
        except PyMongoError as exc:
            raise Unavailable(f"the database does not answer: {type(exc).__name__}") from exc
        return {"status": "ok", "mongodb": {"version": info["version"]}}
