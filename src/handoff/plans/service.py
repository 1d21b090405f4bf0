"""Plan rules: unique slugs per workspace, phases and tasks addressed by name, atomic task updates."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from handoff import clock
from handoff.errors import Conflict, FieldError, Invalid, NotFound
from handoff.plans.models import Plan, PlanPhase, PlanTask
from handoff.plans.schemas import PlanCreate, PlanUpdate, TaskStatusUpdate


def _not_found(slug: str) -> NotFound:
    return NotFound(f"plan {slug!r} not found")


def _check_phase(plan_phases: list[str], current_phase: str | None) -> None:
    if current_phase is not None and current_phase not in plan_phases:
        raise Invalid(
            f"current_phase {current_phase!r} is not a phase of the plan",
            errors=[FieldError(field="current_phase", message="must name one of the plan's phases")],
        )


async def create_plan(workspace_id: str, data: PlanCreate) -> Plan:
    """Create a plan; a slug already used in the workspace is a 409."""
    names = [phase.name for phase in data.phases]
    if len(set(names)) != len(names):
        raise Invalid("phase names must be unique", errors=[FieldError(field="phases", message="duplicate name")])
    _check_phase(names, data.current_phase)
    plan = Plan(
        workspace_id=workspace_id,
        slug=data.slug,
        title=data.title,
        description=data.description,
        phases=[
            PlanPhase(name=phase.name, tasks=[PlanTask(name=t.name, status=t.status) for t in phase.tasks])
            for phase in data.phases
        ],
        current_phase=data.current_phase,
    )
    try:
        await plan.insert()
    except DuplicateKeyError as exc:
        raise Conflict(f"plan {data.slug!r} already exists in this workspace") from exc
    return plan


async def list_plans(workspace_id: str) -> list[Plan]:
    """The workspace's plans, by slug."""
    return await Plan.find(Plan.workspace_id == workspace_id).sort("+slug").to_list()


async def get_plan(workspace_id: str, slug: str) -> Plan:
    """One plan of the workspace, or 404."""
    plan = await Plan.find_one(Plan.workspace_id == workspace_id, Plan.slug == slug)
    if plan is None:
        raise _not_found(slug)
    return plan


async def find_plan(workspace_id: str, slug: str | None) -> Plan | None:
    """The plan a session names, if it (still) exists."""
    if slug is None:
        return None
    return await Plan.find_one(Plan.workspace_id == workspace_id, Plan.slug == slug)


async def _update(
    workspace_id: str, slug: str, update: dict[str, Any], *, array_filters: list[dict[str, Any]] | None = None
) -> Plan:
    """One atomic update of a plan, answering the plan as it is afterwards (404 when it is gone)."""
    raw = await Plan.get_pymongo_collection().find_one_and_update(
        {"workspace_id": workspace_id, "slug": slug},
        update,
        array_filters=array_filters,
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        raise _not_found(slug)
    plan: Plan = Plan.model_validate(raw)
    return plan


async def update_plan(workspace_id: str, slug: str, changes: PlanUpdate) -> Plan:
    """Set the given fields; a current phase must name one of the plan's phases."""
    fields = changes.model_dump(exclude_unset=True)
    plan = await get_plan(workspace_id, slug)
    if "current_phase" in fields:
        _check_phase([phase.name for phase in plan.phases], fields["current_phase"])
    if "title" in fields and fields["title"] is None:
        raise Invalid("title may not be null", errors=[FieldError(field="title", message="may not be null")])
    return await _update(workspace_id, slug, {"$set": {**fields, "updated_at": clock.now()}})


async def set_task_status(workspace_id: str, slug: str, change: TaskStatusUpdate) -> Plan:
    """Set one task's status in one atomic update; an unknown phase or task is a 404."""
    plan = await get_plan(workspace_id, slug)
    phase_index = next((i for i, phase in enumerate(plan.phases) if phase.name == change.phase), None)
    if phase_index is None:
        raise NotFound(f"plan {slug!r} has no phase {change.phase!r}")
    if not any(task.name == change.task for task in plan.phases[phase_index].tasks):
        raise NotFound(f"phase {change.phase!r} of plan {slug!r} has no task {change.task!r}")
    return await _update(
        workspace_id,
        slug,
        {"$set": {"phases.$[phase].tasks.$[task].status": change.status.value, "updated_at": clock.now()}},
        array_filters=[{"phase.name": change.phase}, {"task.name": change.task}],
    )
