"""The plans REST routes."""

from __future__ import annotations

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from handoff.auth import CurrentPrincipal
from handoff.openapi import problems
from handoff.plans import service, views
from handoff.plans.schemas import PlanCreate, PlanList, PlanRead, PlanUpdate, TaskStatusUpdate
from handoff.sessions import service as sessions
from handoff.sessions.schemas import SessionList

SLUG = "/{slug:str}"


class PlanController(Controller):
    """Plans: phases of tasks that sessions work through."""

    path = "/plans"
    tags = ["plans"]

    @post("/", status_code=HTTP_201_CREATED, responses=problems(409, body=True))
    async def create_plan(self, principal: CurrentPrincipal, data: JSONBody[PlanCreate]) -> PlanRead:
        """Create a plan (slugs are unique per workspace)."""
        return views.plan_read(await service.create_plan(principal.workspace_id, data))

    @get("/", responses=problems())
    async def list_plans(self, principal: CurrentPrincipal) -> PlanList:
        """List the workspace's plans."""
        return PlanList(items=[views.plan_read(plan) for plan in await service.list_plans(principal.workspace_id)])

    @get(SLUG, responses=problems(404))
    async def get_plan(self, principal: CurrentPrincipal, slug: FromPath[str]) -> PlanRead:
        """Get a plan with its progress."""
        return views.plan_read(await service.get_plan(principal.workspace_id, slug))

    @patch(SLUG, responses=problems(404, body=True))
    async def update_plan(
        self, principal: CurrentPrincipal, slug: FromPath[str], data: JSONBody[PlanUpdate]
    ) -> PlanRead:
        """Change a plan's title, description or current phase."""
        return views.plan_read(await service.update_plan(principal.workspace_id, slug, data))

    @patch(SLUG + "/tasks", responses=problems(404, body=True))
    async def set_task_status(
        self, principal: CurrentPrincipal, slug: FromPath[str], data: JSONBody[TaskStatusUpdate]
    ) -> PlanRead:
        """Set the status of one task of one phase."""
        return views.plan_read(await service.set_task_status(principal.workspace_id, slug, data))

    @get(SLUG + "/sessions", responses=problems(404))
    async def plan_sessions(self, principal: CurrentPrincipal, slug: FromPath[str]) -> SessionList:
        """The sessions working on this plan, newest first."""
        return SessionList(items=await sessions.list_plan_sessions(principal.workspace_id, slug))
